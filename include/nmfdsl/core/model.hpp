#pragma once
/// @file model.hpp
/// Model<Net, In, T>: owns the parameters, their gradients and the buffers of a network (flat, 64-byte aligned
/// arrays; every tensor tagged with a parameter group), the per-layer runtime options, and a default workspace.
/// A Model is a value: a copy owns copies of all of these (including a pending forward's state, so the copy's
/// backward works on its own data), and a move leaves nothing shared.
/// Tensors cross the API channels-first, as users hold them: a batch of Shape<C,H,W> is an xtensor [N, C, H, W], a
/// batch of Shape<N> an xtensor [batch, N]. Inside, everything is channels-last.
#include <algorithm>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <boost/hana/integral_constant.hpp>
#include <xtensor/xtensor.hpp>

#include "engine.hpp"
#include "error.hpp"
#include "infer.hpp"
#include "summary.hpp"
#include "tree.hpp"

namespace nmfdsl {

/// One trainable tensor of a model, with its gradient.
template <class T>
struct parameter_ref {
    std::size_t layer;          ///< index of the top-level layer it belongs to
    std::string path;           ///< the path of the layer that owns it ("3/1/0")
    std::string layer_name;
    std::string_view name;      ///< tensor name inside the layer ("weight", "bias", "gamma", ...)
    group grp;
    std::span<T> value;
    std::span<T> grad;
    std::vector<std::size_t> shape;  ///< outermost first (param_spec::dims); its product is value.size()
    value_range range;               ///< the values it may hold (param_spec::range)

    /// "3/1/0.weight": unique in the model, stable while the network type is.
    std::string qualified_name() const { return path + "." + std::string(name); }
};

/// One buffer of a model (non-trainable state such as BatchNorm's running statistics).
template <class T>
struct buffer_ref {
    std::size_t layer;          ///< index of the top-level layer it belongs to
    std::string path;           ///< the path of the layer that owns it ("3/1/0")
    std::string layer_name;
    std::string_view name;      ///< buffer name inside the layer ("running_mean", "running_var", ...)
    std::span<T> value;
    std::vector<std::size_t> shape;
    value_range range;          ///< the values it may hold (param_spec::range): running_var's are non-negative

    /// "3/1/0.running_mean": unique in the model, stable while the network type is.
    std::string qualified_name() const { return path + "." + std::string(name); }
};

namespace detail {

/// [N, C, H, W] -> [N, H, W, C]
template <class T>
void to_channels_last(const T* src, std::size_t n, std::size_t c, std::size_t hw, T* dst)
{
    for (std::size_t b = 0; b < n; ++b)
        for (std::size_t ch = 0; ch < c; ++ch) {
            const T* s = src + (b * c + ch) * hw;
            T* d = dst + b * c * hw + ch;
            for (std::size_t p = 0; p < hw; ++p)
                d[p * c] = s[p];
        }
}

/// [N, H, W, C] -> [N, C, H, W]
template <class T>
void to_channels_first(const T* src, std::size_t n, std::size_t c, std::size_t hw, T* dst)
{
    for (std::size_t b = 0; b < n; ++b)
        for (std::size_t ch = 0; ch < c; ++ch) {
            const T* s = src + b * c * hw + ch;
            T* d = dst + (b * c + ch) * hw;
            for (std::size_t p = 0; p < hw; ++p)
                d[p] = s[p * c];
        }
}


template <class S, class T>
std::array<std::size_t, S::rank + 1> batch_shape(std::size_t n)
{
    if constexpr (S::rank == 3)
        return {n, S::c, S::h, S::w};
    else
        return {n, S::size};
}

} // namespace detail

template <class Net, class In, class T = float>
class Model {
    using resolved = detail::resolve<true, Net, In>;

public:
    using value_type = T;
    using input_shape = In;
    using output_shape = typename resolved::out;
    using entries = std::conditional_t<resolved::valid, typename resolved::entries, type_list<>>;
    using engine = detail::engine<entries>;
    using options_tuple = typename engine::options;
    using input_tensor = xt::xtensor<T, In::rank + 1>;
    using output_tensor = xt::xtensor<T, output_shape::rank + 1>;
    static constexpr std::size_t layer_count = engine::count;
    static constexpr std::size_t parameter_count = detail::entries_param_count<entries>::value;

