#pragma once
/// @file plot.hpp
/// Line charts and image grids drawn with cairo (part of nmfdsl::io; the core does not depend on it). A chart is one
/// or more panels side by side under a title; every panel has its own title, labelled axes with ticks at round
/// values, light grid lines, a legend, and lines with markers (and error bars where a series has a spread). The file
/// type follows the extension: .png or .svg. Failures to write throw io_error naming the file.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include <cairo/cairo-svg.h>
#include <cairo/cairo.h>

#include "../core/error.hpp"

namespace nmfdsl::io {

struct plot_series {
    std::string label;
    std::vector<double> x, y;
    std::vector<double> spread;  ///< ± error bar per point (empty: none)
};

struct plot_panel {
    std::string title, x_label, y_label;
    std::vector<plot_series> series;
    std::optional<double> y_min, y_max;  ///< the y axis range (default: the data's, widened to round ticks)
    bool whole_x = false;                ///< x takes whole values (epochs): ticks at whole numbers only
};

namespace detail {

/// Ticks at round values (1, 2 or 5 times a power of ten) covering [lo, hi], about `target` of them.
inline std::vector<double> round_ticks(double lo, double hi, int target = 5, double smallest_step = 0)
{
    if (!(hi > lo))
        hi = lo + 1;
    const double raw = (hi - lo) / target, power = std::pow(10.0, std::floor(std::log10(raw)));
    double step = std::max(power, smallest_step);
    for (const double m : {1.0, 2.0, 5.0, 10.0})  // the step whose tick count is closest to the target
        if (m * power >= smallest_step &&
            std::abs((hi - lo) / (m * power) - target) < std::abs((hi - lo) / step - target))
            step = m * power;
    std::vector<double> t;
    const double first = std::ceil(lo / step - 1e-9);
    for (double k = first; k * step <= hi + step * 1e-9; k += 1)
        t.push_back(k == 0 ? 0.0 : k * step);
    return t;
}

inline std::string tick_text(double v)
{
    char s[32];
    std::snprintf(s, sizeof s, "%g", v);
    return s;
}

/// The curves' colours, in order: twelve, so that a plot of every model and its variants repeats none.
inline const std::array<std::array<double, 3>, 12>& palette()
{
    static const std::array<std::array<double, 3>, 12> colours{{{0.12, 0.47, 0.71},
                                                                {0.84, 0.15, 0.16},
                                                                {0.17, 0.63, 0.17},
                                                                {1.00, 0.50, 0.05},
                                                                {0.58, 0.40, 0.74},
                                                                {0.55, 0.34, 0.29},
                                                                {0.89, 0.47, 0.76},
                                                                {0.30, 0.30, 0.30},
                                                                {0.74, 0.74, 0.13},
                                                                {0.09, 0.75, 0.81},
                                                                {0.00, 0.00, 0.50},
                                                                {0.00, 0.00, 0.00}}};
    return colours;
}

inline void text_at(cairo_t* cr, const std::string& s, double x, double y, double size, bool bold, double align_x,
                    double align_y)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, s.c_str(), &e);
    cairo_move_to(cr, x - align_x * e.width - e.x_bearing, y - align_y * e.height - e.y_bearing);
    cairo_show_text(cr, s.c_str());
}

inline double text_width(cairo_t* cr, const std::string& s, double size)
{
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, s.c_str(), &e);
    return e.x_advance;
}

