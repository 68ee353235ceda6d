// A custom layer whose buffer has the name of one of its parameters (both would be saved as 0.scale.npy).
#include "tensor_layer.hpp"
namespace nd = nmfdsl;
struct Clash {
    template <class In>
    static constexpr std::array<nd::param_spec, 1> params{{{"scale", nd::group::mix, In::c}}};
    template <class In>
    static constexpr std::array<nd::param_spec, 1> buffers{{{"scale", nd::group::mix, In::c}}};
};
int main()
{
    nd::Model<nd::Seq<TensorLayer<Clash>, nd::Flatten>, nd::Shape<2, 4, 4>> model;
    return int(model.buffers().size());
}
