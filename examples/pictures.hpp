#pragma once
// Pictures written by nmfdsl-train after every epoch, drawn with nmfdsl::io's cairo plots:
//  - basis.png: the first layer's learned basis vectors (CNMF: the rows of W = |V| / rowsum|V|; CNN: the conv
//    weights), one K×K tile per output channel, each scaled to its own range, 8 tiles per row, with a title;
//  - basis.npy: the same vectors unscaled, [out, K, K, C], for NumPy;
//  - curves.png: the training loss per epoch, and training and test accuracy per epoch, with titles, labelled axes,
//    ticks and legends.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <nmfdsl/io.hpp>

namespace pictures {

/// The first layer's basis vectors or kernels: one row per output channel, each K·K·C values in the layer's patch
/// order (ky, kx, c), channel fastest. For an NMF layer the rows of W = |V| / (rowsum|V| + 1e-19), the basis vectors
/// the NMF uses; for a convolution its weights.
struct first_layer_basis {
    std::vector<std::vector<float>> rows;
    std::size_t k = 0, channels = 0;
    bool nmf = false;
    std::string layer_name, layer_path;
};

/// The first layer with parameters on image input whose patch is a K×K×C square; none (rows empty) otherwise.
template <class M>
first_layer_basis find_first_layer_basis(M& model)
{
    first_layer_basis b;
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
            b = {std::vector<std::vector<float>>(out, std::vector<float>(patch)), k, C,
                 L::specs[0].grp == nmfdsl::group::nmf, layer.name(), layer.path};
            for (std::size_t o = 0; o < out; ++o) {
                double row_sum = 0;
                for (std::size_t i = 0; i < patch; ++i)
                    row_sum += std::abs(double(v[o * patch + i]));
                for (std::size_t i = 0; i < patch; ++i)
                    b.rows[o][i] = b.nmf ? float(std::abs(double(v[o * patch + i])) / (row_sum + 1e-19))
                                         : float(v[o * patch + i]);
            }
        }
    });
    return b;
}

/// The first layer's basis vectors as a tile grid, each tile scaled to its own range (NMF: black = 0).
template <class M>
void write_basis(M& model, const std::string& path)
{
    const first_layer_basis b = find_first_layer_basis(model);
    if (b.rows.empty())
        return;
    std::vector<std::vector<float>> tiles = b.rows;
    for (auto& tile : tiles) {
        const auto [lo_it, hi_it] = std::minmax_element(tile.begin(), tile.end());
        const double lo = b.nmf ? 0.0 : double(*lo_it), hi = double(*hi_it);
        const double span = hi > lo ? hi - lo : 1;
        for (float& val : tile)
            val = static_cast<float>((double(val) - lo) / span);
    }
    const std::string what = b.nmf ? "NMF basis vectors" : "convolution kernels";
    nmfdsl::io::write_image_grid(
        path, "First layer's " + what + ": " + b.layer_name + " (layer " + b.layer_path + ")",
        std::to_string(tiles.size()) + " tiles of " + std::to_string(b.k) + "x" + std::to_string(b.k) + " x " +
            std::to_string(b.channels) + (b.channels == 3 ? " channels as RGB" : " channel") +
            (b.nmf ? ", black = 0, each tile scaled to its largest weight" : ", each tile scaled to its range"),
        tiles, b.k, b.k, b.channels);
}

/// The same basis vectors, unscaled, as a NumPy array [out, K, K, C] (np.load reads it).
template <class M>
void write_basis_npy(M& model, const std::string& path)
{
    const first_layer_basis b = find_first_layer_basis(model);
    if (b.rows.empty())
        return;
    std::vector<float> values;
    for (const auto& row : b.rows)
        values.insert(values.end(), row.begin(), row.end());
    const std::vector<std::size_t> shape{b.rows.size(), b.k, b.k, b.channels};
    nmfdsl::io::write_npy<float>(path, values, shape);
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