    /// Per-call state: what backward needs. One per concurrent forward/backward pair.
    struct workspace {
        typename engine::template workspace<T> net;
        aligned_vector<T> input;  ///< the batch, channels-last
        aligned_vector<T> grad;   ///< dL/d output, channels-last
        aligned_vector<T> grad_input;
        aligned_vector<T> scratch_grads;  ///< where input_gradient lets layers write parameter gradients
        std::size_t batch = 0;
    };

    explicit Model(seed s = seed{0})
        : params_(engine::param_size), grads_(engine::param_size), buffers_(engine::buffer_size)
    {
        reset_parameters(s);
    }

    /// Re-initialises every parameter and buffer from the seed; gradients are zeroed.
    void reset_parameters(seed s)
    {
        rng g(s);
        std::fill(params_.begin(), params_.end(), T(0));
        std::fill(buffers_.begin(), buffers_.end(), T(0));
        engine::template init<T>(params_.data(), buffers_.data(), g);
        zero_grad();
    }

    /// Runs the network on a batch [N, C, H, W] (or [N, features]). Throws shape_error for a wrong per-sample shape
    /// or an empty batch.
    template <class E>
    output_tensor forward(const E& batch)
    {
        return forward(batch, default_ws_);
    }

    /// The same, keeping what backward needs in `ws` (one workspace per concurrent forward/backward pair).
    template <class E>
    output_tensor forward(const E& batch, workspace& ws)
    {
        return run_forward(batch, ws, buffers_.data(), true);
    }

    /// A forward that leaves the model untouched, so that several threads may share one const Model, each with its
    /// own workspace. It runs in the model's mode; in training mode BatchNorm's running statistics (if used) are not
    /// updated.
    template <class E>
    output_tensor forward(const E& batch, workspace& ws) const
    {
        // the layer protocol forbids writing buffers when update_buffers is false (checked by check_layer)
        return run_forward(batch, ws, const_cast<T*>(buffers_.data()), false);
    }

    /// Back-propagates dL/d(output) of the last forward; accumulates parameter gradients and returns dL/d(input).
    template <class E>
    input_tensor backward(const E& grad_out)
    {
        return backward(grad_out, default_ws_);
    }

    template <class E>
    input_tensor backward(const E& grad_out, workspace& ws)
    {
        run_backward(grad_out, ws, true);
        return staged_input_gradient(ws);
    }

    /// dL/d(input) of the last forward with ws, for dL/d(output) = grad_out — what an attacker needs — leaving the
    /// model (its parameter gradients included) untouched: layers are told that no parameter gradient is read
    /// (backward_args::need_grads) and write any they make to a scratch buffer of ws. Const, so that threads may
    /// share one model, each with its own workspace.
    template <class E>
    input_tensor input_gradient(const E& grad_out, workspace& ws) const
    {
        stage_output_gradient(grad_out, ws, "input_gradient");
        ws.grad_input.resize(ws.batch * In::size);
        if constexpr (layer_count == 0) {
            std::copy(ws.grad.begin(), ws.grad.end(), ws.grad_input.begin());
        } else {
            ws.scratch_grads.resize(params_.size());
            engine::template backward<T>(options_, params_.data(), ws.scratch_grads.data(), buffers_.data(),
                                         ws.input.data(), ws.grad.data(), ws.grad_input.data(), ws.net, nullptr,
                                         nullptr, false);
        }
        return staged_input_gradient(ws);
    }

    /// Back-propagates dL/d(output) of the last forward into the parameter gradients only (accumulated), as training
    /// needs: no input gradient is made, and the layers before the first trainable one are not visited.
    template <class E>
    void backward_parameters(const E& grad_out)
    {
        backward_parameters(grad_out, default_ws_);
    }

    template <class E>
    void backward_parameters(const E& grad_out, workspace& ws)
    {
        run_backward(grad_out, ws, false);
    }

