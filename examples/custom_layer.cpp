// A custom layer, as in docs/custom-layers.md: ChannelScale multiplies every channel by its own learned factor,
//   y[.., c] = s_c · x[.., c],   ds_c += Σ dy[.., c] · x[.., c],   dx = s ⊙ dy.
// It is built as part of the project, and main() runs it through the layer contract (testing/contract.hpp): overwrite
// and accumulate semantics, independent caches, thread-count independence and finite-difference gradients.
#include <iostream>

#include <nmfdsl/nmfdsl.hpp>
#include <nmfdsl/testing/contract.hpp>

namespace nd = nmfdsl;

struct ChannelScale : nd::layer_base {
    static std::string name() { return "ChannelScale"; }

    // Shape rule: maps only; the output has the input's shape.
    template <class In>
    static constexpr nd::shape_issue check = In::rank == 3 ? nd::shape_issue::none : nd::shape_issue::needs_map;
    template <class In>
    using output_shape = In;

    // One trainable tensor of C factors, in the `mix` group.
    template <class In>
    static constexpr std::array<nd::param_spec, 1> param_tensors{{{"scale", nd::group::mix, In::c}}};

    template <class In, class T>
    static void init(T* params, T*, nd::rng&)
    {
        std::fill(params, params + In::c, T(1));
    }

    // Tensors are channels-last: a sample is H·W rows of C values.
    template <class In, class T>
    static void forward(const options&, const nd::forward_args<T>& a, cache<In, T>&)
    {
        for (std::size_t r = 0; r < a.batch * In::h * In::w; ++r)
            for (std::size_t c = 0; c < In::c; ++c)
                a.y[r * In::c + c] = a.params[c] * a.x[r * In::c + c];
    }

    template <class In, class T>
    static void backward(const options&, const nd::backward_args<T>& a, cache<In, T>&)
    {
        for (std::size_t r = 0; r < a.batch * In::h * In::w; ++r)
            for (std::size_t c = 0; c < In::c; ++c) {
                a.grads[c] += a.dy[r * In::c + c] * a.x[r * In::c + c];  // parameter gradients accumulate
                a.dx[r * In::c + c] = a.params[c] * a.dy[r * In::c + c]; // the input gradient is overwritten
            }
    }
};

struct Net : nd::Seq<nd::Conv<8, 3>, ChannelScale, nd::ReLU, nd::AvgPool<2>, nd::Flatten, nd::Dense<4>> {};
using In = nd::Shape<2, 9, 9>;
static_assert(nd::parameter_count_v<Net, In> == (8 * 18 + 8) + 8 + (4 * 8 * 3 * 3 + 4));

int main()
{
    std::cout << nd::summary<Net, In>();
    const auto layer = nd::testing::check_layer<ChannelScale, nd::Shape<3, 4, 5>>();  // the layer alone
    const auto net = nd::testing::check_layer<Net, In>();                            // and inside a network
    std::cout << "ChannelScale: " << layer.message() << "\nthe network: " << net.message() << '\n';
    return layer.ok() && net.ok() ? 0 : 1;
}
