// Pooling the 1×1 map a whole-map convolution produces.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Conv<4, nd::whole_map>, nd::AvgPool<2>, nd::Flatten>;
using Out = nd::output_shape_t<Net, nd::Shape<3, 8, 8>>;
