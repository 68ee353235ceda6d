#pragma once
/// @file cnmf.hpp
/// The convolutional NMF module (docs/method.md §1–§2).
///  - CNMFCore<Out, K, Stride>: unfold K×K patches → L1 over each patch (eps 1e-19) → NMF inference with
///    W = |V| / (rowsum|V| + 1e-19), h⁰ = 1/Out, T multiplicative updates (kernels/nmf.hpp). Output: h, one simplex
///    vector of Out values per position. Parameter V [Out, K·K·C] (group `nmf`), initialised U[0, 1).
///    Backward in the mode chosen by options().gradient(): approximate (the paper's, eq. (1), (2)), unrolled (exact,
///    through all T iterations), or implicit (at the fixed point) — kernels/nmf_backward.hpp — then the chain to V
///    (through abs and the row normalisation):
///      dV = sign(V) ⊙ (GW − rowsum(GW ⊙ W)) / S,   S = rowsum|V| + 1e-19,
///    and back through the patch L1 norm and col2im. In approximate mode no x̂ matrix exists: the forward makes x̂
///    tile by tile from the input, and the backward remakes it (bit-identically) from the input and the saved patch
///    sums, so the layer keeps only h and one sum per position between the passes. Without ε it solves only the
///    patches holding a non-zero value: an all-zero patch's h is 0 exactly (forward_streamed).
///  - CNMF<Out, K, Stride>: the paper's module, ReLU → CNMFCore → BatchNorm when the output map is larger than 1×1.
/// K may be nmfdsl::whole_map. With NMFDSL_CHECKED, non-finite or negative input throws numeric_error.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../kernels/im2col.hpp"
#include "../kernels/nmf.hpp"
#include "../kernels/nmf_backward.hpp"
#include "../kernels/reduce.hpp"
#include "batchnorm.hpp"
#include "common.hpp"
#include "conv.hpp"
#include "elementwise.hpp"
#include "mix1x1.hpp"

namespace nmfdsl {

enum class nmf_gradient { approximate, unrolled, implicit };

constexpr const char* gradient_name(nmf_gradient g)
{
    switch (g) {
    case nmf_gradient::unrolled: return "unrolled";
    case nmf_gradient::implicit: return "implicit";
    default: return "approximate";
    }
}

/// The exact gradient modes' kernels, reached through pointers: their code is compiled only in the translation units
/// that select an exact mode (cnmf_options::gradient), not in every one that trains with the approximate gradient.
template <class T>
struct nmf_exact_kernels {
    void (*backward_unrolled)(const kernels::nmf_weights<T>&, const T*, std::size_t, std::size_t,
                              std::type_identity_t<std::optional<T>>, const T*, T*, T*,
                              kernels::nmf_backward_scratch<T>&);
    void (*backward_implicit)(const kernels::nmf_weights<T>&, const T*, const T*, const T*, std::size_t, T*, T*,
                              kernels::nmf_backward_scratch<T>&);
};
template <class T>
inline constexpr nmf_exact_kernels<T> nmf_exact_kernels_v{&kernels::nmf_backward_unrolled<T>,
                                                          &kernels::nmf_backward_implicit<T>};

/// Runtime options of an NMF layer; the setters validate and throw argument_error naming the option.
class cnmf_options {
public:
    std::size_t iterations() const { return iterations_; }
    std::optional<double> epsilon() const { return epsilon_; }
    nmf_gradient gradient() const { return gradient_; }

    /// Number of multiplicative updates T (default 20); must be ≥ 1.
    cnmf_options& iterations(std::size_t t)
    {
        if (t == 0)
            throw argument_error("nmfdsl: CNMF option 'iterations' must be at least 1, got 0");
        iterations_ = t;
        return *this;
    }
    /// Damped update h ⊙ (1 + ε u) with ε ≥ 0 (default: off, the standard update h ⊙ u).
    cnmf_options& epsilon(std::optional<double> e)
    {
        if (e && !(std::isfinite(*e) && *e >= 0.0))
            throw argument_error("nmfdsl: CNMF option 'epsilon' must be a finite value >= 0 (or none), got " +
                                        std::to_string(*e));
        epsilon_ = e;
        return *this;
    }
    /// The gradient mode (default approximate; docs/cnmf.md says where each is valid).
    cnmf_options& gradient(nmf_gradient g)
    {
        gradient_ = g;
        if (g != nmf_gradient::approximate) {
            exact_float_ = &nmf_exact_kernels_v<float>;
            exact_double_ = &nmf_exact_kernels_v<double>;
        }
        return *this;
    }

