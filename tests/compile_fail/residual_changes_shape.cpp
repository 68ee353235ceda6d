// A Residual body that turns 4 channels into 6.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Residual<nd::Seq<nd::Pointwise<6>, nd::ReLU>>, nd::Flatten>;
constexpr auto n = nd::parameter_count_v<Net, nd::Shape<4, 3, 3>>;
