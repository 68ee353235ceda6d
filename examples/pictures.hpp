#pragma once
// Pictures written by nmfdsl-train after every epoch:
//  - basis.png: the first layer's learned basis vectors (CNMF: the rows of W = |V| / rowsum|V|; CNN: the conv
//    weights), one K×K tile per output channel, each scaled to its own range, 8 tiles per row;
//  - curves.png: left, the summed training loss per epoch (black); right, training (blue) and test (red)
//    accuracy per epoch on a 0–100 % axis with grid lines every 10 %.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <nmfdsl/io.hpp>

namespace pictures {

struct canvas {
    std::size_t w, h;
    std::vector<std::uint8_t> px;
    canvas(std::size_t width, std::size_t height) : w(width), h(height), px(width * height * 3, 255) {}
    void set(long x, long y, std::array<std::uint8_t, 3> c)
    {
        if (x < 0 || y < 0 || x >= long(w) || y >= long(h))
            return;
        for (int k = 0; k < 3; ++k)
            px[(std::size_t(y) * w + std::size_t(x)) * 3 + std::size_t(k)] = c[std::size_t(k)];
    }
    void line(double x0, double y0, double x1, double y1, std::array<std::uint8_t, 3> c, int thick = 1)
    {
        const int steps = int(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
        for (int i = 0; i <= steps; ++i) {
            const double t = double(i) / steps;
            for (int dx = 0; dx < thick; ++dx)
                for (int dy = 0; dy < thick; ++dy)
                    set(long(x0 + t * (x1 - x0)) + dx, long(y0 + t * (y1 - y0)) + dy, c);
        }
    }
};

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
            const std::size_t scale = std::max<std::size_t>(2, 48 / k), cell = k * scale + 4, cols = 8;
            const std::size_t rows = (out + cols - 1) / cols;
            std::vector<std::uint8_t> px(cols * cell * rows * cell * 3, 255);
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
                for (std::size_t y = 0; y < k * scale; ++y)
                    for (std::size_t x = 0; x < k * scale; ++x)
                        for (std::size_t ch = 0; ch < 3; ++ch) {
                            const std::size_t c = C == 3 ? ch : 0;
                            double val = double(v[o * patch + ((y / scale) * k + x / scale) * C + c]);
                            if (nmf)
                                val = std::abs(val);
                            const std::size_t gx = (o % cols) * cell + 2 + x, gy = (o / cols) * cell + 2 + y;
                            px[(gy * cols * cell + gx) * 3 + ch] =
                                static_cast<std::uint8_t>(std::lround(255 * (val - lo) / span));
                        }
            }
            nmfdsl::io::write_png(path, cols * cell, rows * cell, 3, px);
        }
    });
}

/// Training curves.
inline void write_curves(const std::vector<nmfdsl::epoch_metrics>& h, const std::string& path)
{
    canvas c(800, 360);
    const double left0 = 40, right0 = 440, top = 20, bottom = 330, width = 340;
    const std::array<std::uint8_t, 3> black{0, 0, 0}, grey{210, 210, 210}, blue{30, 80, 220}, red{220, 40, 40};
    for (int g = 0; g <= 10; ++g) {
        const double y = bottom - (bottom - top) * g / 10.0;
        c.line(right0, y, right0 + width, y, grey);
    }
    for (double x0 : {left0, right0}) {
        c.line(x0, top, x0, bottom, black);
        c.line(x0, bottom, x0 + width, bottom, black);
    }
    if (h.empty()) {
        nmfdsl::io::write_png(path, c.w, c.h, 3, c.px);
        return;
    }
    double max_loss = 0;
    for (const auto& m : h)
        max_loss = std::max(max_loss, m.train_loss);
    const double n = double(std::max<std::size_t>(h.size() - 1, 1));
    auto xpos = [&](double x0, std::size_t i) { return x0 + width * double(i) / n; };
    for (std::size_t i = 0; i < h.size(); ++i) {
        const double yl = bottom - (bottom - top) * h[i].train_loss / (max_loss > 0 ? max_loss : 1);
        const double ya = bottom - (bottom - top) * h[i].train_accuracy, yt = bottom - (bottom - top) * h[i].test_accuracy;
        if (i > 0) {
            c.line(xpos(left0, i - 1), bottom - (bottom - top) * h[i - 1].train_loss / (max_loss > 0 ? max_loss : 1),
                   xpos(left0, i), yl, black, 2);
            c.line(xpos(right0, i - 1), bottom - (bottom - top) * h[i - 1].train_accuracy, xpos(right0, i), ya, blue, 2);
            c.line(xpos(right0, i - 1), bottom - (bottom - top) * h[i - 1].test_accuracy, xpos(right0, i), yt, red, 2);
        }
        for (int d = -2; d <= 2; ++d) {
            c.line(xpos(left0, i) - 2, yl + d, xpos(left0, i) + 2, yl + d, black);
            c.line(xpos(right0, i) - 2, ya + d, xpos(right0, i) + 2, ya + d, blue);
            c.line(xpos(right0, i) - 2, yt + d, xpos(right0, i) + 2, yt + d, red);
        }
    }
    nmfdsl::io::write_png(path, c.w, c.h, 3, c.px);
}

} // namespace pictures
