// A custom layer whose tensor shape does not multiply to the tensor's size (C values declared as a C x 2 matrix).
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
struct Scale : nd::layer_base {
    static std::string name() { return "Scale"; }
    template <class In>
    using output_shape = In;
    template <class In>
    static constexpr std::array<nd::param_spec, 1> param_tensors{{{"scale", nd::group::mix, In::c, {In::c, 2}}}};
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
    return int(model.parameters().size());
}