inline void draw_panel(cairo_t* cr, const plot_panel& p, double x0, double y0, double w, double h)
{
    const double left = x0 + 64, right = x0 + w - 16, top = y0 + 34, bottom = y0 + h - 48;
    double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
    for (const auto& s : p.series)
        for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
            const double e = i < s.spread.size() ? s.spread[i] : 0.0;
            xlo = std::min(xlo, s.x[i]);
            xhi = std::max(xhi, s.x[i]);
            ylo = std::min(ylo, s.y[i] - e);
            yhi = std::max(yhi, s.y[i] + e);
        }
    if (!std::isfinite(xlo)) {  // no data: an empty unit frame
        xlo = ylo = 0;
        xhi = yhi = 1;
    }
    if (xhi == xlo) {
        xlo -= 0.5;
        xhi += 0.5;
    }
    if (p.y_min)
        ylo = *p.y_min;
    if (p.y_max)
        yhi = *p.y_max;
    if (yhi <= ylo)
        yhi = ylo + 1;
    const auto xt = round_ticks(xlo, xhi, 5, p.whole_x ? 1.0 : 0.0), yt = round_ticks(ylo, yhi);
    if (!p.y_min)
        ylo = std::min(ylo, yt.front());
    if (!p.y_max)  // a little room above the highest point
        yhi = std::max(yhi + 0.04 * (yhi - ylo), yt.back());
    auto X = [&](double v) { return left + (v - xlo) / (xhi - xlo) * (right - left); };
    auto Y = [&](double v) { return bottom - (v - ylo) / (yhi - ylo) * (bottom - top); };
    // title, grid, axes, ticks, labels
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, p.title, (left + right) / 2, y0 + 16, 14, true, 0.5, 0.5);
    cairo_set_line_width(cr, 1);
    for (const double v : yt) {
        if (v < ylo - 1e-12 || v > yhi + 1e-12)
            continue;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, left, Y(v));
        cairo_line_to(cr, right, Y(v));
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, left - 5, Y(v));
        cairo_line_to(cr, left, Y(v));
        cairo_stroke(cr);
        text_at(cr, tick_text(v), left - 8, Y(v), 11, false, 1.0, 0.5);
    }
    for (const double v : xt) {
        if (v < xlo - 1e-12 || v > xhi + 1e-12)
            continue;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, X(v), top);
        cairo_line_to(cr, X(v), bottom);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, X(v), bottom);
        cairo_line_to(cr, X(v), bottom + 5);
        cairo_stroke(cr);
        text_at(cr, tick_text(v), X(v), bottom + 8, 11, false, 0.5, 0.0);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, left, top, right - left, bottom - top);
    cairo_stroke(cr);
    text_at(cr, p.x_label, (left + right) / 2, y0 + h - 10, 12, false, 0.5, 1.0);
    cairo_save(cr);
    cairo_translate(cr, x0 + 14, (top + bottom) / 2);
    cairo_rotate(cr, -std::numbers::pi / 2);
    text_at(cr, p.y_label, 0, 0, 12, false, 0.5, 0.5);
    cairo_restore(cr);
    // the series, clipped to the plot area
    cairo_save(cr);
    cairo_rectangle(cr, left, top, right - left, bottom - top);
    cairo_clip(cr);
    for (std::size_t k = 0; k < p.series.size(); ++k) {
        const auto& s = p.series[k];
        const auto& c = palette()[k % palette().size()];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2);
        const std::size_t n = std::min(s.x.size(), s.y.size());
        for (std::size_t i = 0; i < n; ++i)
            (i == 0 ? cairo_move_to : cairo_line_to)(cr, X(s.x[i]), Y(s.y[i]));
        cairo_stroke(cr);
        for (std::size_t i = 0; i < n; ++i) {
            cairo_arc(cr, X(s.x[i]), Y(s.y[i]), 3.5, 0, 2 * std::numbers::pi);
            cairo_fill(cr);
            if (i < s.spread.size() && s.spread[i] > 0) {
                cairo_set_line_width(cr, 1.2);
                cairo_move_to(cr, X(s.x[i]), Y(s.y[i] - s.spread[i]));
                cairo_line_to(cr, X(s.x[i]), Y(s.y[i] + s.spread[i]));
                cairo_stroke(cr);
            }
        }
    }
    cairo_restore(cr);
    // the legend, in the upper right corner of the plot area
    if (p.series.empty())
        return;
    double widest = 0;
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    for (const auto& s : p.series)
        widest = std::max(widest, text_width(cr, s.label, 11));
    // the corner where the legend covers the fewest points (upper right on a tie)
    const double lw = widest + 40, lh = 18.0 * double(p.series.size()) + 8;
    double lx = right - lw - 8, ly = top + 8;
    std::size_t fewest = std::numeric_limits<std::size_t>::max();
    for (const auto& [cx, cy] : {std::pair{right - lw - 8, top + 8}, std::pair{left + 8, top + 8},
                                 std::pair{right - lw - 8, bottom - lh - 8}, std::pair{left + 8, bottom - lh - 8}}) {
        std::size_t covered = 0;
        for (const auto& s : p.series)
            for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
                const double px = X(s.x[i]), py = Y(s.y[i]);
                covered += px >= cx - 6 && px <= cx + lw + 6 && py >= cy - 6 && py <= cy + lh + 6;
            }
        if (covered < fewest) {
            fewest = covered;
            lx = cx;
            ly = cy;
        }
    }
    cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
    cairo_rectangle(cr, lx, ly, lw, lh);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (std::size_t k = 0; k < p.series.size(); ++k) {
        const auto& c = palette()[k % palette().size()];
        const double yy = ly + 13 + 18.0 * double(k);
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, lx + 6, yy);
        cairo_line_to(cr, lx + 28, yy);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, p.series[k].label, lx + 34, yy, 11, false, 0.0, 0.5);
    }
}

/// A surface for path: an SVG file, or an image that finish() writes as PNG.
class drawing {
public:
    drawing(const std::string& path, double width, double height) : path_(path)
    {
        svg_ = path.size() >= 4 && path.compare(path.size() - 4, 4, ".svg") == 0;
        const bool png = path.size() >= 4 && path.compare(path.size() - 4, 4, ".png") == 0;
        if (!svg_ && !png)
            throw argument_error("nmfdsl: plot '" + path + "': the file name must end in .png or .svg");
        surface_ = svg_ ? cairo_svg_surface_create(path.c_str(), width, height)
                        : cairo_image_surface_create(CAIRO_FORMAT_RGB24, int(std::ceil(width)), int(std::ceil(height)));
        if (cairo_surface_status(surface_) != CAIRO_STATUS_SUCCESS) {
            const std::string why = cairo_status_to_string(cairo_surface_status(surface_));
            cairo_surface_destroy(surface_);
            throw io_error("nmfdsl: cannot write plot '" + path + "': " + why);
        }
        cr_ = cairo_create(surface_);
        cairo_set_source_rgb(cr_, 1, 1, 1);
        cairo_paint(cr_);
    }
    ~drawing()
    {
        cairo_destroy(cr_);
        cairo_surface_destroy(surface_);
    }
    drawing(const drawing&) = delete;
    drawing& operator=(const drawing&) = delete;
    cairo_t* context() { return cr_; }
    cairo_surface_t* surface() { return surface_; }