    /// The exact modes' kernels for scalar type T (set with an exact mode).
    template <class T>
    const nmf_exact_kernels<T>& exact_kernels() const
    {
        const nmf_exact_kernels<T>* k;
        if constexpr (std::is_same_v<T, float>)
            k = exact_float_;
        else
            k = exact_double_;
        return *k;
    }

private:
    std::size_t iterations_ = 20;
    std::optional<double> epsilon_;
    nmf_gradient gradient_ = nmf_gradient::approximate;
    const nmf_exact_kernels<float>* exact_float_ = nullptr;
    const nmf_exact_kernels<double>* exact_double_ = nullptr;
};

namespace detail {
template <class T>
void check_nmf_input(const T* x, std::size_t n, std::size_t per_sample, const layer_path& where,
                     const std::string& name)
{
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i]) || x[i] < T(0))
            throw numeric_error("nmfdsl: layer " + where.text() + " (" + name + "): input value " +
                                std::to_string(x[i]) + " at sample " + std::to_string(i / per_sample) + ", element " +
                                std::to_string(i % per_sample) + " reaches the NMF, which needs finite, non-negative "
                                "input (put a ReLU before it and check the data)");
}
} // namespace detail

template <std::size_t Out, std::size_t K, std::size_t Stride = 1>
struct CNMFCore : detail::patch_layer<Out, K, Stride> {
    static_assert(Out > 0, "nmfdsl: CNMF<Out, K> needs Out > 0");
    using options = cnmf_options;
    template <class In>
    static constexpr std::size_t patch = detail::patch_layer<Out, K, Stride>::template patch<In>;
    static std::string name()
    {
        std::string s = "CNMF<" + std::to_string(Out) + "," + detail::kernel_text(K);
        if (Stride != 1)
            s += "," + std::to_string(Stride);
        return s + ">";
    }
    template <class In>
    static constexpr std::array<param_spec, 1> param_tensors{
        {{"V", group::nmf, Out * patch<In>, detail::patch_layer<Out, K, Stride>::template weight_dims<In>}}};

    template <class In, class T>
    struct cache {
        kernels::nmf_weights<T> wts;
        aligned_vector<T> w, row_sum;     ///< W [Out × I] and S = rowsum|V| + 1e-19
        aligned_vector<T> xhat;       ///< normalised patches [pad_rows(rows) × Ip]; kept by the exact modes only
        aligned_vector<T> patch_sum;  ///< Σ of each raw patch (the approximate mode remakes x̂ from it and x)
        /// Forward scratch of the approximate mode without ε: the rows whose patch is not all zero, in order (an
        /// all-zero patch gives h = 0 exactly; it is not solved)
        aligned_vector<std::size_t> active;
        aligned_vector<T> gx, gw;
        kernels::nmf_backward_scratch<T> bscratch;
        cnmf_options used;  ///< the options of the last forward; its backward uses these, whatever was set since
        /// Bytes kept between forward and backward beyond the weights and the input: the patch sums and h (the
        /// layer's output); the exact modes add x̂ (the unrolled backward recomputes the iterations from it).
        std::size_t saved_bytes(std::size_t rows) const
        {
            return (xhat.size() + patch_sum.size() + rows * Out) * sizeof(T);
        }
    };

    template <class T>
    static std::optional<T> epsilon_of(const options& o)
    {
        std::optional<T> e;
        if (const auto v = o.epsilon())
            e.emplace(static_cast<T>(*v));
        return e;
    }

    template <class In, class T>
    static void init(T* p, T*, rng& g)
    {
        for (std::size_t i = 0; i < Out * patch<In>; ++i)
            p[i] = g.uniform01<T>();
    }

