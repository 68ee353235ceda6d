// A kernel too large for the map inside a Concat branch: the message names the full path 1/1/0.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::ReLU, nd::Concat<nd::Conv<4, 3>, nd::Seq<nd::Conv<2, 12>, nd::ReLU>>>;
using Out = nd::output_shape_t<Net, nd::Shape<2, 9, 9>>;
