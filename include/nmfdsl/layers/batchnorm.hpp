#pragma once
/// @file batchnorm.hpp
/// BatchNorm over the channels of a map (statistics over batch × positions) or the features of a vector
/// (statistics over the batch), affine (γ, β; group `norm`; γ = 1, β = 0 at init).
///   y = γ (x − μ) / √(σ² + eps) + β,   σ² the biased variance.
/// Modes (options.mode):
///  - batch_statistics (default, the paper's: docs/method.md §3): μ, σ² are the
///    statistics of the current batch in training *and* evaluation;
///  - running_statistics (PyTorch's usual mode): training uses batch statistics and updates the running mean and
///    unbiased variance with `momentum`; evaluation (Model::set_training(false)) normalises with the running values.
/// Backward with batch statistics (M values per channel, x̂ the normalised input):
///   dγ += Σ dy x̂,  dβ += Σ dy,  dx = γ/(M √(σ²+eps)) · (M dy − Σ dy − x̂ Σ dy x̂).
/// Under data-parallel training (core/replicas.hpp) the batch is the global one: μ, σ², M and the two sums in dx are
/// summed over the replicas, while dγ, dβ take this replica's share only (the Trainer sums the gradients).
#include <cmath>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "../core/parallel.hpp"
#include "../core/replicas.hpp"
#include "common.hpp"

namespace nmfdsl {

enum class bn_mode { batch_statistics, running_statistics };

struct BatchNorm : layer_base {
    struct options {
        bn_mode mode = bn_mode::batch_statistics;
        double eps = 1e-5;
        double momentum = 0.1;
    };
    static std::string name() { return "BatchNorm"; }
    template <class In>
    using output_shape = In;
    template <class In>
    static constexpr std::array<param_spec, 2> param_tensors{
        {{"gamma", group::norm, detail::channels<In>()}, {"beta", group::norm, detail::channels<In>()}}};
    template <class In>
    static constexpr std::array<param_spec, 2> buffer_tensors{
        {{"running_mean", group::norm, detail::channels<In>()},
         {"running_var", group::norm, detail::channels<In>(), {}, value_range::non_negative}}};

    template <class In, class T>
    struct cache {
        aligned_vector<T> mean, inv_std;
        bool used_running = false;
    };

