// A two-dimensional input shape: images are Shape<C, H, W>.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Conv<4, 3>, nd::ReLU>;
nd::Model<Net, nd::Shape<28, 28>> model;
