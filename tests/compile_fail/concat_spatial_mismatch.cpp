// Concat branches ending at 7×7 and 5×5.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::ReLU, nd::Concat<nd::Conv<4, 3>, nd::Conv<4, 5>>>;
using Out = nd::output_shape_t<Net, nd::Shape<2, 9, 9>>;