    template <class In, class T>
    static void init(T* p, T* b, rng&)
    {
        constexpr std::size_t C = detail::channels<In>();
        std::fill(detail::tensor<BatchNorm, In>(p, 0), detail::tensor<BatchNorm, In>(p, 0) + C, T(1));
        std::fill(b + tensor_offset(buffer_tensors<In>, 1), b + tensor_offset(buffer_tensors<In>, 1) + C, T(1));
    }

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = detail::channels<In>();
        const std::size_t rows = a.batch * detail::rows_per_sample<In>();
        T* run_mean = a.buffers;
        T* run_var = a.buffers + tensor_offset(buffer_tensors<In>, 1);
        c.mean.assign(C, T(0));
        c.inv_std.assign(C, T(0));
        c.used_running = o.mode == bn_mode::running_statistics && !a.training;
        if (c.used_running) {
            for (std::size_t ch = 0; ch < C; ++ch) {
                c.mean[ch] = run_mean[ch];
                c.inv_std[ch] = T(1) / std::sqrt(run_var[ch] + T(o.eps));
            }
        } else {
            aligned_vector<T> var(C, T(0));
            column_sums<C>(rows, c.mean.data(), [&](std::size_t r, std::size_t ch) { return a.x[r * C + ch]; });
            const T all_rows = T(sum_over_replicas({c.mean.data()}, C, rows));
            for (std::size_t ch = 0; ch < C; ++ch)
                c.mean[ch] /= all_rows;
            column_sums<C>(rows, var.data(), [&](std::size_t r, std::size_t ch) {
                const T d = a.x[r * C + ch] - c.mean[ch];
                return d * d;
            });
            sum_over_replicas({var.data()}, C, rows);
            for (std::size_t ch = 0; ch < C; ++ch) {
                var[ch] /= all_rows;
                c.inv_std[ch] = T(1) / std::sqrt(var[ch] + T(o.eps));
            }
            if (o.mode == bn_mode::running_statistics && a.training && a.update_buffers) {
                const T m = T(o.momentum);
                const T unbias = all_rows > T(1) ? all_rows / (all_rows - T(1)) : T(1);
                for (std::size_t ch = 0; ch < C; ++ch) {
                    run_mean[ch] = (T(1) - m) * run_mean[ch] + m * c.mean[ch];
                    run_var[ch] = (T(1) - m) * run_var[ch] + m * var[ch] * unbias;
                }
            }
        }
        const T* gamma = detail::tensor<BatchNorm, In>(a.params, 0);
        const T* beta = detail::tensor<BatchNorm, In>(a.params, 1);
        parallel_chunks(rows, detail::row_chunk<C>(), [&](std::size_t rb, std::size_t re) {
            for (std::size_t r = rb; r < re; ++r)
                for (std::size_t ch = 0; ch < C; ++ch)
                    a.y[r * C + ch] = gamma[ch] * (a.x[r * C + ch] - c.mean[ch]) * c.inv_std[ch] + beta[ch];
        });
    }

    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        constexpr std::size_t C = detail::channels<In>();
        const std::size_t rows = a.batch * detail::rows_per_sample<In>();
        const T* gamma = detail::tensor<BatchNorm, In>(a.params, 0);
        T* dgamma = detail::tensor<BatchNorm, In>(a.grads, 0);
        T* dbeta = detail::tensor<BatchNorm, In>(a.grads, 1);
        aligned_vector<T> sum_dy(C, T(0)), sum_dy_xhat(C, T(0));
        column_sums<C>(rows, sum_dy.data(), [&](std::size_t r, std::size_t ch) { return a.dy[r * C + ch]; });
        column_sums<C>(rows, sum_dy_xhat.data(), [&](std::size_t r, std::size_t ch) {
            return a.dy[r * C + ch] * (a.x[r * C + ch] - c.mean[ch]) * c.inv_std[ch];
        });
        for (std::size_t ch = 0; ch < C; ++ch) {
            dgamma[ch] += sum_dy_xhat[ch];
            dbeta[ch] += sum_dy[ch];
        }
        T m = T(rows);
        if (!c.used_running) {  // dx depends on the whole (global) batch
            m = T(sum_over_replicas({sum_dy.data(), sum_dy_xhat.data()}, C, rows));
        }
        const bool running = c.used_running;
        parallel_chunks(rows, detail::row_chunk<C>(), [&](std::size_t rb, std::size_t re) {
            for (std::size_t r = rb; r < re; ++r)
                for (std::size_t ch = 0; ch < C; ++ch) {
                    const std::size_t at = r * C + ch;
                    if (running) {
                        a.dx[at] = a.dy[at] * gamma[ch] * c.inv_std[ch];
                    } else {
                        const T xhat = (a.x[at] - c.mean[ch]) * c.inv_std[ch];
                        a.dx[at] = gamma[ch] * c.inv_std[ch] / m * (m * a.dy[at] - sum_dy[ch] - xhat * sum_dy_xhat[ch]);
                    }
                }
        });
    }

private:
    /// Adds the other replicas' column sums to each of `sums` (C values each; core/replicas.hpp), all in one
    /// collective, and returns the number of rows they cover; without replicas it leaves the sums as they are and
    /// returns rows.
    template <class T>
    static double sum_over_replicas(std::initializer_list<T*> sums, std::size_t C, std::size_t rows)
    {
        replica_group* g = active_replicas();
        if (!g || g->size() == 1)
            return double(rows);
        thread_local std::vector<double> v;  // reused: no allocation per call once it has grown
        v.resize(sums.size() * C + 1);
        std::size_t at = 0;
        for (const T* s : sums)
            for (std::size_t ch = 0; ch < C; ++ch)
                v[at++] = double(s[ch]);
        v[at] = double(rows);
        g->sum(std::span<double>(v));
        at = 0;
        for (T* s : sums)
            for (std::size_t ch = 0; ch < C; ++ch)
                s[ch] = T(v[at++]);
        return v[at];
    }

    /// out[ch] = Σ_r value(r, ch) over `rows` rows: partial sums over fixed row chunks, added in chunk order (the
    /// result does not depend on the thread count).
    template <std::size_t C, class T, class F>
    static void column_sums(std::size_t rows, T* out, F&& value)
    {
        const std::size_t chunk = detail::row_chunk<C>();
        const std::size_t chunks = (rows + chunk - 1) / chunk;
        std::vector<T> partial(chunks * C, T(0));
        parallel_for(chunks, [&](std::size_t k) {
            T* p = partial.data() + k * C;
            for (std::size_t r = k * chunk; r < std::min(rows, (k + 1) * chunk); ++r)
                for (std::size_t ch = 0; ch < C; ++ch)
                    p[ch] += value(r, ch);
        });
        for (std::size_t ch = 0; ch < C; ++ch)
            out[ch] = T(0);
        for (std::size_t k = 0; k < chunks; ++k)
            for (std::size_t ch = 0; ch < C; ++ch)
                out[ch] += partial[k * C + ch];
    }
};

} // namespace nmfdsl
