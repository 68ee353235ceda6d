// A convolution after Flatten (a map layer fed a vector).
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Flatten, nd::Conv<4, 3>>;
using Out = nd::output_shape_t<Net, nd::Shape<2, 4, 4>>;