    /// backward_parameters(grad_out) and then add_local_costs() in one sweep, with the same result up to the order
    /// of floating-point sums: a layer that can (WNConv) adds its local cost's gradient in its own backward, in the
    /// same weight-gradient product as the loss's gradient. Returns the costs as add_local_costs does, in layer
    /// order. What training calls.
    template <class E>
    std::vector<local_cost> backward_parameters_and_local_costs(const E& grad_out)
    {
        return backward_parameters_and_local_costs(grad_out, default_ws_);
    }
    template <class E>
    std::vector<local_cost> backward_parameters_and_local_costs(const E& grad_out, workspace& ws)
    {
        std::vector<local_cost> out;
        auto collect = [&](const layer_path& where, const std::string& layer, double value) {
            out.push_back({where.text(), layer, value});
        };
        const local_cost_sink sink(collect);
        run_backward(grad_out, ws, false, &sink);
        // the sweep ran from the last layer to the first; each top-level layer reported its own costs in order
        std::stable_sort(out.begin(), out.end(), [](const local_cost& a, const local_cost& b) {
            return top_level_index(a.path) < top_level_index(b.path);
        });
        return out;
    }

    /// Adds the layers' local costs (layer protocol, core/layer.hpp) of the last forward: each layer that has one
    /// accumulates the gradient of its cost into its own parameters' gradients, with its input held fixed. Returns
    /// the costs, one per layer that added one, in layer order; their sum is what they add to the objective.
    std::vector<local_cost> add_local_costs() { return add_local_costs(default_ws_); }
    std::vector<local_cost> add_local_costs(workspace& ws)
    {
        if (ws.batch == 0)
            throw shape_error("nmfdsl: add_local_costs called before forward (the workspace holds no batch)");
        std::vector<local_cost> out;
        if constexpr (layer_count > 0) {
            auto sink = [&](const layer_path& where, const std::string& layer, double value) {
                out.push_back({where.text(), layer, value});
            };
            engine::template local_costs<T>(options_, params_.data(), grads_.data(), ws.input.data(), ws.net, sink);
        }
        return out;
    }

    /// The statistics that layers report on the activations of the last forward (layer protocol, core/layer.hpp:
    /// e.g. "nonzero" of ReLU and FractionalThreshold, "disparity" of WNConv), in layer order; each a mean over the
    /// batch. Changes nothing.
    std::vector<layer_statistic> activation_statistics() { return activation_statistics(default_ws_); }
    std::vector<layer_statistic> activation_statistics(workspace& ws) const
    {
        if (ws.batch == 0)
            throw shape_error("nmfdsl: activation_statistics called before forward (the workspace holds no batch)");
        std::vector<layer_statistic> out;
        if constexpr (layer_count > 0) {
            auto sink = [&](const layer_path& where, const std::string& layer, const char* name, double value) {
                out.push_back({where.text(), layer, name, value});
            };
            engine::template statistics<T>(options_, ws.input.data(), ws.net, sink);
        }
        return out;
    }

    /// What flows between the network's own (top-level) layers in the last forward with ws: entry 0 is the input,
    /// entry i + 1 the output of top-level layer i; each batch × size values, channels-last (per image a contiguous
    /// block, so per-image norms need no reordering). Valid until the next forward with ws.
    std::vector<std::span<const T>> layer_boundaries(const workspace& ws) const
    {
        if (ws.batch == 0)
            throw shape_error("nmfdsl: layer_boundaries called before forward (the workspace holds no batch)");
        std::vector<std::span<const T>> out{std::span<const T>(ws.input.data(), ws.batch * In::size)};
        if constexpr (layer_count > 0)
            for (const auto& o : ws.net.outputs)
                out.emplace_back(o.data(), o.size());
        return out;
    }

    void zero_grad() { std::fill(grads_.begin(), grads_.end(), T(0)); }

    /// Training mode (default) or evaluation mode; only layers with a mode-dependent rule (BatchNorm's running
    /// statistics option) behave differently.
    void set_training(bool on) { training_ = on; }
    bool training() const { return training_; }

