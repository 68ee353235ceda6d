// Writes what tests/pytorch/crosscheck.py compares with an independent PyTorch implementation of CNMF+1x1:
// the parameters and BatchNorm running statistics of the paper's CNMF+1x1 network (1x28x28 input, seed 21, or a
// checkpoint of nmfdsl-train), a batch of images, a random output weighting R, the network's output on the batch
// (training mode: batch statistics, which also update the running statistics), the gradients of L = Σ output ⊙ R
// with respect to every parameter and the input, the updated running statistics and the output in evaluation mode
// (running statistics).
//
//   nmfdsl_pytorch_dump OUT_DIR [approximate|unrolled] [CHECKPOINT]
//
// OUT_DIR gets params/ (the parameters and the running statistics before the step), grads/ and running/ (the
// running statistics after it), one .npy per tensor with io::write_parameters_npy's names; manifest.txt (one line
// per parameter: file name and layer name, in the model's order), images.npy [8, 1, 28, 28], r.npy [8, 10],
// output.npy [8, 10], input_grad.npy [8, 1, 28, 28], output_eval.npy [8, 10] and mode.txt. The images are the
// first 8 Fashion-MNIST test images when the Debian package is installed, else uniform random ones.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <nmfdsl/io.hpp>

#include "../../examples/paper_models.hpp"

namespace nd = nmfdsl;

int main(int argc, char** argv)
{
    if (argc < 2 || argc > 4) {
        std::fprintf(stderr, "usage: nmfdsl_pytorch_dump OUT_DIR [approximate|unrolled] [CHECKPOINT]\n");
        return 2;
    }
    const std::string out = argv[1], mode = argc > 2 ? argv[2] : "approximate";
    if (mode != "approximate" && mode != "unrolled") {
        std::fprintf(stderr, "nmfdsl_pytorch_dump: the gradient mode is approximate or unrolled, got '%s'\n",
                     mode.c_str());
        return 2;
    }
    try {
        using Model = nd::Model<paper::CNMF1x1, paper::MnistInput>;
        Model model{nd::seed{21}};
        if (argc > 3)
            nd::io::load_model(model, argv[3]);
        if (mode == "unrolled")
            model.configure<nd::cnmf_options>([](nd::cnmf_options& o) { o.gradient(nd::nmf_gradient::unrolled); });
        constexpr std::size_t n = 8;
        xt::xtensor<float, 4> x = xt::zeros<float>({n, std::size_t(1), std::size_t(28), std::size_t(28)});
        nd::rng g(nd::seed{5});
        if (std::filesystem::exists(nd::data::fashion_mnist_directory)) {
            const auto data = nd::data::load_idx_directory(nd::data::fashion_mnist_directory);
            std::copy(data.test.images.begin(), data.test.images.begin() + n * 784, x.begin());
        } else {
            for (float& v : x)
                v = g.uniform01<float>();
        }
        xt::xtensor<float, 2> r = xt::zeros<float>({n, std::size_t(10)});
        for (float& v : r)
            v = g.uniform(-1.f, 1.f);
        std::filesystem::create_directories(out);
        nd::io::write_parameters_npy(model, out + "/params");
        model.configure<nd::BatchNorm::options>([](auto& o) { o.mode = nd::bn_mode::running_statistics; });
        const auto y = model.forward(x);
        model.zero_grad();
        const auto dx = model.backward(r);
        std::filesystem::create_directories(out + "/running");
        for (const auto& b : std::as_const(model).buffers())
            nd::io::write_npy<float>(out + "/running/" + nd::io::parameter_file_name(b.path, b.name), b.value,
                                     b.shape);
        model.set_training(false);
        nd::io::write_npy(out + "/output_eval.npy", model.forward(x));

        std::filesystem::create_directories(out + "/grads");
        std::ofstream manifest(out + "/manifest.txt");
        for (const auto& p : model.parameters()) {
            const std::string file = nd::io::parameter_file_name(p.path, p.name);
            nd::io::write_npy<float>(out + "/grads/" + file, p.grad, p.shape);
            manifest << file << ' ' << p.layer_name << '\n';
        }
        nd::io::write_npy(out + "/images.npy", x);
        nd::io::write_npy(out + "/r.npy", r);
        nd::io::write_npy(out + "/output.npy", y);
        nd::io::write_npy(out + "/input_grad.npy", dx);
        std::ofstream(out + "/mode.txt") << mode << '\n';
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
