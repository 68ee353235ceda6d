#include <iostream>

#include <nmfdsl/nmfdsl.hpp>

namespace nd = nmfdsl;
struct Net : nd::Seq<nd::PatchConv<4, 3>, nd::Mix1x1<4>, nd::AvgPool<2>, nd::Flatten, nd::Dense<2>, nd::Softmax> {};
using In = nd::Shape<1, 8, 8>;
static_assert(nd::parameter_count_v<Net, In> == (4 * 9 + 4) + 8 + (16 + 4) + 8 + (2 * 36 + 2));

int main()
{
    nd::Model<Net, In> model{nd::seed{1}};
    xt::xtensor<float, 4> x = xt::ones<float>({2, 1, 8, 8});
    const auto p = model.forward(x);
    std::cout << model.summary();
    const bool ok = p.shape()[0] == 2 && p.shape()[1] == 2 && std::abs(p(0, 0) + p(0, 1) - 1.f) < 1e-5f;
    std::cout << (ok ? "consumer ok\n" : "consumer FAILED\n");
    return ok ? 0 : 1;
}
