// A user's file at -O2 -Wall -Wextra -Werror (tests/CMakeLists.txt): the library's headers must compile without a
// warning in user code. The network instantiates the kernels at sizes a paper model does not use (patch sizes 12
// and 72, odd channel counts), where g++ 12's loop analysis once warned inside kernels/reduce.hpp; the .npy reader's
// element decoding drew -Wstringop-overflow at -O3 -march=haswell (the second run of this file).
#include <nmfdsl/io.hpp>
#include <nmfdsl/nmfdsl.hpp>
#include <nmfdsl/testing/contract.hpp>

namespace nd = nmfdsl;
struct Net : nd::Seq<nd::CNMF<8, 2>, nd::Mix1x1<8>, nd::CNMF<4, 3>, nd::MaxPool<2>, nd::Conv<5, 1>, nd::Flatten,
                     nd::Dense<3>, nd::Softmax> {};

int main(int argc, char** argv)
{
    nd::Model<Net, nd::Shape<3, 9, 9>> m;
    if (argc > 2) {
        nd::io::write_parameters_npy(m, argv[1]);
        nd::io::read_parameters_npy(m, argv[1]);
        return static_cast<int>(nd::io::read_npy<double>(argv[2]).size() + nd::io::read_npy<long>(argv[2]).size());
    }
    auto x = decltype(m)::input_tensor::from_shape({2, 3, 9, 9});
    x.fill(0.5f);
    auto y = m.forward(x);
    m.backward_parameters(y);
    const auto d = m.backward(y);
    return d(0, 0, 0, 0) > 100 ? 1 : 0;
}
