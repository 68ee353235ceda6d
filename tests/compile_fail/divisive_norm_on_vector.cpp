// Divisive normalisation of a flat vector: its 3×3 neighbourhoods need a feature map.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
using Net = nd::Seq<nd::Flatten, nd::Dense<16>, nd::DivisiveNorm>;
nd::Model<Net, nd::Shape<1, 8, 8>> model;