    /// Every trainable tensor with its gradient, in layer order, each named by its layer's path (tensors inside a
    /// Concat or Residual are listed at the branch layers that own them).
    std::vector<parameter_ref<T>> parameters() { return parameter_list<T>(params_.data(), grads_.data()); }
    std::vector<parameter_ref<const T>> parameters() const
    {
        return parameter_list<const T>(params_.data(), grads_.data());
    }

    /// Every buffer (non-trainable state: BatchNorm's running statistics), in layer order, named like parameters.
    /// Views into the model: writing through them changes what evaluation uses.
    std::vector<buffer_ref<T>> buffers() { return buffer_list<T>(buffers_.data()); }
    std::vector<buffer_ref<const T>> buffers() const { return buffer_list<const T>(buffers_.data()); }

    /// Layer I of the network's top level (a layer_node, core/tree.hpp): its name, shapes, options, and its
    /// tensors by position or name.
    template <std::size_t I>
    auto layer()
    {
        return node<I>(*this);
    }
    template <std::size_t I>
    auto layer() const
    {
        return node<I>(*this);
    }

    /// Calls f(node) for every layer of the tree, in order: a graph layer, then the layers of each of its branches.
    /// A node (core/tree.hpp) has path(), name(), the shapes, options() and its tensors by position or name.
    template <class F>
    void for_each_layer(F&& f)
    {
        detail::walk_tree<entries>("", 0, options_, params_.data(), grads_.data(), buffers_.data(), f);
    }
    template <class F>
    void for_each_layer(F&& f) const
    {
        detail::walk_tree<entries>("", 0, options_, params_.data(), grads_.data(), buffers_.data(), f);
    }

    /// Calls f(options) for every layer, anywhere in the tree, whose options are of type Options (e.g.
    /// nmfdsl::cnmf_options for every NMF layer); returns how many there were.
    template <class Options, class F>
    std::size_t configure(F&& f)
    {
        std::size_t n = 0;
        for_each_layer([&](const auto& node) {
            if constexpr (std::is_same_v<typename std::decay_t<decltype(node)>::options_type, Options>) {
                f(node.options());
                ++n;
            }
        });
        return n;
    }

    /// The options of the layer at `path` ("3/1/0", as in summary()). Throws lookup_error naming the path when there
    /// is no such layer, and the layer found there when its options are not of type Options.
    template <class Options>
    Options& options_at(std::string_view path)
    {
        Options* found = nullptr;
        std::string what;
        std::size_t layers = 0;
        for_each_layer([&](const auto& node) {
            ++layers;
            if (node.path != path)
                return;
            using N = std::decay_t<decltype(node)>;
            if constexpr (std::is_same_v<typename N::options_type, Options>)
                found = &node.options();
            else
                what = N::name();
        });
        if (found)
            return *found;
        if (!what.empty())
            throw lookup_error("nmfdsl: the layer at path " + std::string(path) + " is " + what +
                               ", which does not take the options asked for");
        throw lookup_error("nmfdsl: the network has no layer at path '" + std::string(path) + "' (it has " +
                           std::to_string(layers) + " layers; summary() lists their paths)");
    }

    std::span<T> flat_parameters() { return {params_.data(), params_.size()}; }
    std::span<T> flat_gradients() { return {grads_.data(), grads_.size()}; }
    std::span<T> flat_buffers() { return {buffers_.data(), buffers_.size()}; }
    std::span<const T> flat_parameters() const { return {params_.data(), params_.size()}; }
    std::span<const T> flat_gradients() const { return {grads_.data(), grads_.size()}; }
    std::span<const T> flat_buffers() const { return {buffers_.data(), buffers_.size()}; }
    options_tuple& options() { return options_; }
    const options_tuple& options() const { return options_; }

    static std::string summary() { return detail::summary_table<entries>(); }

