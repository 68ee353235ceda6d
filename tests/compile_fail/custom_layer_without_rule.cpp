// A custom layer that forgot its shape rule.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
struct Scale : nd::layer_base {
    static std::string name() { return "Scale"; }
};
using Net = nd::Seq<nd::ReLU, Scale, nd::Flatten>;
using Out = nd::output_shape_t<Net, nd::Shape<2, 4, 4>>;
