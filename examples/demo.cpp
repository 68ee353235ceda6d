// The main job until training lands: build the paper's four networks and print each one's layer table, then run
// one forward and backward pass of CNMF+1x1 on a random Fashion-MNIST-shaped batch.
#include <iostream>

#include "paper_models.hpp"

int main()
{
    namespace nd = nmfdsl;
    std::cout << "CNN on 3x28x28 (paper: 153,258 parameters)\n" << nd::summary<paper::CNN, paper::CifarInput>() << '\n';
    std::cout << "CNMF on 3x28x28 (paper: 153,056 parameters)\n"
              << nd::summary<paper::CNMF, paper::CifarInput>() << '\n';
    std::cout << "CNN+1x1 on 3x28x28 (paper: 168,088 parameters)\n"
              << nd::summary<paper::CNN1x1, paper::CifarInput>() << '\n';
    std::cout << "CNMF+1x1 on 3x28x28 (paper: 167,886 parameters)\n"
              << nd::summary<paper::CNMF1x1, paper::CifarInput>() << '\n';
    std::cout << "On 1x28x28 input (Fashion-MNIST) the first block has 1,600 fewer weights: "
              << nd::parameter_count_v<paper::CNN, paper::MnistInput> << " / "
              << nd::parameter_count_v<paper::CNMF, paper::MnistInput> << " / "
              << nd::parameter_count_v<paper::CNN1x1, paper::MnistInput> << " / "
              << nd::parameter_count_v<paper::CNMF1x1, paper::MnistInput> << " parameters\n\n";

    nd::Model<paper::CNMF1x1, paper::MnistInput> model{nd::seed{21}};
    nd::rng g(nd::seed{1});
    xt::xtensor<float, 4> batch = xt::xtensor<float, 4>::from_shape({8, 1, 28, 28});
    for (auto& v : batch)
        v = g.uniform01<float>();
    const auto p = model.forward(batch);
    const std::size_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const auto loss = nd::loss::PaperLoss{}(p, labels);
    model.backward(loss.grad);
    float row_sum = 0;
    for (std::size_t c = 0; c < 10; ++c)
        row_sum += p(0, c);
    std::cout << "CNMF+1x1, random batch of 8: paper loss " << loss.value << ", p[0] sums to " << row_sum << '\n';
    return 0;
}
