// A 30×30 kernel on a 13×13 map (layer 2). Later layers are still checked but raise nothing more.
#include <nmfdsl/nmfdsl.hpp>
namespace nd = nmfdsl;
struct Net : nd::Seq<nd::Conv<8, 3>, nd::AvgPool<2>, nd::Conv<16, 30>, nd::ReLU, nd::Conv<4, 3>> {};
nd::Model<Net, nd::Shape<3, 28, 28>> model;