    template <class In, class T>
    static void forward(const options& o, const forward_args<T>& a, cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr kernels::fixed_window<win> geometry{};  // the row-range kernels then see constant extents
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        using lay = kernels::nmf_layout<T>;
        if constexpr (NMFDSL_CHECKED)
            detail::check_nmf_input(a.x, a.batch * In::size, In::size, a.where, name());
        // W = |V| / (rowsum|V| + 1e-19)
        c.w.resize(Out * I);
        c.row_sum.resize(Out);
        for (std::size_t k = 0; k < Out; ++k) {
            const T s = kernels::abs_sum(a.params + k * I, I) + detail::l1_eps<T>();
            c.row_sum[k] = s;
            for (std::size_t i = 0; i < I; ++i)
                c.w[k * I + i] = std::abs(a.params[k * I + i]) / s;
        }
        c.wts.assign(c.w.data(), Out, I);
        // x̂: unfolded patches, each L1-normalised (docs/method.md §1)
        const std::size_t rows = a.batch * P, Ip = c.wts.ip;
        c.patch_sum.resize(rows);
        const std::optional<T> eps = epsilon_of<T>(o);
        c.used = o;
        if (o.gradient() == nmf_gradient::approximate) {
            // x̂ is made tile by tile from the input and not kept; the backward remakes it from x and the patch sums
            // (scaling whole padded rows: the padding stays zero, and whole vectors are cheaper than a remainder)
            c.xhat = {};
            forward_streamed<In>(o, eps, a, c);
            return;
        }
        c.xhat.assign(lay::pad_rows(rows) * Ip, T(0));
        kernels::im2col(a.x, a.batch, geometry, c.xhat.data(), Ip);
        detail::l1_normalise_rows(c.xhat.data(), rows, I, Ip, c.patch_sum.data());
        kernels::nmf_forward(c.wts, c.xhat.data(), rows, o.iterations(), eps, a.y);
    }

    /// The approximate mode's forward: x̂ rows made tile by tile from the input. Without ε only the rows whose patch
    /// is not all zero are solved. An all-zero patch has x̂ = 0, so its first update gives h̃ = 0 and
    /// h = 0 / (0 + 1e-19) = 0, which every later update keeps: its output is 0 exactly, whatever T (and its patch
    /// sum 0). Each row's result is independent of the others (kernels/nmf.hpp), so the output is bit for bit the one
    /// of solving every row; only the work shrinks (on Fashion-MNIST about one 5×5 patch in six is all zero). Finding
    /// those rows costs one pass over the input. With ε such a patch keeps h⁰, so every row is solved.
    template <class In, class T>
    static void forward_streamed(const options& o, const std::optional<T>& eps, const forward_args<T>& a,
                                 cache<In, T>& c)
    {
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr kernels::fixed_window<win> geometry{};
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P, Ip = c.wts.ip;
        // c.active: first a flag per row (its patch holds a non-zero value), then, compacted, the flagged rows
        std::size_t m = rows;
        if (!eps) {
            c.active.resize(rows);
            kernels::mark_nonzero_patches(a.x, a.batch, win, c.active.data());
            m = 0;
            for (std::size_t r = 0; r < rows; ++r)
                if (c.active[r])
                    c.active[m++] = r;
            c.active.resize(m);
        } else {
            c.active = {};
        }
        const std::size_t* act = m == rows ? nullptr : c.active.data();  // every row: no map
        if (act) {  // the rows between two active rows (and before the first, after the last): h = 0, Σ = 0
            parallel_chunks(m + 1, detail::elementwise_chunk / Out + 1, [&](std::size_t jb, std::size_t je) {
                for (std::size_t j = jb; j < je; ++j) {
                    const std::size_t gap_begin = j == 0 ? 0 : act[j - 1] + 1, gap_end = j == m ? rows : act[j];
                    std::fill(a.y + gap_begin * Out, a.y + gap_end * Out, T(0));
                    std::fill(c.patch_sum.begin() + gap_begin, c.patch_sum.begin() + gap_end, T(0));
                }
            });
        }
        // solve the m active rows, each into its own row of the output; the source copies runs of consecutive rows
        kernels::nmf_forward_streamed(
            c.wts, m, o.iterations(), eps, a.y,
            [&](std::size_t first, std::size_t count, T* dst) {
                for (std::size_t j = 0; j < count;) {
                    const std::size_t r0 = kernels::detail::output_row(act, first + j);
                    std::size_t run = 1;
                    while (j + run < count && kernels::detail::output_row(act, first + j + run) == r0 + run)
                        ++run;
                    kernels::im2col_rows(a.x, r0, run, geometry, dst + j * Ip, Ip);
                    for (std::size_t r = 0; r < run; ++r)
                        c.patch_sum[r0 + r] = detail::l1_normalise_row(dst + (j + r) * Ip, I, Ip);
                    j += run;
                }
            },
            act);
    }

