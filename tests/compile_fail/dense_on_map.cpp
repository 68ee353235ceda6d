// Dense straight after a feature map, without Flatten.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Conv<4, 3>, nd::Dense<10>, nd::Softmax>;
nd::Model<Net, nd::Shape<1, 8, 8>> model;
