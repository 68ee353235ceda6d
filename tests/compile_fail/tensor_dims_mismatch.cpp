// A custom layer whose tensor shape does not multiply to the tensor's size (C values declared as a C x 2 matrix).
#include "tensor_layer.hpp"
namespace nd = nmfdsl;
struct WrongDims {
    template <class In>
    static constexpr std::array<nd::param_spec, 1> params{{{"scale", nd::group::mix, In::c, {In::c, 2}}}};
    template <class In>
    static constexpr std::array<nd::param_spec, 0> buffers{};
};
int main()
{
    nd::Model<nd::Seq<TensorLayer<WrongDims>, nd::Flatten>, nd::Shape<2, 4, 4>> model;
    return int(model.parameters().size());
}