    /// The network's signature: scalar type, input shape and every layer with its shapes, one per line. Checkpoints
    /// carry it, so that one network's parameters are never loaded into another.
    static std::string signature()
    {
        std::string s = std::string("nmfdsl model; scalar ") + (sizeof(T) == 4 ? "float" : "double") + "; input " +
                        shape_string<In>() + "\n";
        boost::hana::for_each(engine::entries, [&](auto e) {
            using E = typename decltype(e)::type;
            s += std::to_string(E::index) + " " + E::layer::name() + " " + shape_string<typename E::in>() + " -> " +
                 shape_string<typename E::out>() + "\n";
        });
        return s;
    }

private:
    template <std::size_t I, class Self>
    static auto node(Self& self)
    {
        static_assert(I < layer_count, "nmfdsl: layer index out of range; see Model::layer_count or summary()");
        using E = typename decltype(+engine::entries[boost::hana::size_c<I>])::type;
        auto& o = std::get<I>(self.options_);
        using U = std::remove_reference_t<decltype(*self.params_.data())>;
        return layer_node<E, std::remove_reference_t<decltype(o)>, U>{
            std::to_string(I), 0, &o, self.params_.data() + engine::param_offsets[I],
            self.grads_.data() + engine::param_offsets[I], self.buffers_.data() + engine::buffer_offsets[I]};
    }

    template <class U>
    static std::vector<parameter_ref<U>> parameter_list(U* params, U* grads)
    {
        std::vector<parameter_ref<U>> out;
        options_tuple opts{};  // the walk needs options; only the tensors are read
        auto visit = [&](const auto& node) {
            using N = std::decay_t<decltype(node)>;
            if constexpr (!N::is_graph)
                for (std::size_t k = 0; k < N::specs.size(); ++k)
                    out.push_back({top_level_index(node.path), node.path, N::name(), N::specs[k].name,
                                   N::specs[k].grp, node.params(k), node.grads(k), tensor_shape(N::specs[k]),
                                   N::specs[k].range});
        };
        U* no_buffers = nullptr;
        detail::walk_tree<entries>("", 0, opts, params, grads, no_buffers, visit);
        return out;
    }

    template <class U>
    static std::vector<buffer_ref<U>> buffer_list(U* buffers)
    {
        std::vector<buffer_ref<U>> out;
        options_tuple opts{};
        auto visit = [&](const auto& node) {
            using N = std::decay_t<decltype(node)>;
            if constexpr (!N::is_graph)
                for (std::size_t k = 0; k < N::buffer_specs.size(); ++k)
                    out.push_back({top_level_index(node.path), node.path, N::name(), N::buffer_specs[k].name,
                                   node.buffers(k), tensor_shape(N::buffer_specs[k]), N::buffer_specs[k].range});
        };
        U* none = nullptr;
        detail::walk_tree<entries>("", 0, opts, none, none, buffers, visit);
        return out;
    }

    static std::size_t top_level_index(const std::string& path)
    {
        return static_cast<std::size_t>(std::stoul(path.substr(0, path.find('/'))));
    }

    // run_forward/run_backward are kept out of line: every caller (forward, evaluation, a training step, const and
    // non-const overloads) then shares one copy of the network's code, which keeps compile times down.
    template <class E>
    [[gnu::noinline]] output_tensor run_forward(const E& batch, workspace& ws, T* buffers, bool update_buffers) const
    {
        check_input(batch);
        const std::size_t n = batch.shape()[0];
        ws.batch = n;
        ws.input.resize(n * In::size);
        const auto contiguous = xt::eval(batch);
        if constexpr (In::rank == 3)
            detail::to_channels_last(contiguous.data(), n, In::c, In::h * In::w, ws.input.data());
        else
            std::copy(contiguous.data(), contiguous.data() + n * In::size, ws.input.data());
        const T* y = engine::template forward<T>(options_, params_.data(), buffers, ws.input.data(), n, ws.net,
                                                 training_, update_buffers);
        output_tensor out(detail::batch_shape<output_shape, T>(n));
        if constexpr (output_shape::rank == 3)
            detail::to_channels_first(y, n, output_shape::c, output_shape::h * output_shape::w, out.data());
        else
            std::copy(y, y + n * output_shape::size, out.data());
        return out;
    }

