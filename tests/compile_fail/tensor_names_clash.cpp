// A custom layer whose buffer has the name of one of its parameters (both would be saved as 0.scale.npy).
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
struct Scale : nd::layer_base {
    static std::string name() { return "Scale"; }
    template <class In>
    using output_shape = In;
    template <class In>
    static constexpr std::array<nd::param_spec, 1> param_tensors{{{"scale", nd::group::mix, In::c}}};
    template <class In>
    static constexpr std::array<nd::param_spec, 1> buffer_tensors{{{"scale", nd::group::mix, In::c}}};
    template <class In, class T>
    static void forward(const options&, const nd::forward_args<T>&, cache<In, T>&)
    {
    }
    template <class In, class T>
    static void backward(const options&, const nd::backward_args<T>&, cache<In, T>&)
    {
    }
};
int main()
{
    nd::Model<nd::Seq<Scale, nd::Flatten>, nd::Shape<2, 4, 4>> model;
    return int(model.buffers().size());
}