    template <class In, class T>
    static void backward(const options&, const backward_args<T>& a, cache<In, T>& c)
    {
        const cnmf_options& o = c.used;  // the forward's T, ε and gradient mode, not the current options
        constexpr auto win = detail::window_of<In, K, Stride>();
        constexpr kernels::fixed_window<win> geometry{};  // the row-range kernels then see constant extents
        constexpr std::size_t I = patch<In>, P = win.oh() * win.ow();
        const std::size_t rows = a.batch * P, Ip = c.wts.ip;
        c.gw.resize(Out * Ip);
        if (a.need_dx)
            std::fill(a.dx, a.dx + a.batch * In::size, T(0));
        switch (o.gradient()) {
        case nmf_gradient::unrolled: {
            const std::optional<T> eps = epsilon_of<T>(o);
            c.gx.resize(kernels::nmf_layout<T>::pad_rows(rows) * Ip);
            o.template exact_kernels<T>().backward_unrolled(c.wts, c.xhat.data(), rows, o.iterations(), eps, a.dy,
                                                            c.gx.data(), a.need_grads ? c.gw.data() : nullptr,
                                                            c.bscratch);
            break;
        }
        case nmf_gradient::implicit:
            c.gx.resize(kernels::nmf_layout<T>::pad_rows(rows) * Ip);
            try {
                o.template exact_kernels<T>().backward_implicit(c.wts, c.xhat.data(), a.y, a.dy, rows, c.gx.data(),
                                                                c.gw.data(), c.bscratch);
            } catch (const numeric_error& e) {  // name the layer
                throw numeric_error("nmfdsl: layer " + a.where.text() + " (" + name() + "): " +
                                    std::string(e.what()).substr(8));
            }
            break;
        default:  // x̂ remade from the input, the patch L1 backward and col2im fused in: no x̂ or gx matrix
            c.gx = {};
            kernels::nmf_backward_approx_streamed(
                c.wts,
                [&](std::size_t first, std::size_t count, T* dst) {
                    // columns [0, I) only: the kernel keeps the padding columns of its buffer zero across calls
                    kernels::im2col_rows(a.x, first, count, geometry, dst, Ip);
                    for (std::size_t r = 0; r < count; ++r)
                        detail::l1_scale_row(dst + r * Ip, I, c.patch_sum[first + r]);
                },
                a.y, a.dy, rows, P, c.gw.data(), c.bscratch, c.patch_sum.data(),
                [&](std::size_t first, std::size_t count, const T* gx) {
                    if (a.need_dx)
                        kernels::col2im_add_rows(gx, first, count, geometry, a.dx, Ip);
                });
        }
        // dV = sign(V) ⊙ (GW − rowsum(GW ⊙ W)) / S
        for (std::size_t k = 0; k < (a.need_grads ? Out : 0); ++k) {
            const T* gw = c.gw.data() + k * Ip;
            const T* w = c.w.data() + k * I;
            const T* v = a.params + k * I;
            T* gv = a.grads + k * I;
            const T dot = kernels::dot(gw, w, I);
            const T inv = T(1) / c.row_sum[k];
            for (std::size_t i = 0; i < I; ++i) {
                const T sign = T(v[i] > T(0)) - T(v[i] < T(0));  // sign(0) = 0, as abs' derivative in the reference
                gv[i] += sign * (gw[i] - dot) * inv;
            }
        }
        // other modes: through the patch L1 norm, then col2im
        if (o.gradient() != nmf_gradient::approximate && a.need_dx) {
            detail::l1_backward_rows(c.gx.data(), c.xhat.data(), c.patch_sum.data(), rows, I, Ip);
            kernels::col2im_add(c.gx.data(), a.batch, geometry, a.dx, Ip);
        }
    }
};

/// The paper's CNMF module: ReLU → CNMFCore<Out, K, Stride> → BatchNorm when the output map is larger than 1×1.
template <std::size_t Out, std::size_t K, std::size_t Stride = 1>
struct CNMF {
    template <class In>
    using expand =
        std::conditional_t<detail::core_output_larger_than_1x1<CNMFCore<Out, K, Stride>, In>(),
                           Seq<ReLU, CNMFCore<Out, K, Stride>, BatchNorm>, Seq<ReLU, CNMFCore<Out, K, Stride>>>;
};

/// Applies f(cnmf_options&) to every NMF layer of a model, wherever it sits in the tree, e.g.
///   nmfdsl::configure_nmf(model, [](auto& o) { o.iterations(5).gradient(nmfdsl::nmf_gradient::unrolled); });
/// Returns the number of NMF layers configured.
template <class M, class F>
std::size_t configure_nmf(M& model, F&& f)
{
    return model.template configure<cnmf_options>(std::forward<F>(f));
}

} // namespace nmfdsl
