#pragma once
// Pictures written by nmfdsl-train after every epoch, drawn with nmfdsl::io's cairo plots:
//  - basis.png: the first layer's learned basis vectors (CNMF: the rows of W = |V| / rowsum|V|; CNN: the conv
//    weights), one K×K tile per output channel, each scaled to its own range, 8 tiles per row, with a title;
//  - curves.png: the training loss per epoch, and training and test accuracy per epoch, with titles, labelled axes,
//    ticks and legends.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <nmfdsl/io.hpp>

namespace pictures {

/// The first layer's basis vectors as a tile grid.
template <class M>
void write_basis(M& model, const std::string& path)
{
    bool done = false;
    model.for_each_layer([&](auto layer) {
        using L = decltype(layer);
        using In = typename L::in_shape;
        if constexpr (L::tensor_count() > 0 && In::rank == 3) {
            if (done)
                return;
            done = true;
            constexpr std::size_t out = L::out_shape::c;
            const auto v = layer.params(0);
            const std::size_t patch = v.size() / out, C = In::c;
            const std::size_t k = static_cast<std::size_t>(std::lround(std::sqrt(double(patch / C))));
            if (k * k * C != patch)
                return;
            const bool nmf = L::specs[0].grp == nmfdsl::group::nmf;
            std::vector<std::vector<float>> tiles(out, std::vector<float>(patch));
            for (std::size_t o = 0; o < out; ++o) {
                double lo = 1e300, hi = -1e300;
                for (std::size_t i = 0; i < patch; ++i) {
                    const double val = nmf ? std::abs(double(v[o * patch + i])) : double(v[o * patch + i]);
                    lo = std::min(lo, val);
                    hi = std::max(hi, val);
                }
                if (nmf)
                    lo = 0;
                const double span = hi > lo ? hi - lo : 1;
                for (std::size_t i = 0; i < patch; ++i) {
                    const double val = nmf ? std::abs(double(v[o * patch + i])) : double(v[o * patch + i]);
                    tiles[o][i] = static_cast<float>((val - lo) / span);
                }
            }
            const std::string what = nmf ? "NMF basis vectors" : "convolution kernels";
            nmfdsl::io::write_image_grid(
                path, "First layer's " + what + ": " + layer.name() + " (layer " + layer.path + ")",
                std::to_string(out) + " tiles of " + std::to_string(k) + "x" + std::to_string(k) + " x " +
                    std::to_string(C) + (C == 3 ? " channels as RGB" : " channel") +
                    (nmf ? ", black = 0, each tile scaled to its largest weight" : ", each tile scaled to its range"),
                tiles, k, k, C);
        }
    });
}

/// Training curves: the loss per epoch, and the training and test accuracy per epoch.
inline void write_curves(const std::vector<nmfdsl::epoch_metrics>& h, const std::string& path,
                         const std::string& title = "Training")
{
    nmfdsl::io::plot_series loss{"training loss", {}, {}, {}}, train{"training", {}, {}, {}}, test{"test", {}, {}, {}};
    for (std::size_t i = 0; i < h.size(); ++i) {
        const double epoch = double(i + 1);
        loss.x.push_back(epoch);
        loss.y.push_back(h[i].train_loss);
        train.x.push_back(epoch);
        train.y.push_back(100 * h[i].train_accuracy);
        test.x.push_back(epoch);
        test.y.push_back(100 * h[i].test_accuracy);
    }
    nmfdsl::io::plot_panel left{"Loss", "epoch", "summed training loss per epoch", {loss}, 0.0, std::nullopt, true};
    nmfdsl::io::plot_panel right{"Accuracy", "epoch", "accuracy (%)", {train, test}, 0.0, 100.0, true};
    nmfdsl::io::write_plot(path, title, {left, right});
}

} // namespace pictures