    void finish()
    {
        cairo_surface_flush(surface_);
        cairo_status_t st = CAIRO_STATUS_SUCCESS;
        if (svg_) {
            cairo_surface_finish(surface_);
            st = cairo_surface_status(surface_);
        } else {
            st = cairo_surface_write_to_png(surface_, path_.c_str());
        }
        if (st != CAIRO_STATUS_SUCCESS)
            throw io_error("nmfdsl: cannot write plot '" + path_ + "': " + cairo_status_to_string(st));
    }

private:
    std::string path_;
    bool svg_ = false;
    cairo_surface_t* surface_ = nullptr;
    cairo_t* cr_ = nullptr;
};

} // namespace detail

/// Draws the panels side by side under `title` into path (.png or .svg).
inline void write_plot(const std::string& path, const std::string& title, const std::vector<plot_panel>& panels,
                       double panel_width = 460, double panel_height = 360)
{
    const double head = title.empty() ? 8 : 34;
    const double width = panel_width * double(std::max<std::size_t>(panels.size(), 1));
    detail::drawing d(path, width, panel_height + head);
    cairo_t* cr = d.context();
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (!title.empty())
        detail::text_at(cr, title, width / 2, 18, 16, true, 0.5, 0.5);
    for (std::size_t i = 0; i < panels.size(); ++i)
        detail::draw_panel(cr, panels[i], panel_width * double(i), head, panel_width, panel_height);
    d.finish();
}

/// Draws tiles (each h × w × channels values in [0, 1], channels 1 or 3, row-major with the channel last) in a grid
/// of `columns`, each tile scaled up to about 48 pixels, under a title and a one-line caption.
inline void write_image_grid(const std::string& path, const std::string& title, const std::string& caption,
                             const std::vector<std::vector<float>>& tiles, std::size_t h, std::size_t w,
                             std::size_t channels, std::size_t columns = 8)
{
    if (channels != 1 && channels != 3)
        throw argument_error("nmfdsl: image grid '" + path + "': tiles need 1 or 3 channels, got " +
                             std::to_string(channels));
    for (const auto& t : tiles)
        if (t.size() != h * w * channels)
            throw argument_error("nmfdsl: image grid '" + path + "': a tile has " + std::to_string(t.size()) +
                                 " values, expected " + std::to_string(h * w * channels));
    const double scale = std::max(2.0, std::floor(48.0 / double(std::max(h, w)))), gap = 6;
    const std::size_t rows = (tiles.size() + columns - 1) / std::max<std::size_t>(columns, 1);
    const double cell_w = double(w) * scale + gap, cell_h = double(h) * scale + gap, head = 52;
    double text = 0;  // the title's and caption's widths, measured on a scratch surface
    {
        cairo_surface_t* scratch = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
        cairo_t* m = cairo_create(scratch);
        cairo_select_font_face(m, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
        text = detail::text_width(m, title, 15);
        cairo_select_font_face(m, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        text = std::max(text, detail::text_width(m, caption, 11));
        cairo_destroy(m);
        cairo_surface_destroy(scratch);
    }
    const double width = std::max(double(columns) * cell_w + 2 * gap, text + 24);
    const double grid_left = (width - double(columns) * cell_w) / 2;
    detail::drawing d(path, width, head + double(rows) * cell_h + gap);
    cairo_t* cr = d.context();
    cairo_set_source_rgb(cr, 0, 0, 0);
    detail::text_at(cr, title, width / 2, 16, 15, true, 0.5, 0.5);
    detail::text_at(cr, caption, width / 2, 38, 11, false, 0.5, 0.5);
    for (std::size_t k = 0; k < tiles.size(); ++k) {
        const double ox = grid_left + gap / 2 + double(k % columns) * cell_w, oy = head + double(k / columns) * cell_h;
        for (std::size_t y = 0; y < h; ++y)
            for (std::size_t x = 0; x < w; ++x) {
                const float* v = tiles[k].data() + (y * w + x) * channels;
                const double r = std::clamp(double(v[0]), 0.0, 1.0);
                const double g = channels == 3 ? std::clamp(double(v[1]), 0.0, 1.0) : r;
                const double b = channels == 3 ? std::clamp(double(v[2]), 0.0, 1.0) : r;
                cairo_set_source_rgb(cr, r, g, b);
                cairo_rectangle(cr, ox + double(x) * scale, oy + double(y) * scale, scale, scale);
                cairo_fill(cr);
            }
    }
    d.finish();
}

} // namespace nmfdsl::io
