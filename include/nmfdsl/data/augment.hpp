#pragma once
/// @file augment.hpp
/// Training-time augmentation as in the reference (docs/method.md §4): a random crop to the model's input size (of
/// the image surrounded by `pad` rows and columns of zeros, 0 by default), a horizontal flip with probability 1/2, and
/// colour jitter (brightness factor U[1−b, 1+b], contrast U[1−c, 1+c], saturation U[1−s, 1+s], hue shift U[−h, h],
/// applied in random order, each clamping to [0, 1]). The reference draws one set of choices per mini-batch
/// (per_batch = true, its behaviour); per_batch = false draws them per image. Evaluation uses the centre crop and
/// nothing else. Contrast, saturation and hue use the luma 0.299 R + 0.587 G + 0.114 B; saturation and hue need three
/// channels and are skipped otherwise.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>

#include "../core/rng.hpp"

namespace nmfdsl::data {

struct augmentation {
    bool crop = true;       ///< random crop when the image is larger than the input (else the centre crop)
    bool flip = false;
    double brightness = 0, contrast = 0, saturation = 0, hue = 0;
    bool per_batch = true;
    std::size_t pad = 0;    ///< zeros around the image before the random crop (training only)

    bool jitter() const { return brightness > 0 || contrast > 0 || saturation > 0 || hue > 0; }

    /// The reference's CIFAR-10 setting.
    static augmentation paper_cifar10() { return {true, true, 0.5, 0.1, 0.1, 0.15, true}; }
    static augmentation none() { return {false, false, 0, 0, 0, 0, true}; }
    /// The sparse-activation method's CIFAR-10 setting (docs/method.md §6): pad by `pad` zeros, random crop back to
    /// the input size and flip, drawn per image; no colour jitter.
    static augmentation crop_flip(std::size_t pad) { return {true, true, 0, 0, 0, 0, false, pad}; }
};

/// One draw of the random choices.
struct augment_draw {
    std::size_t dy = 0, dx = 0;  ///< the crop's corner in the padded image
    std::size_t pad = 0;         ///< the zeros around the image
    bool flip = false;
    double brightness = 1, contrast = 1, saturation = 1, hue = 0;
    std::array<int, 4> order{0, 1, 2, 3};
};

/// slack_h, slack_w: how much larger the (padded) image is than the crop.
inline augment_draw draw_augmentation(const augmentation& a, std::size_t slack_h, std::size_t slack_w, rng& g)
{
    augment_draw d;
    d.pad = a.pad;
    if (a.crop) {
        d.dy = slack_h ? static_cast<std::size_t>(g.below(slack_h + 1)) : 0;
        d.dx = slack_w ? static_cast<std::size_t>(g.below(slack_w + 1)) : 0;
    } else {
        d.dy = slack_h / 2;
        d.dx = slack_w / 2;
    }
    d.flip = a.flip && g.below(2) == 1;
    if (a.brightness > 0)
        d.brightness = g.uniform(1.0 - a.brightness, 1.0 + a.brightness);
    if (a.contrast > 0)
        d.contrast = g.uniform(1.0 - a.contrast, 1.0 + a.contrast);
    if (a.saturation > 0)
        d.saturation = g.uniform(1.0 - a.saturation, 1.0 + a.saturation);
    if (a.hue > 0)
        d.hue = g.uniform(-a.hue, a.hue);
    for (std::size_t i = 3; i > 0; --i)
        std::swap(d.order[i], d.order[static_cast<std::size_t>(g.below(i + 1))]);
    return d;
}

namespace detail {
inline void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v)
{
    const float mx = std::max({r, g, b}), mn = std::min({r, g, b}), d = mx - mn;
    v = mx;
    s = mx > 0 ? d / mx : 0;
    if (d <= 0) {
        h = 0;
        return;
    }
    if (mx == r)
        h = std::fmod((g - b) / d + 6.f, 6.f) / 6.f;
    else if (mx == g)
        h = ((b - r) / d + 2.f) / 6.f;
    else
        h = ((r - g) / d + 4.f) / 6.f;
}
inline void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b)
{
    const float hh = h * 6.f;
    const int i = static_cast<int>(std::floor(hh)) % 6;
    const float f = hh - std::floor(hh), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q;
    }
}
} // namespace detail

/// Copies one image (C × H × W, channels-first) into out (C × OH × OW) applying the draw: out[c, y, x] is pixel
/// (y + dy − pad, x' + dx − pad) of the image, 0 outside it, with x' = x or, flipped, OW − 1 − x.
/// (Not inlined: the per-image work is large, and inlining with a constant channel count only makes g++ warn about
/// the three-channel branches it cannot rule out.)
[[gnu::noinline]] inline void apply_augmentation(const float* img, std::size_t C, std::size_t H, std::size_t W,
                                                 const augment_draw& d, std::size_t OH, std::size_t OW, float* out)
{
    for (std::size_t c = 0; c < C; ++c)
        for (std::size_t y = 0; y < OH; ++y)
            for (std::size_t x = 0; x < OW; ++x) {
                const std::size_t sx = (d.flip ? OW - 1 - x : x) + d.dx, sy = y + d.dy;  // in the padded image
                const bool inside = sy >= d.pad && sy < H + d.pad && sx >= d.pad && sx < W + d.pad;
                out[(c * OH + y) * OW + x] = inside ? img[(c * H + sy - d.pad) * W + sx - d.pad] : 0.f;
            }
    const std::size_t P = OH * OW;
    auto clamp = [](float v) { return std::min(1.f, std::max(0.f, v)); };
    for (int op : d.order) {
        if (op == 0 && d.brightness != 1) {
            for (std::size_t i = 0; i < C * P; ++i)
                out[i] = clamp(out[i] * float(d.brightness));
        } else if (op == 1 && d.contrast != 1) {
            double mean = 0;
            for (std::size_t p = 0; p < P; ++p)
                mean += C == 3 ? 0.299 * out[p] + 0.587 * out[P + p] + 0.114 * out[2 * P + p] : out[p];
            mean /= double(P);
            for (std::size_t i = 0; i < C * P; ++i)
                out[i] = clamp(float(d.contrast * out[i] + (1 - d.contrast) * mean));
        } else if (op == 2 && d.saturation != 1 && C == 3) {
            for (std::size_t p = 0; p < P; ++p) {
                const float gray = 0.299f * out[p] + 0.587f * out[P + p] + 0.114f * out[2 * P + p];
                for (std::size_t c = 0; c < 3; ++c)
                    out[c * P + p] = clamp(float(d.saturation * out[c * P + p] + (1 - d.saturation) * gray));
            }
        } else if (op == 3 && d.hue != 0 && C == 3) {
            for (std::size_t p = 0; p < P; ++p) {
                float h, s, v;
                detail::rgb_to_hsv(out[p], out[P + p], out[2 * P + p], h, s, v);
                h = std::fmod(h + float(d.hue) + 1.f, 1.f);
                detail::hsv_to_rgb(h, s, v, out[p], out[P + p], out[2 * P + p]);
            }
        }
    }
}

} // namespace nmfdsl::data
