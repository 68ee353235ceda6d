// Compile-time probe (benchmarks/compile_time.sh): one paper network, trained for a step — its forward and backward
// instantiated in float, as a user's file with one model would be.
#include "../../examples/paper_models.hpp"

int main()
{
    nmfdsl::Model<paper::CNMF1x1, paper::MnistInput> model{nmfdsl::seed{1}};
    auto x = decltype(model)::input_tensor::from_shape({2, 1, 28, 28});
    x.fill(0.5f);
    const auto p = model.forward(x);
    auto g = decltype(model)::output_tensor::from_shape(p.shape());
    g.fill(1.0f);
    const auto dx = model.backward(g);
    return dx(0, 0, 0, 0) == 12345.0f ? 1 : 0;
}
