// A fractional threshold on a flat vector: it keeps a fraction of each channel's map, which a vector does not have.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Dense<16>, nd::FractionalThreshold>;
nd::Model<Net, nd::Shape<32>> model;