    /// Checks dL/d(output) against the last forward's batch and leaves it channels-last in ws.grad. `who` names the
    /// caller in the error.
    template <class E>
    static void stage_output_gradient(const E& grad_out, workspace& ws, const char* who)
    {
        if (ws.batch == 0)
            throw shape_error(std::string("nmfdsl: ") + who + " called before forward (the workspace holds no batch)");
        const auto g = xt::eval(grad_out);
        const auto expected = detail::batch_shape<output_shape, T>(ws.batch);
        if (g.dimension() != expected.size() || !std::equal(expected.begin(), expected.end(), g.shape().begin()))
            throw shape_error(std::string("nmfdsl: ") + who + " expects the gradient of the network output " +
                              batch_shape_string<output_shape>(ws.batch) + ", got " + shape_text(g));
        const std::size_t n = ws.batch;
        ws.grad.resize(n * output_shape::size);
        if constexpr (output_shape::rank == 3)
            detail::to_channels_last(g.data(), n, output_shape::c, output_shape::h * output_shape::w, ws.grad.data());
        else
            std::copy(g.data(), g.data() + n * output_shape::size, ws.grad.data());
    }

    /// dL/dx from ws.grad_input (channels-last) as a tensor in the input's layout.
    static input_tensor staged_input_gradient(const workspace& ws)
    {
        input_tensor dx(detail::batch_shape<In, T>(ws.batch));
        if constexpr (In::rank == 3)
            detail::to_channels_first(ws.grad_input.data(), ws.batch, In::c, In::h * In::w, dx.data());
        else
            std::copy(ws.grad_input.begin(), ws.grad_input.end(), dx.data());
        return dx;
    }

    /// Checks the gradient, back-propagates it and, when asked, leaves dL/dx channels-last in ws.grad_input.
    template <class E>
    [[gnu::noinline]] void run_backward(const E& grad_out, workspace& ws, bool want_input_gradient,
                                        const local_cost_sink* fold_local_costs = nullptr)
    {
        stage_output_gradient(grad_out, ws, "backward");
        const std::size_t n = ws.batch;
        ws.grad_input.resize(want_input_gradient ? n * In::size : 0);
        if constexpr (layer_count == 0) {
            if (want_input_gradient)  // the network is the identity
                std::copy(ws.grad.begin(), ws.grad.end(), ws.grad_input.begin());
        } else {
            engine::template backward<T>(options_, params_.data(), grads_.data(), buffers_.data(), ws.input.data(),
                                         ws.grad.data(), want_input_gradient ? ws.grad_input.data() : nullptr, ws.net,
                                         nullptr, fold_local_costs);
        }
    }

    template <class E>
    static std::string shape_text(const E& t)
    {
        std::string s = "[";
        for (std::size_t i = 0; i < t.dimension(); ++i)
            s += (i ? ", " : "") + std::to_string(t.shape()[i]);
        return s + "]";
    }

    template <class E>
    void check_input(const E& batch) const
    {
        constexpr std::size_t rank = In::rank + 1;
        const auto expected = detail::batch_shape<In, T>(batch.dimension() > 0 ? batch.shape()[0] : 0);
        const std::string where = layer_count == 0 ? std::string("nmfdsl: the network")
                                                   : "nmfdsl: layer 0 (" + first_layer_name() + ")";
        bool ok = batch.dimension() == rank;
        for (std::size_t i = 1; ok && i < rank; ++i)
            ok = batch.shape()[i] == expected[i];
        if (!ok)
            throw shape_error(where + " expects input " + symbolic_batch_shape_string<In>() + ", got " +
                              shape_text(batch));
        if (batch.shape()[0] == 0)
            throw shape_error(where + " got an empty batch (batch size 0); expected " +
                              symbolic_batch_shape_string<In>() + " with N > 0");
    }

    static std::string first_layer_name()
    {
        std::string n;
        boost::hana::for_each(engine::entries, [&](auto e) {
            using E = typename decltype(e)::type;
            if (E::index == 0)
                n = E::layer::name();
        });
        return n;
    }

    aligned_vector<T> params_, grads_, buffers_;
    options_tuple options_{};
    workspace default_ws_{};
    bool training_ = true;
};

} // namespace nmfdsl
