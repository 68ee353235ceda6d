// Compile-time tests: compiling this file is the test.
#include <nmfdsl/nmfdsl.hpp>

#include "../../examples/hah_models.hpp"  // its static_asserts: the VGG16 parameter counts
#include "../../examples/paper_models.hpp"

namespace nd = nmfdsl;
using std::is_same_v;

// Shapes of single layers.
static_assert(is_same_v<nd::output_shape_t<nd::Conv<8, 3>, nd::Shape<2, 10, 9>>, nd::Shape<8, 8, 7>>);
static_assert(is_same_v<nd::output_shape_t<nd::Conv<8, 3, 2>, nd::Shape<2, 10, 9>>, nd::Shape<8, 4, 4>>);
static_assert(is_same_v<nd::output_shape_t<nd::Conv<8, nd::whole_map>, nd::Shape<2, 5, 3>>, nd::Shape<8, 1, 1>>);
static_assert(is_same_v<nd::output_shape_t<nd::AvgPool<2>, nd::Shape<4, 5, 5>>, nd::Shape<4, 2, 2>>);
static_assert(is_same_v<nd::output_shape_t<nd::Flatten, nd::Shape<4, 2, 3>>, nd::Shape<24>>);
static_assert(is_same_v<nd::output_shape_t<nd::Dense<5>, nd::Shape<24>>, nd::Shape<5>>);
static_assert(is_same_v<nd::output_shape_t<nd::Mix1x1<7>, nd::Shape<4, 2, 3>>, nd::Shape<7, 2, 3>>);

// Seqs nest and flatten; named blocks count like their bodies.
struct Block : nd::Seq<nd::Conv<4, 3>, nd::ReLU> {};
static_assert(is_same_v<nd::output_shape_t<nd::Seq<Block, nd::Seq<Block, nd::Seq<>>>, nd::Shape<1, 9, 9>>,
                        nd::Shape<4, 5, 5>>);
static_assert(nd::parameter_count_v<nd::Seq<Block, Block>, nd::Shape<1, 9, 9>> == (4 * 9 + 4) + (4 * 36 + 4));

// Parameter counts: conv weights + bias, BatchNorm 2C, Mix1x1 = C·Out + Out (+ 2·Out for BN on maps > 1×1).
static_assert(nd::parameter_count_v<nd::BatchNorm, nd::Shape<6, 2, 2>> == 12);
static_assert(nd::parameter_count_v<nd::Mix1x1<5>, nd::Shape<3, 2, 2>> == 3 * 5 + 5 + 10);
static_assert(nd::parameter_count_v<nd::Mix1x1<5>, nd::Shape<3, 1, 1>> == 3 * 5 + 5);
static_assert(nd::parameter_count_v<nd::PatchConv<4, 2>, nd::Shape<3, 2, 2>> == 4 * 12 + 4);  // 1×1 out: no BN

// Graphs.
using Two = nd::Concat<nd::Conv<3, 3>, nd::Seq<nd::Conv<5, 3>, nd::ReLU>>;
static_assert(is_same_v<nd::output_shape_t<Two, nd::Shape<2, 6, 6>>, nd::Shape<8, 4, 4>>);
static_assert(nd::parameter_count_v<Two, nd::Shape<2, 6, 6>> == (3 * 18 + 3) + (5 * 18 + 5));
static_assert(is_same_v<nd::output_shape_t<nd::Residual<nd::Pointwise<4>>, nd::Shape<4, 3, 3>>, nd::Shape<4, 3, 3>>);

// is_valid_v never fails to compile: it answers false for each kind of mistake.
struct NoRule : nd::layer_base {
    static std::string name() { return "NoRule"; }
};
static_assert(nd::is_valid_v<paper::CNN1x1, paper::CifarInput>);
static_assert(!nd::is_valid_v<nd::Conv<4, 30>, nd::Shape<3, 28, 28>>);
static_assert(!nd::is_valid_v<nd::Seq<nd::AvgPool<2>, nd::AvgPool<2>>, nd::Shape<1, 3, 3>>);
static_assert(!nd::is_valid_v<nd::Dense<3>, nd::Shape<1, 3, 3>>);
static_assert(!nd::is_valid_v<nd::Conv<4, 3>, nd::Shape<9>>);
static_assert(!nd::is_valid_v<nd::Concat<nd::Conv<3, 3>, nd::Conv<3, 5>>, nd::Shape<1, 9, 9>>);
static_assert(!nd::is_valid_v<nd::Residual<nd::Pointwise<5>>, nd::Shape<4, 3, 3>>);
static_assert(!nd::is_valid_v<NoRule, nd::Shape<4, 3, 3>>);
static_assert(!nd::is_valid_v<nd::ReLU, nd::Shape<4, 3>>);

// The tutorial's example network (docs/tutorial.md §2–3).
struct TutorialNet : nd::Seq<nd::Conv<8, 3>, nd::BatchNorm, nd::ReLU, nd::MaxPool<2>, nd::Flatten, nd::Dense<10>,
                             nd::Softmax> {};
static_assert(is_same_v<nd::output_shape_t<TutorialNet, nd::Shape<1, 28, 28>>, nd::Shape<10>>);
static_assert(nd::parameter_count_v<TutorialNet, nd::Shape<1, 28, 28>> == 80 + 16 + 10 * 1352 + 10);
static_assert(nd::is_valid_v<TutorialNet, nd::Shape<1, 28, 28>>);
static_assert(!nd::is_valid_v<TutorialNet, nd::Shape<1, 2, 2>>);

// A convolution without bias has the weight tensor only.
static_assert(nd::parameter_count_v<nd::Conv<4, 3, 1, nd::patch_norm::none, nd::conv_bias::no_bias>,
                                    nd::Shape<2, 5, 4>> == 4 * 3 * 3 * 2);
static_assert(nd::parameter_count_v<nd::Conv<4, 3>, nd::Shape<2, 5, 4>> == 4 * 3 * 3 * 2 + 4);

// param_spec dims: all zeros mean one dimension; given dims must multiply to the size (layer_node asserts it)
static_assert(nmfdsl::dims_match_sizes(std::array<nmfdsl::param_spec, 2>{
    {{"w", nmfdsl::group::other, 6, {3, 2}}, {"b", nmfdsl::group::other, 5}}}));
static_assert(!nmfdsl::dims_match_sizes(std::array<nmfdsl::param_spec, 1>{{{"w", nmfdsl::group::other, 6, {4, 2}}}}));
static_assert(
    !nmfdsl::dims_match_sizes(std::array<nmfdsl::param_spec, 1>{{{"w", nmfdsl::group::other, 6, {3, 0, 2}}}}));
