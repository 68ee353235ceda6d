// The CNMF module: golden values (docs/method.md §5), the fused kernel against its naive twin, the three
// gradient modes against finite differences, degenerate input, options and checked-build errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <numeric>
#include <cstdint>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nmfdsl/nmfdsl.hpp>
#include <nmfdsl/testing/gradcheck.hpp>
#include <nmfdsl/testing/naive.hpp>

#include "../../examples/paper_models.hpp"

namespace nd = nmfdsl;
namespace k = nmfdsl::kernels;

namespace {

// ---- Appendix A: I = 6, H = 4 ----
constexpr std::size_t gI = 6, gH = 4;
const double x_hat_golden[gI] = {0.0841584158, 0.2326732673, 0.0346534653, 0.1831683168, 0.3316831683, 0.1336633663};
const double h_T1[gH] = {0.2055011122, 0.2931071611, 0.2286790161, 0.2727127106};
const double h_T5[gH] = {0.0908351053, 0.4195442056, 0.1565326129, 0.3330880763};
const double h_T20[gH] = {0.0067338216, 0.4968519041, 0.0658940661, 0.4305202082};
const double h_T20_eps[gH] = {0.1788128072, 0.3227976029, 0.2124278606, 0.2859617293};
const double dx_hat[gI] = {-0.1470911051, -0.1334358911, -0.0071501628, -0.0652507583, -0.1413504258, -0.0500274041};
const double dx_raw[gI] = {-0.0131319820, -0.0083999772, 0.0353624039, 0.0152285342, -0.0111426377, 0.0205039540};
const double dW[gH][gI] = {{0.0014073675, 0.0026002637, 0.0010244721, 0.0030361323, 0.0047603517, 0.0023619637},
                           {-0.0122886880, -0.0294644269, -0.0474606861, -0.0826458879, -0.0466751486, -0.0746703933},
                           {0.0199324923, 0.0371860365, 0.0165527690, 0.0459785661, 0.0676917252, 0.0363195289},
                           {0.0094772490, 0.0128244090, -0.0197998757, -0.0184674459, 0.0285146087, -0.0215593182}};
const double dV[gH][gI] = {{-0.0003305851, 0.0001500691, -0.0004848652, 0.0003256938, 0.0010204343, 0.0000540508},
                           {0.0087365937, 0.0033843804, -0.0022235190, -0.0131877462, -0.0019787340, -0.0107024646},
                           {-0.0056988716, 0.0001769484, -0.0068498610, 0.0031713083, 0.0105658826, -0.0001181471},
                           {0.0021962630, 0.0031098798, -0.0057950118, -0.0054313213, 0.0073925646, -0.0062752566}};
const double upstream[gH] = {0.3, -0.2, 0.5, -0.1};

double golden_x_raw(std::size_t i) { return 0.10 + double((3 * i + 1) % 7) / 7.0; }
double golden_v(std::size_t h, std::size_t i) { return 0.05 + double((5 * h + 3 * i + 2) % 11) / 11.0; }

/// |a − e| ≤ rel·|e| + 5e-11: the published values carry 10 decimals, so half a unit of the last one is allowed.
template <class T>
bool close(T actual, double expected, double rel)
{
    return std::abs(double(actual) - expected) <= rel * std::abs(expected) + 5e-11;
}

/// For the entries of a gradient: |a − e| ≤ rel·max(|e|, scale) + 5e-11, with scale the gradient's largest entry. An
/// entry far smaller than the rest comes from cancelling sums of the larger terms, so its rounding error in float is
/// relative to those (dL/dV[2][5] is 1e-4 where its row reaches 1e-2).
template <class T>
bool close_scaled(T actual, double expected, double rel, double scale)
{
    return std::abs(double(actual) - expected) <= rel * std::max(std::abs(expected), scale) + 5e-11;
}

template <std::size_t R, std::size_t C>
double largest(const double (&m)[R][C])
{
    double out = 0;
    for (const auto& row : m)
        for (double v : row)
            out = std::max(out, std::abs(v));
    return out;
}

template <class T>
struct golden_setup {
    std::vector<T> W = std::vector<T>(gH * gI);
    typename k::nmf_weights<T> wts;
    nd::aligned_vector<T> xhat;
    golden_setup()
    {
        for (std::size_t h = 0; h < gH; ++h) {
            double s = 0;
            for (std::size_t i = 0; i < gI; ++i)
                s += golden_v(h, i);
            for (std::size_t i = 0; i < gI; ++i)
                W[h * gI + i] = T(golden_v(h, i) / (s + 1e-19));
        }
        wts.assign(W.data(), gH, gI);
        double s = 0;
        for (std::size_t i = 0; i < gI; ++i)
            s += golden_x_raw(i);
        xhat.assign(k::nmf_layout<T>::pad_rows(1) * wts.ip, T(0));
        for (std::size_t i = 0; i < gI; ++i)
            xhat[i] = T(golden_x_raw(i) / (s + 1e-19));
    }
    std::vector<T> forward(std::size_t iterations, std::optional<T> eps = std::nullopt)
    {
        std::vector<T> h(gH);
        k::nmf_forward(wts, xhat.data(), 1, iterations, eps, h.data());
        return h;
    }
};

template <class T>
constexpr double golden_tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-9;

} // namespace

TEMPLATE_TEST_CASE("Appendix A: forward h for T = 1, 5, 20 and the damped update", "[cnmf][golden]", float, double)
{
    using T = TestType;
    golden_setup<T> g;
    for (std::size_t i = 0; i < gI; ++i)
        CHECK(close(g.xhat[i], x_hat_golden[i], golden_tolerance<T>));
    CHECK(close(g.W[0], 0.0934065934, golden_tolerance<T>));
    const std::pair<std::size_t, const double*> cases[] = {{1, h_T1}, {5, h_T5}, {20, h_T20}};
    for (const auto& [iterations, expected] : cases) {
        const auto h = g.forward(iterations);
        for (std::size_t j = 0; j < gH; ++j) {
            INFO("T = " << iterations << ", h[" << j << "] = " << h[j] << ", expected " << expected[j]);
            CHECK(close(h[j], expected[j], golden_tolerance<T>));
        }
    }
    const auto he = g.forward(20, T(0.1));
    for (std::size_t j = 0; j < gH; ++j)
        CHECK(close(he[j], h_T20_eps[j], golden_tolerance<T>));
}

TEMPLATE_TEST_CASE("Appendix A: approximate backward dL/dx̂ and dL/dW", "[cnmf][golden]", float, double)
{
    using T = TestType;
    golden_setup<T> g;
    const auto h = g.forward(20);
    const std::vector<T> G(upstream, upstream + gH);
    std::vector<T> gx(k::nmf_layout<T>::pad_rows(1) * g.wts.ip), gw(gH * g.wts.ip);  // gx: whole tiles
    k::nmf_backward_scratch<T> s;
    k::nmf_backward_approx(g.wts, g.xhat.data(), h.data(), G.data(), 1, gx.data(), gw.data(), s);
    for (std::size_t i = 0; i < gI; ++i) {
        INFO("dL/dx̂[" << i << "] = " << gx[i]);
        CHECK(close(gx[i], dx_hat[i], golden_tolerance<T>));
    }
    for (std::size_t r = 0; r < gH; ++r)
        for (std::size_t i = 0; i < gI; ++i) {
            INFO("dL/dW[" << r << "][" << i << "] = " << gw[r * g.wts.ip + i]);
            CHECK(close_scaled(gw[r * g.wts.ip + i], dW[r][i], golden_tolerance<T>, largest(dW)));
        }
}

TEMPLATE_TEST_CASE("Appendix A through the layer: dL/dx_raw and dL/dV", "[cnmf][golden]", float, double)
{
    using T = TestType;
    using In = nd::Shape<gI, 1, 1>;  // a whole-map kernel on a 1×1 map: one patch of 6 channels
    nd::Model<nd::CNMFCore<gH, nd::whole_map>, In, T> model;
    auto V = model.template layer<0>().params("V");
    for (std::size_t h = 0; h < gH; ++h)
        for (std::size_t i = 0; i < gI; ++i)
            V[h * gI + i] = T(golden_v(h, i));
    xt::xtensor<T, 4> x = xt::xtensor<T, 4>::from_shape({1, gI, 1, 1});
    for (std::size_t i = 0; i < gI; ++i)
        x(0, i, 0, 0) = T(golden_x_raw(i));
    const auto h = model.forward(x);
    for (std::size_t j = 0; j < gH; ++j)
        CHECK(close(h(0, j, 0, 0), h_T20[j], golden_tolerance<T>));
    xt::xtensor<T, 4> G = xt::xtensor<T, 4>::from_shape({1, gH, 1, 1});
    for (std::size_t j = 0; j < gH; ++j)
        G(0, j, 0, 0) = T(upstream[j]);
    const auto dx = model.backward(G);
    for (std::size_t i = 0; i < gI; ++i) {
        INFO("dL/dx_raw[" << i << "] = " << dx(0, i, 0, 0));
        CHECK(close(dx(0, i, 0, 0), dx_raw[i], golden_tolerance<T>));
    }
    const auto gV = model.template layer<0>().grads("V");
    for (std::size_t r = 0; r < gH; ++r)
        for (std::size_t i = 0; i < gI; ++i) {
            INFO("dL/dV[" << r << "][" << i << "] = " << gV[r * gI + i]);
            CHECK(close_scaled(gV[r * gI + i], dV[r][i], golden_tolerance<T>, largest(dV)));
        }
}

TEMPLATE_TEST_CASE("the fused NMF kernel matches its naive twin on odd sizes", "[cnmf][kernels]", float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{11});
    // rows in lanes (I or H not whole vectors) and the row layout (64 × 16, 32 × 48, 128 × 128: whole vectors for 2
    // to 16 lanes); 50 and 61 rows span two tasks, the second partly filled; 8, 29 and 61 rows end in a short tile.
    // I or H of 127 or 128 pad the weights' row stride by a cache line in both layouts (unaliased_stride).
    const std::size_t shapes[][3] = {{7, 3, 1},    {13, 10, 13}, {75, 17, 25},   {33, 33, 12}, {5, 97, 7},
                                     {130, 2, 3},  {64, 16, 29}, {32, 48, 61},   {25, 32, 50}, {128, 128, 8},
                                     {127, 64, 29}, {20, 127, 9}};
    CHECK(!k::nmf_rows_in_lanes<T>(64, 16));
    CHECK(!k::nmf_rows_in_lanes<T>(32, 48));
    CHECK(k::nmf_rows_in_lanes<T>(25, 32));
    for (const auto& sh : shapes) {
        const std::size_t I = sh[0], H = sh[1], rows = sh[2];
        std::vector<T> W(H * I), x(rows * I);
        nd::testing::random_simplex_rows(g, W.data(), H, I, I);
        k::nmf_weights<T> wts;
        wts.assign(W.data(), H, I);
        // rows of a multiple of 512 bytes get one more cache line; 127 and 128 pad to 128 on every instruction set
        auto stride = [](std::size_t padded) {
            return (padded * sizeof(T)) % 512 == 0 ? padded + 64 / sizeof(T) : padded;
        };
        CHECK(wts.ldw == stride(wts.ip));
        CHECK(wts.ldwt == stride(wts.hp));
        if (I == 127 || I == 128)
            CHECK(wts.ldw > wts.ip);
        if (H == 127 || H == 128)
            CHECK(wts.ldwt > wts.hp);
        nd::testing::random_simplex_rows(g, x.data(), rows, I, I);
        nd::aligned_vector<T> xp(k::nmf_layout<T>::pad_rows(rows) * wts.ip, T(0));
        for (std::size_t n = 0; n < rows; ++n)
            std::copy(x.begin() + n * I, x.begin() + (n + 1) * I, xp.begin() + n * wts.ip);
        for (std::optional<T> eps : {std::optional<T>{}, std::optional<T>(T(0.3))}) {
            std::vector<T> fast(rows * H), slow(rows * H);
            k::nmf_forward(wts, xp.data(), rows, 9, eps, fast.data());
            // the same with x̂ rows handed over tile by tile (as the layers' approximate mode does): identical
            std::vector<T> streamed(rows * H);
            std::atomic<std::size_t> sourced{0};  // tasks may run on several threads
            auto source = [&](std::size_t first, std::size_t count, T* dst) {
                sourced += count;
                for (std::size_t r = 0; r < count; ++r)
                    std::copy(x.data() + (first + r) * I, x.data() + (first + r + 1) * I, dst + r * wts.ip);
            };
            k::nmf_forward_streamed(wts, rows, 9, eps, streamed.data(), source);
            CHECK(sourced == rows);
            CHECK(streamed == fast);
            // with out_rows, row n goes to row out_rows[n] (here 3n + 1 of a buffer of 3·rows + 2 rows), and no
            // other row is written
            std::vector<std::size_t> out_rows(rows);
            for (std::size_t n = 0; n < rows; ++n)
                out_rows[n] = 3 * n + 1;
            const T sentinel = std::numeric_limits<T>::quiet_NaN();
            std::vector<T> spread((3 * rows + 2) * H, sentinel);
            k::nmf_forward_streamed(wts, rows, 9, eps, spread.data(), source, out_rows.data());
            bool mapped = true, others_untouched = true;
            for (std::size_t n = 0; n < 3 * rows + 2; ++n)
                for (std::size_t c = 0; c < H; ++c) {
                    const T v = spread[n * H + c];
                    if (n % 3 == 1 && n / 3 < rows)
                        mapped = mapped && v == fast[n / 3 * H + c];
                    else
                        others_untouched = others_untouched && std::isnan(v);
                }
            CHECK(mapped);
            CHECK(others_untouched);
            // a one-row problem runs the row on its own (no group of padding rows): the same bits as in a group
            nd::aligned_vector<T> first_row(k::nmf_layout<T>::pad_rows(1) * wts.ip, T(0));
            std::copy(xp.begin(), xp.begin() + wts.ip, first_row.begin());
            std::vector<T> alone(H);
            k::nmf_forward(wts, first_row.data(), 1, 9, eps, alone.data());
            CHECK(std::equal(alone.begin(), alone.end(), fast.begin()));
            nd::testing::naive_nmf_forward(x.data(), W.data(), rows, I, H, 9, eps ? &*eps : nullptr, slow.data());
            double worst = 0;
            for (std::size_t i = 0; i < rows * H; ++i)
                worst = std::max(worst, std::abs(double(fast[i]) - double(slow[i])));
            INFO("I=" << I << " H=" << H << " rows=" << rows << " eps=" << (eps ? double(*eps) : -1.0));
            CHECK(worst < (std::is_same_v<T, float> ? 1e-5 : 1e-13));
        }
    }
}

TEMPLATE_TEST_CASE("rows solved on their supports: blocks give the bits of every column, lone rows within rounding",
                   "[cnmf][kernels]", float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{12});
    // the row layout (I and H whole vectors for 2 to 16 lanes): the fused update (H ≤ 64 with AVX-512) and the
    // separate one (96 × 96); a lone row by columns of Wᵀ for H of 1 to 8 vectors, and with the restricted weights
    // beyond (H = 144); 29, 61 and 13 rows end in a short tile, 1 row is a block of its own, 24 rows are full blocks
    // only
    const std::size_t shapes[][3] = {{64, 16, 29}, {800, 64, 61}, {96, 96, 29}, {32, 48, 1}, {64, 32, 24},
                                     {64, 144, 13}};
    for (const auto& sh : shapes) {
        const std::size_t I = sh[0], H = sh[1], rows = sh[2];
        REQUIRE(!k::nmf_rows_in_lanes<T>(I, H));
        std::vector<T> W(H * I);
        nd::testing::random_simplex_rows(g, W.data(), H, I, I);
        k::nmf_weights<T> wts;
        wts.assign(W.data(), H, I);
        // x̂ with a share of non-zero values from none (blocks with an empty support) to all, rows 2 and 3 all zero
        for (double density : {0.0, 0.03, 0.3, 0.7, 1.0}) {
            nd::aligned_vector<T> xp(k::nmf_layout<T>::pad_rows(rows) * wts.ip, T(0));
            for (std::size_t n = 0; n < rows; ++n) {
                T sum = 0;
                for (std::size_t i = 0; i < I; ++i)
                    if (n != 2 && n != 3 && g.uniform01<double>() < density)
                        sum += xp[n * wts.ip + i] = T(g.uniform(0.01, 1.0));
                for (std::size_t i = 0; i < I; ++i)
                    xp[n * wts.ip + i] /= sum > 0 ? sum : T(1);
            }
            // the vector counts of a block's unions agree with the lists of their columns
            std::vector<std::uint32_t> support;
            for (std::size_t m = 1; m <= std::min<std::size_t>(rows, 6); ++m) {
                k::detail::union_support(xp.data(), m, I, wts.ip, support);
                CHECK(k::detail::union_support_size(xp.data(), m, wts.ip) == support.size());
                CHECK(std::is_sorted(support.begin(), support.end()));
            }
            if (rows >= 6) {
                const auto counts = k::detail::count_supports<T, 6>(xp.data(), wts.ip);
                k::detail::union_support(xp.data(), 6, I, wts.ip, support);
                CHECK(counts.all == support.size());
                for (std::size_t r = 0; r < 6; ++r) {
                    k::detail::union_support(xp.data() + r * wts.ip, 1, I, wts.ip, support);
                    CHECK(counts.row[r] == support.size());
                }
                for (std::size_t p = 0; p < 3; ++p) {
                    k::detail::union_support(xp.data() + 2 * p * wts.ip, 2, I, wts.ip, support);
                    CHECK(counts.pair[p] == support.size());
                }
            }
            auto tile_rows = [&](std::size_t t0, std::size_t) {
                return static_cast<const T*>(xp.data() + t0 * wts.ip);
            };
            const std::size_t tiles = k::nmf_layout<T>::pad_rows(rows) / k::nmf_layout<T>::tile_rows;
            // the unpadded x̂ for the naive twin
            std::vector<T> x(rows * I);
            for (std::size_t n = 0; n < rows; ++n)
                std::copy_n(xp.data() + n * wts.ip, I, x.data() + n * I);
            const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-13;
            auto worst_difference = [](const std::vector<T>& a, const std::vector<T>& b) {
                double worst = 0;
                for (std::size_t i = 0; i < a.size(); ++i)
                    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
                return worst;
            };
            for (std::optional<T> eps : {std::optional<T>{}, std::optional<T>(T(0.3))}) {
                INFO("I = " << I << ", H = " << H << ", rows = " << rows << ", density " << density
                            << (eps ? ", damped" : ""));
                // support_fraction 0: every column; 1: every block on its support (even a dense one)
                std::vector<T> every_column(rows * H), on_support(rows * H), by_default(rows * H), naive(rows * H);
                nd::testing::naive_nmf_forward(x.data(), W.data(), rows, I, H, 9, eps ? &*eps : nullptr,
                                               naive.data());
                // whether a part ran on its support, and of how many rows the last was (this thread's scratch)
                auto& scratch = k::detail::thread_scratch<T>();
                using split = k::detail::block_split;
                auto solve = [&](std::vector<T>& out, double fraction, split how, double alone) {
                    scratch.support_rows = 0;
                    k::detail::nmf_forward_tiles<T>(wts, tile_rows, rows, 0, tiles, 9, eps, out.data(), nullptr,
                                                    fraction, how, alone);
                    return scratch.support_rows;
                };
                CHECK(solve(every_column, 0.0, split::automatic, 0.0) == 0);
                CHECK(worst_difference(every_column, naive) < tolerance);
                CHECK(solve(on_support, 1.0, split::automatic, 0.0) > 0);
                CHECK(on_support == every_column);
                // full blocks solved whole, in pairs of rows or row by row, each part on its own support or on
                // every column: the same bits. With full blocks only, the last part shows the split.
                for (split how : {split::whole, split::pairs, split::rows})
                    for (double fraction : {0.0, 1.0}) {
                        INFO("split " << int(how) << ", support fraction " << fraction);
                        std::vector<T> parts(rows * H);
                        const std::size_t last_part = solve(parts, fraction, how, 0.0);
                        CHECK(parts == every_column);
                        CHECK((last_part > 0) == (fraction > 0));
                        const std::size_t rows_per_part = how == split::rows ? 1 : how == split::pairs ? 2 : 6;
                        if (fraction > 0 && rows % 12 == 0)
                            CHECK(last_part == rows_per_part);
                    }
                // every row alone, by columns of Wᵀ (r summed in another order): within rounding; an h wider than
                // the kernel is compiled for goes in blocks instead
                const bool by_columns = wts.hp <= k::detail::nmf_by_columns_max_vectors * k::nmf_layout<T>::lanes;
                std::vector<T> alone(rows * H);
                CHECK(solve(alone, 0.0, split::automatic, 1.0) == (by_columns ? 1 : 0));
                CHECK(worst_difference(alone, every_column) < tolerance);
                // by default, rows narrow enough alone and the others in blocks
                k::nmf_forward(wts, xp.data(), rows, 9, eps, by_default.data());
                CHECK(worst_difference(by_default, every_column) < tolerance);
                // whether a row is solved alone depends on the row only, and every block gives a row the same bits:
                // the rows in reverse order (other neighbours, other blocks), each row's result bit for bit
                nd::aligned_vector<T> reversed(xp.size(), T(0));
                for (std::size_t n = 0; n < rows; ++n)
                    std::copy_n(xp.data() + n * wts.ip, wts.ip, reversed.data() + (rows - 1 - n) * wts.ip);
                std::vector<T> by_default_reversed(rows * H);
                k::nmf_forward(wts, reversed.data(), rows, 9, eps, by_default_reversed.data());
                bool same_bits = true;
                for (std::size_t n = 0; n < rows; ++n) {
                    const auto row = by_default.begin() + std::ptrdiff_t(n * H);
                    const auto row_reversed = by_default_reversed.begin() + std::ptrdiff_t((rows - 1 - n) * H);
                    same_bits = same_bits && std::equal(row, row + std::ptrdiff_t(H), row_reversed);
                }
                CHECK(same_bits);
                // all-zero rows stay all zero (undamped) or keep h⁰ up to the normalisation's rounding (damped:
                // h ⊙ (1 + ε·0))
                for (std::size_t c = 0; c < H && rows > 3; ++c) {
                    if (eps)
                        CHECK(on_support[2 * H + c] == Approx(1.0 / double(H)).epsilon(1e-6));
                    else
                        CHECK(on_support[2 * H + c] == T(0));
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("a full block of sparse rows splits where their supports overlap little", "[cnmf][kernels]",
                   float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{13});
    const std::size_t I = 480, H = 32, rows = 12;
    std::vector<T> W(H * I);
    nd::testing::random_simplex_rows(g, W.data(), H, I, I);
    k::nmf_weights<T> wts;
    wts.assign(W.data(), H, I);
    auto& scratch = k::detail::thread_scratch<T>();
    // row n non-zero on `width` columns from column first(n), zero elsewhere (the grouping keeps these rows' order)
    auto solve = [&](std::size_t width, auto first) {
        nd::aligned_vector<T> xp(rows * wts.ip, T(0));
        for (std::size_t n = 0; n < rows; ++n)
            for (std::size_t i = first(n); i < first(n) + width; ++i)
                xp[n * wts.ip + i] = T(g.uniform(0.01, 1.0)) / T(width);
        auto tile_rows = [&](std::size_t t0, std::size_t) { return static_cast<const T*>(xp.data() + t0 * wts.ip); };
        std::vector<T> h(rows * H), every_column(rows * H);
        k::detail::nmf_forward_tiles<T>(wts, tile_rows, rows, 0, 1, 5, std::nullopt, every_column.data(), nullptr,
                                        0.0, k::detail::block_split::automatic, 0.0);
        scratch.support_rows = 0;
        k::detail::nmf_forward_tiles<T>(wts, tile_rows, rows, 0, 1, 5, std::nullopt, h.data(), nullptr,
                                        k::nmf_tiling<T>::support_fraction, k::detail::block_split::automatic, 0.0);
        CHECK(h == every_column);
        // the rows of the last part solved on a support (the second block's last part)
        return scratch.support_rows;
    };
    // the same 32 columns in every row: one union of 32 columns, the whole block
    CHECK(solve(32, [](std::size_t) { return std::size_t(0); }) == 6);
    // disjoint 32 columns per row: a union of 192, pairs of 64, rows of 32 — row by row
    CHECK(solve(32, [](std::size_t n) { return 32 * n; }) == 1);
    // the rows of a pair share their columns, the pairs do not: unions of 32 per pair against 96 — in pairs
    CHECK(solve(32, [](std::size_t n) { return 32 * (n / 2); }) == 2);
}

TEST_CASE("rows grouped by support: each group adds the row with the fewest new columns", "[cnmf][kernels]")
{
    // 13 rows of 2 words: rows n and n + 6 (n < 6) share their columns, the six pairs are disjoint, row 12 is empty
    const std::size_t n = 13, words = 2;
    std::vector<std::uint64_t> bits(n * words, 0);
    for (std::size_t r = 0; r < 12; ++r)
        bits[r * words + (r % 6) / 3] = std::uint64_t(0xFF) << (8 * ((r % 6) % 3));
    std::vector<std::size_t> order(n);
    std::vector<std::uint64_t> scratch;
    k::detail::group_by_support(bits.data(), words, n, 6, order.data(), scratch);
    // a row adding no column is taken first (the first of them: row 0's twin 6, then the empty row 12); otherwise
    // the first row left (all add 8 columns), then its twin; a full group closes with row 2, whose twin 8 is left
    // over and comes last
    CHECK(order == std::vector<std::size_t>{0, 6, 12, 1, 7, 2, 3, 9, 4, 10, 5, 11, 8});
    // the blocks' unions: 3 pairs' columns each (24 + 24) against 6 pairs' in the rows' own order (48 + 48)
    CHECK(k::detail::grouped_union_columns(bits.data(), words, n, 6, order.data()) == 48);
    std::vector<std::size_t> in_order(n);
    std::iota(in_order.begin(), in_order.end(), std::size_t(0));
    CHECK(k::detail::grouped_union_columns(bits.data(), words, n, 6, in_order.data()) == 96);
}

TEMPLATE_TEST_CASE("transpose: by 8 x 8 blocks and element by element", "[kernels]", float, double)
{
    using T = TestType;
    // 16 × 24 and 8 × 8 take the register blocks with AVX (float); 5 × 7 and 16 × 12 the element loop
    const std::size_t sizes[][2] = {{16, 24}, {8, 8}, {5, 7}, {16, 12}};
    for (const auto& sz : sizes) {
        const std::size_t rows = sz[0], cols = sz[1], ld_in = cols + 3, ld_out = rows + 5;
        std::vector<T> in(rows * ld_in), out(cols * ld_out, T(-1));
        for (std::size_t i = 0; i < in.size(); ++i)
            in[i] = T(i);
        k::detail::transpose(in.data(), ld_in, rows, cols, out.data(), ld_out);
        bool same = true, gaps_untouched = true;
        for (std::size_t c = 0; c < cols; ++c)
            for (std::size_t r = 0; r < ld_out; ++r)
                if (r < rows)
                    same = same && out[c * ld_out + r] == in[r * ld_in + c];
                else
                    gaps_untouched = gaps_untouched && out[c * ld_out + r] == T(-1);
        INFO(rows << " x " << cols);
        CHECK(same);
        CHECK(gaps_untouched);
    }
}

TEMPLATE_TEST_CASE("sums across lanes: lane i holds the sum of vector i", "[kernels]", float, double)
{
    using T = TestType;
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    // distinct sums, exact in T: vector i holds i + 1 in lane 0, and 2^j·(i + 1) in lane j
    alignas(64) T values[L][L];
    batch v[L];
    for (std::size_t i = 0; i < L; ++i) {
        for (std::size_t j = 0; j < L; ++j)
            values[i][j] = T(i + 1) * T(std::size_t(1) << j);
        v[i] = batch::load_aligned(values[i]);
    }
    alignas(64) T sums[L];
    k::detail::sums_across_lanes(v).store_aligned(sums);
    for (std::size_t i = 0; i < L; ++i) {
        INFO("lane " << i << " of " << L);
        CHECK(sums[i] == T(i + 1) * T((std::size_t(1) << L) - 1));
    }
}

TEMPLATE_TEST_CASE("keep_in_register leaves every lane as it was", "[kernels]", float, double)
{
    using T = TestType;
    using batch = xsimd::batch<T>;
    constexpr std::size_t L = batch::size;
    alignas(64) T in[L], out[L];
    for (std::size_t j = 0; j < L; ++j)
        in[j] = T(0.5) + T(j) * T(-1.25);
    batch v = batch::load_aligned(in);
    k::keep_in_register(v);
    (v * batch(T(2))).store_aligned(out);
    for (std::size_t j = 0; j < L; ++j) {
        INFO("lane " << j << " of " << L);
        CHECK(out[j] == 2 * in[j]);
    }
}

namespace {
/// Random NMF weights (rows of W on the simplex) and `rows` random x̂ rows on the simplex, padded as the kernels
/// take them (row stride ip, zero padding columns and rows).
template <class T>
struct random_nmf_problem {
    k::nmf_weights<T> wts;
    nd::aligned_vector<T> xp;
    random_nmf_problem(nd::rng& g, std::size_t I, std::size_t H, std::size_t rows)
    {
        std::vector<T> W(H * I);
        nd::testing::random_simplex_rows(g, W.data(), H, I, I);
        wts.assign(W.data(), H, I);
        xp.assign(k::nmf_layout<T>::pad_rows(rows) * wts.ip, T(0));
        nd::testing::random_simplex_rows(g, xp.data(), rows, I, wts.ip);
    }
};
} // namespace

TEMPLATE_TEST_CASE("the two layouts of the NMF kernel agree, each on the other's shapes", "[cnmf][kernels]", float,
                   double)
{
    // every task of the public entry points runs one layout (nmf_rows_in_lanes); here both run on the same rows, on
    // a shape each would not be chosen for, and agree to rounding (only the normalising sum is added in another order)
    using T = TestType;
    nd::rng g(nd::seed{12});
    const std::size_t shapes[][2] = {{64, 16}, {25, 32}, {11, 3}};
    for (const auto& sh : shapes) {
        const std::size_t I = sh[0], H = sh[1], rows = 2 * k::nmf_tiles_per_task * k::nmf_layout<T>::tile_rows - 5;
        const random_nmf_problem<T> p(g, I, H, rows);
        const auto& wts = p.wts;
        const auto& xp = p.xp;
        const std::size_t tiles = k::nmf_layout<T>::pad_rows(rows) / k::nmf_layout<T>::tile_rows;
        auto tile_rows = [&](std::size_t t0, std::size_t) { return static_cast<const T*>(xp.data() + t0 * wts.ip); };
        for (std::optional<T> eps : {std::optional<T>{}, std::optional<T>(T(0.3))}) {
            std::vector<T> by_rows(rows * H, T(-1)), in_lanes(rows * H, T(-1));
            for (std::size_t first = 0; first < tiles; first += k::nmf_tiles_per_task) {
                const std::size_t last = std::min(tiles, first + k::nmf_tiles_per_task);
                k::detail::nmf_forward_tiles<T>(wts, tile_rows, rows, first, last, 7, eps, by_rows.data());
                k::detail::nmf_forward_lanes<T>(wts, tile_rows, rows, first, last, 7, eps, in_lanes.data());
            }
            double worst = 0, total = 0;
            for (std::size_t i = 0; i < rows * H; ++i) {
                worst = std::max(worst, std::abs(double(by_rows[i]) - double(in_lanes[i])));
                total += in_lanes[i];
            }
            INFO("I=" << I << " H=" << H << " eps=" << (eps ? double(*eps) : -1.0));
            CHECK(worst < (std::is_same_v<T, float> ? 1e-6 : 1e-14));
            CHECK(std::abs(total - double(rows)) < 1e-3);  // every row written, each summing to one
        }
    }
}

TEST_CASE("a row's NMF result does not depend on its batch, its lane or the thread count", "[cnmf][kernels][threads]")
{
    // rows in lanes (I = 25) and the row layout (I = 64, H = 16): 101 rows (three tasks) with 1 and 3 threads, and
    // the rows from 13 on as a batch of their own, which puts every row in another lane, group and task
    using T = float;
    const std::size_t before = nd::threads();
    nd::rng g(nd::seed{13});
    for (const auto& [I, H] : {std::pair<std::size_t, std::size_t>{25, 32}, {64, 16}}) {
        const std::size_t rows = 101, skip = 13;
        const random_nmf_problem<T> p(g, I, H, rows);
        const auto& wts = p.wts;
        const auto& xp = p.xp;
        nd::aligned_vector<T> tail(k::nmf_layout<T>::pad_rows(rows - skip) * wts.ip, T(0));
        std::copy(xp.begin() + skip * wts.ip, xp.begin() + rows * wts.ip, tail.begin());
        std::vector<T> one(rows * H), three(rows * H), alone((rows - skip) * H);
        nd::set_threads(1);
        k::nmf_forward(wts, xp.data(), rows, 20, std::nullopt, one.data());
        k::nmf_forward(wts, tail.data(), rows - skip, 20, std::nullopt, alone.data());
        nd::set_threads(3);
        k::nmf_forward(wts, xp.data(), rows, 20, std::nullopt, three.data());
        INFO("I=" << I << " H=" << H << " rows in lanes: " << k::nmf_rows_in_lanes<T>(I, H));
        CHECK(one == three);
        CHECK(std::equal(alone.begin(), alone.end(), one.begin() + skip * H));
    }
    nd::set_threads(before);
}

namespace {
/// A small random problem in double: x̂ on the simplex, W row-normalised.
struct problem {
    std::size_t I, H;
    std::vector<double> W, x;
    std::vector<double> G;
    problem(std::size_t i, std::size_t h, std::uint64_t s) : I(i), H(h), W(h * i), x(i), G(h)
    {
        nd::rng g(nd::seed{s});
        for (std::size_t r = 0; r < H; ++r) {
            double sum = 0;
            for (std::size_t c = 0; c < I; ++c)
                sum += W[r * I + c] = 0.1 + g.uniform01<double>();
            for (std::size_t c = 0; c < I; ++c)
                W[r * I + c] /= sum;
        }
        double sum = 0;
        for (auto& v : x)
            sum += v = 0.1 + g.uniform01<double>();
        for (auto& v : x)
            v /= sum;
        for (auto& v : G)
            v = g.uniform(-1.0, 1.0);
    }
    k::nmf_weights<double> weights() const
    {
        k::nmf_weights<double> w;
        w.assign(W.data(), H, I);
        return w;
    }
    nd::aligned_vector<double> padded_x(const k::nmf_weights<double>& w) const
    {
        nd::aligned_vector<double> p(k::nmf_layout<double>::pad_rows(1) * w.ip, 0.0);
        std::copy(x.begin(), x.end(), p.begin());
        return p;
    }
    /// G · h_T for the current x, W.
    double objective(std::size_t T, std::optional<double> eps = std::nullopt) const
    {
        const auto w = weights();
        const auto xp = padded_x(w);
        std::vector<double> h(H);
        k::nmf_forward(w, xp.data(), 1, T, eps, h.data());
        double f = 0;
        for (std::size_t k = 0; k < H; ++k)
            f += G[k] * h[k];
        return f;
    }
};

/// Central differences of f over every entry of x and W; returns the worst relative error against (gx, gw).
template <class F>
double fd_error(problem& p, F&& f, const std::vector<double>& gx, const std::vector<double>& gw, std::size_t ip,
                double step = 1e-6)
{
    double worst = 0;
    auto compare = [&](double analytic, double& v) {
        const double keep = v;
        v = keep + step;
        const double fp = f();
        v = keep - step;
        const double fm = f();
        v = keep;
        worst = std::max(worst, nd::testing::detail::relative_error(analytic, (fp - fm) / (2 * step)));
    };
    for (std::size_t i = 0; i < p.I; ++i)
        compare(gx[i], p.x[i]);
    for (std::size_t r = 0; r < p.H; ++r)
        for (std::size_t i = 0; i < p.I; ++i)
            compare(gw[r * ip + i], p.W[r * p.I + i]);
    return worst;
}
} // namespace

TEST_CASE("unrolled gradient matches finite differences of the T-step forward", "[cnmf][gradients]")
{
    for (std::uint64_t seed : {1, 2, 3})
        for (std::optional<double> eps : {std::optional<double>{}, std::optional<double>(0.25)}) {
            problem p(7, 3, seed);
            const auto w = p.weights();
            const auto xp = p.padded_x(w);
            std::vector<double> gx(k::nmf_layout<double>::pad_rows(1) * w.ip), gw(p.H * w.ip);
            k::nmf_backward_scratch<double> scratch;
            k::nmf_backward_unrolled(w, xp.data(), 1, 5, eps, p.G.data(), gx.data(), gw.data(), scratch);
            const double err = fd_error(p, [&] { return p.objective(5, eps); }, gx, gw, w.ip);
            INFO("seed " << seed << ", error " << err);
            CHECK(err < 1e-7);
        }
}

TEMPLATE_TEST_CASE("the fused unrolled backward matches its naive twin on odd sizes, with or without dW, on any "
                   "thread count", "[cnmf][kernels][gradients]", float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{12});
    // (I, H, rows): one and two rows alone, a part tile, H past one register block, several tasks of tiles
    // I = 128 and H = 128 (float), 64 (double) pad the weights' row strides by a cache line (unaliased_stride)
    const std::size_t shapes[][3] = {{7, 3, 1},   {13, 10, 2},  {75, 17, 25},  {33, 33, 12},
                                     {5, 70, 7},  {20, 8, 203}, {128, 64, 13}, {9, 128, 4}};
    const std::size_t before = nd::threads();
    for (const auto& sh : shapes)
        for (std::optional<T> eps : {std::optional<T>{}, std::optional<T>(T(0.3))}) {
            const std::size_t I = sh[0], H = sh[1], rows = sh[2], iterations = 6;
            std::vector<T> W(H * I), x(rows * I), G(rows * H);
            for (std::size_t r = 0; r < H; ++r) {
                T s = 0;
                for (std::size_t i = 0; i < I; ++i)
                    s += W[r * I + i] = T(0.05) + g.uniform01<T>();
                for (std::size_t i = 0; i < I; ++i)
                    W[r * I + i] /= s;
            }
            for (std::size_t n = 0; n < rows; ++n) {
                T s = 0;
                for (std::size_t i = 0; i < I; ++i)  // the third row is an all-zero patch (degenerate sum)
                    s += x[n * I + i] = n == 2 ? T(0) : g.uniform01<T>();
                for (std::size_t i = 0; i < I; ++i)
                    x[n * I + i] = s > 0 ? x[n * I + i] / s : T(0);
            }
            for (auto& v : G)
                v = g.uniform(T(-1), T(1));
            k::nmf_weights<T> wts;
            wts.assign(W.data(), H, I);
            nd::aligned_vector<T> xp(k::nmf_layout<T>::pad_rows(rows) * wts.ip, T(0));
            for (std::size_t n = 0; n < rows; ++n)
                std::copy(x.begin() + n * I, x.begin() + (n + 1) * I, xp.begin() + n * wts.ip);
            std::vector<T> gx_ref(rows * I), gw_ref(H * I);
            nd::testing::naive_nmf_backward_unrolled(x.data(), W.data(), rows, I, H, iterations, eps ? &*eps : nullptr,
                                                     G.data(), gx_ref.data(), gw_ref.data());
            auto run = [&](std::size_t threads, bool with_gw) {
                nd::set_threads(threads);
                std::vector<T> gx(k::nmf_layout<T>::pad_rows(rows) * wts.ip), gw(with_gw ? H * wts.ip : 0);
                k::nmf_backward_scratch<T> scratch;
                k::nmf_backward_unrolled(wts, xp.data(), rows, iterations, eps, G.data(), gx.data(),
                                         with_gw ? gw.data() : nullptr, scratch);
                gx.resize(rows * wts.ip);
                return std::pair{gx, gw};
            };
            const auto [gx, gw] = run(1, true);
            const T tol = std::is_same_v<T, float> ? T(2e-4) : T(1e-11);
            auto scale = [](const std::vector<T>& v) {
                T m = 0;
                for (T e : v)
                    m = std::max(m, std::abs(e));
                return std::max(m, T(1));
            };
            INFO("I=" << I << " H=" << H << " rows=" << rows << " eps=" << (eps ? double(*eps) : -1.0));
            double worst_x = 0, worst_w = 0;
            for (std::size_t n = 0; n < rows; ++n)
                for (std::size_t i = 0; i < wts.ip; ++i) {
                    REQUIRE(std::isfinite(gx[n * wts.ip + i]));
                    const T want = i < I ? gx_ref[n * I + i] : T(0);
                    worst_x = std::max(worst_x, double(std::abs(gx[n * wts.ip + i] - want)));
                }
            for (std::size_t r = 0; r < H; ++r)
                for (std::size_t i = 0; i < wts.ip; ++i) {
                    const T want = i < I ? gw_ref[r * I + i] : T(0);
                    worst_w = std::max(worst_w, double(std::abs(gw[r * wts.ip + i] - want)));
                }
            CHECK(worst_x <= tol * scale(gx_ref));
            CHECK(worst_w <= tol * scale(gw_ref));
            // dx does not depend on whether dW is wanted, nor either on the thread count: the same bits
            CHECK(run(1, false).first == gx);
            CHECK(run(2, true) == std::pair{gx, gw});
        }
    nd::set_threads(before);
}

TEST_CASE("approximate gradient matches finite differences of one update with h held fixed", "[cnmf][gradients]")
{
    // docs/method.md §2: eq. (1), (2) are the exact derivatives of G · (h ⊙ u(h; x̂, W)), h fixed at the final state.
    for (std::uint64_t seed : {4, 5, 6}) {
        problem p(9, 4, seed);
        const auto w = p.weights();
        const auto xp = p.padded_x(w);
        std::vector<double> h(p.H), gx(k::nmf_layout<double>::pad_rows(1) * w.ip), gw(p.H * w.ip);
        k::nmf_forward(w, xp.data(), 1, 20, std::nullopt, h.data());
        k::nmf_backward_scratch<double> bs;
        k::nmf_backward_approx(w, xp.data(), h.data(), p.G.data(), 1, gx.data(), gw.data(), bs);
        auto one_step = [&] {
            double f = 0;
            for (std::size_t kk = 0; kk < p.H; ++kk) {
                double u = 0;
                for (std::size_t i = 0; i < p.I; ++i) {
                    double r = 1e-20;
                    for (std::size_t m = 0; m < p.H; ++m)
                        r += h[m] * p.W[m * p.I + i];
                    u += p.W[kk * p.I + i] * p.x[i] / r;
                }
                f += p.G[kk] * h[kk] * u;
            }
            return f;
        };
        const double err = fd_error(p, one_step, gx, gw, w.ip);
        INFO("seed " << seed << ", error " << err);
        CHECK(err < 1e-7);
    }
}

TEST_CASE("implicit gradient matches finite differences of a converged forward", "[cnmf][gradients]")
{
    // x̂ is an exact mixture of W's rows, so the iteration converges to an interior fixed point.
    // I = 64: in double the weights' row stride is padded by a cache line (unaliased_stride)
    const std::pair<std::size_t, std::uint64_t> cases[] = {{6, 7}, {6, 8}, {64, 9}};
    for (const auto& [inputs, seed] : cases) {
        problem p(inputs, 3, seed);
        const double mix[3] = {0.5, 0.3, 0.2};
        for (std::size_t i = 0; i < p.I; ++i) {
            p.x[i] = 0;
            for (std::size_t r = 0; r < 3; ++r)
                p.x[i] += mix[r] * p.W[r * p.I + i];
        }
        const std::size_t T = 4000;
        const auto w = p.weights();
        const auto xp = p.padded_x(w);
        std::vector<double> h(p.H), gx(w.ip), gw(p.H * w.ip);
        k::nmf_forward(w, xp.data(), 1, T, std::nullopt, h.data());
        CHECK(h[0] == Approx(0.5).epsilon(1e-6));
        k::nmf_backward_scratch<double> bs;
        k::nmf_backward_implicit(w, xp.data(), h.data(), p.G.data(), 1, gx.data(), gw.data(), bs);
        const double err = fd_error(p, [&] { return p.objective(T); }, gx, gw, w.ip);
        INFO("seed " << seed << ", error " << err);
        CHECK(err < 1e-5);
    }
}

TEST_CASE("the whole CNMF chain (V, patch L1, col2im) passes a layer gradient check in unrolled mode",
          "[cnmf][gradients]")
{
    nd::testing::gradcheck_options o;
    o.input_min = 0.05;
    auto unrolled = [](auto& m) {
        nd::configure_nmf(m, [](nd::cnmf_options& opt) { opt.iterations(4).gradient(nd::nmf_gradient::unrolled); });
    };
    const auto r = nd::testing::check_gradients<nd::CNMFCore<3, 3>, nd::Shape<2, 5, 6>>(o, unrolled);
    INFO(r.worst << " " << r.input_error << " " << r.param_error);
    CHECK(r.input_error < 1e-6);
    CHECK(r.param_error < 1e-6);
    const auto r2 = nd::testing::check_gradients<nd::CNMF<4, 2, 2>, nd::Shape<3, 6, 6>>(o, unrolled);
    INFO(r2.worst << " " << r2.input_error << " " << r2.param_error);
    CHECK(r2.input_error < 1e-6);
    CHECK(r2.param_error < 1e-6);
}

TEST_CASE("all-zero patches and all-zero input give finite outputs and gradients in every mode", "[cnmf]")
{
    for (auto mode : {nd::nmf_gradient::approximate, nd::nmf_gradient::unrolled, nd::nmf_gradient::implicit}) {
        INFO("mode " << nd::gradient_name(mode));
        nd::Model<nd::CNMFCore<4, 2>, nd::Shape<2, 4, 4>> core;
        nd::configure_nmf(core, [&](auto& o) { o.gradient(mode); });
        xt::xtensor<float, 4> x = xt::zeros<float>({2, 2, 4, 4});
        x(1, 0, 3, 3) = 1.f;  // sample 1 has one non-zero value, so most of its patches are all-zero
        const auto y = core.forward(x);
        const auto dx = core.backward(xt::ones_like(y));
        CHECK(std::all_of(y.begin(), y.end(), [](float v) { return std::isfinite(v); }));
        CHECK(std::all_of(dx.begin(), dx.end(), [](float v) { return std::isfinite(v); }));
        const auto gv = core.flat_gradients();
        CHECK(std::all_of(gv.begin(), gv.end(), [](float v) { return std::isfinite(v); }));
        CHECK(y(0, 0, 0, 0) == 0.f);  // an all-zero patch explains nothing

        nd::Model<paper::CNMF1x1, paper::MnistInput> net{nd::seed{3}};
        nd::configure_nmf(net, [&](auto& o) { o.gradient(mode); });
        xt::xtensor<float, 4> zeros = xt::zeros<float>({3, 1, 28, 28});
        const auto p = net.forward(zeros);
        const auto d = net.backward(xt::ones_like(p));
        CHECK(std::all_of(p.begin(), p.end(), [](float v) { return std::isfinite(v); }));
        CHECK(std::all_of(d.begin(), d.end(), [](float v) { return std::isfinite(v); }));
        const auto g = net.flat_gradients();
        CHECK(std::all_of(g.begin(), g.end(), [](float v) { return std::isfinite(v); }));
    }
}

namespace {
/// Runs one layer on images that are zero outside a random rectangle (one image all zero, one with no zero value),
/// in approximate mode (which skips the all-zero patches) and in unrolled mode (which solves every row), with 1 and
/// 3 threads, and checks that outputs and patch sums agree bit for bit.
template <class L, class In>
void check_zero_patches_skipped()
{
    constexpr std::size_t batch = 7;
    nd::rng g(nd::seed{12});
    xt::xtensor<float, 4> x = xt::zeros<float>({batch, In::c, In::h, In::w});
    for (std::size_t n = 1; n < batch; ++n) {  // image 0 stays all zero
        const bool full = n == batch - 1;
        const std::size_t y0 = full ? 0 : g.below(In::h / 2), x0 = full ? 0 : g.below(In::w / 2);
        const std::size_t y1 = full ? In::h : y0 + 1 + g.below(In::h - y0 - 1);
        const std::size_t x1 = full ? In::w : x0 + 1 + g.below(In::w - x0 - 1);
        for (std::size_t c = 0; c < In::c; ++c)
            for (std::size_t i = y0; i < y1; ++i)
                for (std::size_t j = x0; j < x1; ++j)
                    x(n, c, i, j) = 0.05f + g.uniform01<float>();
    }
    const std::size_t before = nd::threads();
    for (std::size_t threads : {1, 3}) {
        INFO(L::name() << " on " << threads << " threads");
        nd::set_threads(threads);
        nd::Model<L, In> model{nd::seed{8}};
        typename nd::Model<L, In>::workspace ws;
        const auto skipped = model.forward(x, ws);
        const auto& cache = std::get<0>(ws.net.caches);
        const std::vector<float> sums_skipped(cache.patch_sum.begin(), cache.patch_sum.end());
        const std::size_t rows = sums_skipped.size(), solved = cache.active.size();
        CHECK(rows - solved > rows / batch);  // image 0's rows and some of the others': the test reaches the skipping
        CHECK(solved > rows / 4);
        CHECK(std::count(sums_skipped.begin(), sums_skipped.end(), 0.f) == std::ptrdiff_t(rows - solved));
        nd::configure_nmf(model, [](auto& o) { o.gradient(nd::nmf_gradient::unrolled); });
        const auto every_row = model.forward(x, ws);
        const std::vector<float> sums_every_row(cache.patch_sum.begin(), cache.patch_sum.end());
        CHECK(std::equal(skipped.begin(), skipped.end(), every_row.begin(), every_row.end()));
        CHECK(sums_skipped == sums_every_row);  // the approximate backward remakes x̂ from these
        // with ε an all-zero patch keeps h⁰ (h ⊙ (1 + ε·0)), so every row is solved
        nd::configure_nmf(model, [](auto& o) { o.gradient(nd::nmf_gradient::approximate).epsilon(0.1); });
        const auto damped = model.forward(x, ws);
        CHECK(cache.active.empty());
        CHECK(damped(0, 0, 0, 0) > 0.f);
    }
    nd::set_threads(before);
}
} // namespace

TEST_CASE("an all-zero patch is not solved: the output is bit for bit that of solving every row", "[cnmf][threads]")
{
    check_zero_patches_skipped<nd::CNMFCore<32, 5>, nd::Shape<1, 28, 28>>();  // I = 25: rows in lanes
    check_zero_patches_skipped<nd::CNMFCore<16, 4>, nd::Shape<2, 12, 12>>();  // I = 32, H = 16: the row layout
    check_zero_patches_skipped<nd::CNMFCore<5, 2, 2>, nd::Shape<3, 9, 7>>();  // stride 2, odd H

    // an all-zero batch: nothing to solve, every output 0, and the backward still runs
    nd::Model<nd::CNMFCore<8, 3>, nd::Shape<2, 6, 6>> model{nd::seed{2}};
    typename nd::Model<nd::CNMFCore<8, 3>, nd::Shape<2, 6, 6>>::workspace ws;
    xt::xtensor<float, 4> zeros = xt::zeros<float>({4, 2, 6, 6});
    const auto y = model.forward(zeros, ws);
    CHECK(std::get<0>(ws.net.caches).active.empty());
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.f; }));
    const auto dx = model.backward(xt::ones_like(y), ws);
    CHECK(std::all_of(dx.begin(), dx.end(), [](float v) { return v == 0.f; }));
}

TEST_CASE("options are validated and name the option", "[cnmf]")
{
    nd::cnmf_options o;
    CHECK(o.iterations() == 20);
    CHECK(!o.epsilon());
    CHECK(o.gradient() == nd::nmf_gradient::approximate);
    CHECK_THROWS_AS(o.iterations(0), nd::argument_error);
    CHECK_THROWS_WITH(o.iterations(0), Catch::Contains("'iterations'") && Catch::Contains("got 0"));
    CHECK_THROWS_WITH(o.epsilon(-0.5), Catch::Contains("'epsilon'") && Catch::Contains("-0.5"));
    CHECK_THROWS_AS(o.epsilon(std::nan("")), nd::argument_error);
    CHECK(o.iterations() == 20);  // a rejected value leaves the option unchanged
    o.iterations(5).epsilon(0.1);
    CHECK(o.iterations() == 5);
    CHECK(*o.epsilon() == 0.1);
}

TEST_CASE("backward uses the options its forward ran with, whatever was set in between", "[cnmf]")
{
    using M = nd::Model<nd::CNMFCore<3, 2>, nd::Shape<2, 4, 4>, double>;
    xt::xtensor<double, 4> x = xt::xtensor<double, 4>::from_shape({2, 2, 4, 4});
    for (std::size_t i = 0; i < x.size(); ++i)
        x.data()[i] = 0.1 + double((i * 7) % 11) / 11.0;
    auto run = [&](auto set_before, auto set_between) {
        M m{nd::seed{2}};
        nd::configure_nmf(m, set_before);
        const auto y = m.forward(x);
        nd::configure_nmf(m, set_between);
        const auto dx = m.backward(xt::ones_like(y) + 0.5 * y);
        return std::vector<double>(dx.begin(), dx.end());
    };
    auto unrolled_eps = [](nd::cnmf_options& o) { o.iterations(4).epsilon(0.3).gradient(nd::nmf_gradient::unrolled); };
    auto other = [](nd::cnmf_options& o) {
        o.iterations(9).epsilon(std::nullopt).gradient(nd::nmf_gradient::implicit);
    };
    auto keep = [](nd::cnmf_options&) {};
    CHECK(run(unrolled_eps, other) == run(unrolled_eps, keep));
    CHECK(run(other, unrolled_eps) == run(other, keep));
    CHECK(run(unrolled_eps, keep) != run(other, keep));  // the options do matter
}

TEST_CASE("the implicit gradient refuses a singular system and names the layer", "[cnmf]")
{
    // One input value per patch and two basis vectors: after the L1 normalisation every W row is [1], so the update
    // F(h) = h ⊙ u / Σ(h ⊙ u) is the identity — every h is a fixed point and I − ∂F/∂h vanishes.
    using Net = nd::Seq<nd::Conv<1, 1>, nd::ReLU, nd::CNMFCore<2, 1>>;
    nd::Model<Net, nd::Shape<1, 2, 2>, double> model{nd::seed{5}};
    nd::configure_nmf(model, [](nd::cnmf_options& o) { o.gradient(nd::nmf_gradient::implicit); });
    xt::xtensor<double, 4> x = xt::ones<double>({1, 1, 2, 2});
    model.layer<0>().params("weight")[0] = 1.0;
    model.layer<0>().params("bias")[0] = 0.5;
    const auto y = model.forward(x);
    CHECK_THROWS_AS(model.backward(xt::ones_like(y)), nd::numeric_error);
    CHECK_THROWS_WITH(model.backward(xt::ones_like(y)),
                      Catch::StartsWith("nmfdsl: layer 2 (CNMF<2,1>): implicit NMF gradient: the system") &&
                          (Catch::Contains("singular") || Catch::Contains("ill-conditioned")) &&
                          Catch::Contains("use the unrolled gradient"));
    // the same network trains with the unrolled gradient
    nd::configure_nmf(model, [](nd::cnmf_options& o) { o.gradient(nd::nmf_gradient::unrolled); });
    const auto y2 = model.forward(x);
    CHECK_NOTHROW(model.backward(xt::ones_like(y2)));
}

TEST_CASE("dense LU: solves with M and its transpose, and estimates the condition number", "[cnmf][kernels]")
{
    std::vector<double> m{4, 1, 0, 2, 5, 1, 0, 3, 6}, copy = m;
    nd::kernels::dense_lu lu;
    REQUIRE(lu.factor(m, 3));
    std::vector<double> x{1, 2, 3}, xt_{1, 2, 3};
    lu.solve(x);
    lu.solve_transposed(xt_);
    for (std::size_t r = 0; r < 3; ++r) {
        double mx = 0, mtx = 0;
        for (std::size_t c = 0; c < 3; ++c) {
            mx += copy[r * 3 + c] * x[c];
            mtx += copy[c * 3 + r] * xt_[c];
        }
        CHECK(mx == Approx(double(r + 1)).epsilon(1e-12));
        CHECK(mtx == Approx(double(r + 1)).epsilon(1e-12));
    }
    // ‖M‖₁ = 9, ‖M⁻¹‖₁ = 45/96: condition 4.21875; the estimate is a lower bound, usually exact at this size
    CHECK(lu.condition_estimate() <= 4.21875 + 1e-9);
    CHECK(lu.condition_estimate() >= 4.21875 / 3);
    std::vector<double> near_singular{1, 1, 1, 1 + 1e-13};
    REQUIRE(lu.factor(near_singular, 2));
    CHECK(lu.condition_estimate() > 1e12);
    std::vector<double> singular{1, 2, 2, 4};
    CHECK(!lu.factor(singular, 2));
}

TEST_CASE("checked builds: non-finite or negative values reaching an NMF layer throw numeric_error", "[cnmf]")
{
    static_assert(NMFDSL_CHECKED, "the unit tests are compiled with NMFDSL_CHECKED=1");
    nd::Model<nd::Seq<nd::Pointwise<2>, nd::CNMF<4, 3>>, nd::Shape<2, 5, 5>> model;
    xt::xtensor<float, 4> x = xt::ones<float>({2, 2, 5, 5});
    x(1, 0, 2, 2) = std::numeric_limits<float>::infinity();
    CHECK_THROWS_AS(model.forward(x), nd::numeric_error);
    CHECK_THROWS_WITH(model.forward(x),
                      Catch::StartsWith("nmfdsl: layer 2 (CNMF<4,3>)") && Catch::Contains("sample 1"));
    nd::Model<nd::CNMFCore<4, 3>, nd::Shape<2, 5, 5>> core;
    xt::xtensor<float, 4> bad = xt::ones<float>({1, 2, 5, 5});
    bad(0, 1, 0, 0) = std::nanf("");
    CHECK_THROWS_WITH(core.forward(bad), Catch::StartsWith("nmfdsl: layer 0 (CNMF<4,3>)") && Catch::Contains("nan"));
    bad(0, 1, 0, 0) = -1.f;
    CHECK_THROWS_AS(core.forward(bad), nd::numeric_error);
}

TEST_CASE("unrolled mode keeps x̂ between the passes, the approximate mode one sum per position", "[cnmf]")
{
    using In = nd::Shape<3, 28, 28>;
    using L = nd::CNMFCore<32, 5>;
    nd::Model<L, In> model;
    xt::xtensor<float, 4> x = xt::ones<float>({2, 3, 28, 28});
    typename nd::Model<L, In>::workspace ws;
    model.forward(x, ws);
    const std::size_t rows = 2 * 24 * 24;
    const std::size_t approx = std::get<0>(ws.net.caches).saved_bytes(rows);
    nd::configure_nmf(model, [](auto& o) { o.gradient(nd::nmf_gradient::unrolled); });
    model.forward(x, ws);
    const std::size_t unrolled = std::get<0>(ws.net.caches).saved_bytes(rows);
    INFO("approximate " << approx << " bytes, unrolled " << unrolled << " bytes");
    const std::size_t xhat_bytes = nd::kernels::nmf_layout<float>::pad_rows(rows) *
                                   nd::kernels::nmf_layout<float>::pad(3 * 5 * 5) * sizeof(float);
    CHECK(unrolled == approx + xhat_bytes);
}

namespace {
/// The inputs of an approximate backward: W with rows of scale 1/I, h in [0, 1) and an upstream gradient G in
/// [−1, 1), all random.
template <class T>
struct random_backward_inputs {
    k::nmf_weights<T> wts;
    std::vector<T> h, G;
    random_backward_inputs(nd::rng& g, std::size_t I, std::size_t H, std::size_t rows) : h(rows * H), G(rows * H)
    {
        std::vector<T> W(H * I);
        for (auto& v : W)
            v = g.uniform01<T>() / T(I);
        for (auto& v : h)
            v = g.uniform01<T>();
        for (auto& v : G)
            v = g.uniform<T>(T(-1), T(1));
        wts.assign(W.data(), H, I);
    }
};
} // namespace

TEMPLATE_TEST_CASE("the fused approximate backward matches the four-GEMM formulation on odd sizes", "[cnmf][kernels]",
                   float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{12});
    // GW is accumulated directly ([H × Ip]) when I and H are multiples of the lanes, {64, 16, 9}, and transposed
    // when the padding columns of short patches would waste lanes, e.g. {5, 97, 7}; the transposed tiles are split
    // into nearly equal heights: with 32 registers tiles of up to 13 (I = 25: 13 + 12; 26: 13 + 13; 14: 7 + 7;
    // 75: 13·3 + 12·3; 7: 4 + 1 + 1 + 1), with 16 of up to 6 (I = 7: 4 + 3, the lowest height; 13: 5 + 4 + 4)
    // {128, 64, 20}: the weights' row stride padded by a cache line (unaliased_stride). Direct GW rows come in
    // tiles of nearly equal height (H = 10: 5 + 5; 17: 6 + 6 + 5 with 32 registers). Rows left over after the groups
    // of 4 run in wider column blocks: {200, 24, 7} is 4 + 2 + 1 rows over 13 vectors (16 lanes) or 25 (8 lanes)
    const std::size_t shapes[][3] = {{7, 3, 1},     {13, 10, 13},   {75, 32, 25}, {33, 17, 12},
                                     {5, 97, 7},    {25, 32, 1001}, {26, 20, 30}, {14, 40, 17},
                                     {64, 16, 9},   {128, 64, 20},  {200, 24, 7}};
    for (const auto& sh : shapes) {
        const std::size_t I = sh[0], H = sh[1], rows = sh[2];
        const auto& [wts, h, G] = random_backward_inputs<T>(g, I, H, rows);
        if (I == 64 && H == 16)
            CHECK_FALSE(k::detail::backward_gw_transposed(wts));
        if (I == 5 && H == 97)
            CHECK(k::detail::backward_gw_transposed(wts));
        const std::size_t padded = k::nmf_layout<T>::pad_rows(rows);
        nd::aligned_vector<T> x(padded * wts.ip, T(0));
        for (std::size_t n = 0; n < rows; ++n)
            for (std::size_t i = 0; i < I; ++i)
                x[n * wts.ip + i] = g.uniform01<T>();
        std::vector<T> gx1(padded * wts.ip), gw1(H * wts.ip), gx2(padded * wts.ip), gw2(H * wts.ip);
        k::nmf_backward_scratch<T> s;
        k::nmf_backward_approx(wts, x.data(), h.data(), G.data(), rows, gx1.data(), gw1.data(), s);
        k::nmf_backward_approx_gemm(wts, x.data(), h.data(), G.data(), rows, gx2.data(), gw2.data(), s);
        // the first row alone (a one-row problem is not padded to a group of four): the same gx bits
        nd::aligned_vector<T> x_one(k::nmf_layout<T>::pad_rows(1) * wts.ip, T(0));
        std::copy(x.begin(), x.begin() + wts.ip, x_one.begin());
        std::vector<T> gx_one(x_one.size()), gw_one(H * wts.ip);
        k::nmf_backward_approx(wts, x_one.data(), h.data(), G.data(), 1, gx_one.data(), gw_one.data(), s);
        CHECK(std::equal(gx_one.begin(), gx_one.begin() + wts.ip, gx1.begin()));
        double worst = 0;
        for (std::size_t i = 0; i < rows * wts.ip; ++i)
            worst = std::max(worst, nd::testing::detail::relative_error(gx1[i], gx2[i]));
        for (std::size_t i = 0; i < H * wts.ip; ++i)
            worst = std::max(worst, nd::testing::detail::relative_error(gw1[i], gw2[i]));
        INFO("I=" << I << " H=" << H << " rows=" << rows);
        // float: GW is a sum over rows with cancellation, accumulated in a different order by the two versions
        CHECK(worst < (std::is_same_v<T, float> ? 2e-4 : 1e-12));
    }
}

TEMPLATE_TEST_CASE("the approximate backward's patch-normalisation step equals l1_backward_rows after it",
                   "[cnmf][kernels]", float, double)
{
    // with patch sums given, gx comes back already through the patch L1 normalisation: in registers when a row fits
    // one column block of the kernel (I = 5 with 4 lanes; I ≤ 32 with 16), else in a second pass over the rows.
    // A last single row has wider blocks: {100, 13, 49} takes rows 0-47 in the second pass, row 48 in registers
    // with 16 lanes. Either way it must equal the plain gradient taken through l1_backward_rows, the other modes' route
    using T = TestType;
    nd::rng g(nd::seed{14});
    const std::size_t shapes[][3] = {{5, 13, 50}, {12, 13, 50}, {25, 32, 97}, {75, 32, 30}, {100, 13, 49}};
    for (const auto& sh : shapes) {
        const std::size_t I = sh[0], H = sh[1], rows = sh[2];
        const auto& [wts, h, G] = random_backward_inputs<T>(g, I, H, rows);
        std::vector<T> patch_sum(rows);
        for (auto& v : patch_sum)
            v = T(0.5) + T(3) * g.uniform01<T>();
        const std::size_t padded = k::nmf_layout<T>::pad_rows(rows);
        nd::aligned_vector<T> x(padded * wts.ip, T(0));
        nd::testing::random_simplex_rows(g, x.data(), rows, I, wts.ip);
        std::vector<T> fused(padded * wts.ip), plain(padded * wts.ip), gw1(H * wts.ip), gw2(H * wts.ip);
        k::nmf_backward_scratch<T> s;
        k::nmf_backward_approx(wts, x.data(), h.data(), G.data(), rows, fused.data(), gw1.data(), s, patch_sum.data());
        k::nmf_backward_approx(wts, x.data(), h.data(), G.data(), rows, plain.data(), gw2.data(), s);
        nd::detail::l1_backward_rows(plain.data(), x.data(), patch_sum.data(), rows, I, wts.ip);
        double worst = 0;
        for (std::size_t n = 0; n < rows; ++n)
            for (std::size_t i = 0; i < I; ++i)
                worst = std::max(worst, std::abs(double(fused[n * wts.ip + i]) - double(plain[n * wts.ip + i])));
        INFO("I=" << I << " H=" << H << " rows=" << rows);
        CHECK(worst < (std::is_same_v<T, float> ? 1e-5 : 1e-13));  // only the dot product is summed in another order
        CHECK(gw1 == gw2);  // the patch sums do not enter GW
    }
}

TEST_CASE("streamed approximate backward (x̂ remade, col2im fused) equals the matrix route", "[cnmf][kernels]")
{
    // 11 samples of a 9×8×2 map, 3×2 windows: 49 positions per sample, 539 rows, so several tasks of whole samples
    constexpr k::window win{9, 8, 2, 3, 2, 1};
    constexpr std::size_t batch = 11, P = win.oh() * win.ow(), rows = batch * P, I = win.patch(), H = 13;
    nd::rng g(nd::seed{31});
    std::vector<float> W(H * I), h(rows * H), G(rows * H), x(batch * win.h * win.w * win.c);
    for (auto& v : W)
        v = g.uniform01<float>() / float(I);
    for (auto& v : h)
        v = g.uniform01<float>();
    for (auto& v : G)
        v = g.uniform(-1.f, 1.f);
    for (auto& v : x)
        v = g.uniform01<float>();
    k::nmf_weights<float> wts;
    wts.assign(W.data(), H, I);
    nd::aligned_vector<float> xhat(k::nmf_layout<float>::pad_rows(rows) * wts.ip, 0.f);
    k::im2col(x.data(), batch, win, xhat.data(), wts.ip);
    std::vector<float> patch_sum(rows);
    nd::detail::l1_normalise_rows(xhat.data(), rows, I, wts.ip, patch_sum.data());

    std::vector<float> gx(xhat.size()), gw1(H * wts.ip), gw2(H * wts.ip), dx1(x.size(), 0.f), dx2(x.size(), 0.f);
    k::nmf_backward_scratch<float> s;
    k::nmf_backward_approx(wts, xhat.data(), h.data(), G.data(), rows, gx.data(), gw1.data(), s, patch_sum.data());
    k::col2im_add(gx.data(), batch, win, dx1.data(), wts.ip);

    std::vector<std::size_t> seen;  // first rows handed to the sink, to check order and coverage
    std::size_t covered = 0;
    const std::size_t threads_before = nd::threads();
    nd::set_threads(1);  // the sink below is not thread-safe; col2im itself needs no locks (tested with threads)
    std::size_t sourced = 0;
    k::nmf_backward_approx_streamed(
        wts,
        [&](std::size_t first, std::size_t count, float* dst) {  // x̂ remade from the input, as the layer does
            sourced += count;
            k::im2col_rows(x.data(), first, count, k::fixed_window<win>{}, dst, wts.ip);
            for (std::size_t r = 0; r < count; ++r)
                nd::detail::l1_scale_row(dst + r * wts.ip, I, patch_sum[first + r]);
        },
        h.data(), G.data(), rows, P, gw2.data(), s, patch_sum.data(),
                                    [&](std::size_t first, std::size_t count, const float* rows_gx) {
                                        seen.push_back(first);
                                        covered += count;
                                        k::col2im_add_rows(rows_gx, first, count, k::fixed_window<win>{}, dx2.data(),
                                                                          wts.ip);
                                    });
    nd::set_threads(threads_before);
    CHECK(covered == rows);
    CHECK(sourced == rows);
    CHECK(std::is_sorted(seen.begin(), seen.end()));  // tasks and blocks in row order
    // every row's gx is computed the same way in both routes; col2im's sums may be grouped differently (with AVX-512
    // the compile-time window sums each output line in registers first)
    double worst_dx = 0;
    for (std::size_t i = 0; i < dx1.size(); ++i)
        worst_dx = std::max(worst_dx, std::abs(double(dx1[i]) - double(dx2[i])));
    CHECK(worst_dx < 1e-5);
    double worst = 0;
    for (std::size_t i = 0; i < H * wts.ip; ++i)
        worst = std::max(worst, nd::testing::detail::relative_error(gw1[i], gw2[i]));
    CHECK(worst < 1e-4);  // GW: partial sums over differently sized tasks
}

TEST_CASE("results do not depend on the thread count", "[cnmf][threads]")
{
    const std::size_t before = nd::threads();
    struct Net : nd::Seq<nd::PatchConv<16, 3>, nd::Mix1x1<16>, nd::MaxPool<2>, nd::CNMF<8, 3>, nd::Mix1x1<8>,
                         nd::CNMF<5, nd::whole_map>, nd::Flatten, nd::Dense<5>, nd::Softmax> {};
    auto run = [](std::size_t threads) {
        nd::set_threads(threads);
        nd::Model<Net, nd::Shape<2, 16, 16>> m{nd::seed{4}};
        nd::optim::Adam<float> adam(m.parameters(), nd::optim::learning_rates::paper());
        nd::rng g(nd::seed{5});
        xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({37, 2, 16, 16});
        for (auto& v : x)
            v = g.uniform01<float>();
        auto y = m.forward(x);
        auto dx = m.backward(xt::ones_like(y) - y);
        adam.step();
        y = m.forward(x);  // after one optimiser step
        std::vector<float> all(y.begin(), y.end());
        all.insert(all.end(), dx.begin(), dx.end());
        all.insert(all.end(), m.flat_gradients().begin(), m.flat_gradients().end());
        all.insert(all.end(), m.flat_parameters().begin(), m.flat_parameters().end());
        return all;
    };
    const auto one = run(1);
    const auto two = run(2);
    const auto three = run(3);
    nd::set_threads(before);
    CHECK(one == two);
    CHECK(one == three);
}

TEST_CASE("memory accounting: a training step's peak does not grow with T in approximate mode", "[cnmf][memory]")
{
    // the peak of library-held bytes over building a CNMF+1×1 model and two forward/backward passes at batch 3
    const std::size_t before = nd::threads();
    nd::set_threads(1);  // thread-local kernel scratch then lives in this thread only, warmed up below
    nd::rng g(nd::seed{41});
    xt::xtensor<float, 4> x = xt::xtensor<float, 4>::from_shape({3, 1, 28, 28});
    for (auto& v : x)
        v = g.uniform01<float>();
    std::size_t leftover = 0;
    auto peak_of = [&](std::size_t iterations, nd::nmf_gradient mode) {
        const std::size_t baseline = nd::memory::current_bytes();
        nd::memory::reset_peak();
        {
            nd::Model<paper::CNMF1x1, nd::Shape<1, 28, 28>> m{nd::seed{2}};
            nd::configure_nmf(m, [&](nd::cnmf_options& o) { o.iterations(iterations).gradient(mode); });
            for (int pass = 0; pass < 2; ++pass) {
                auto y = m.forward(x);
                m.backward(xt::ones_like(y));
            }
        }
        leftover = nd::memory::current_bytes() - baseline;
        return nd::memory::peak_bytes() - baseline;
    };
    // warm-up: the first passes leave per-thread kernel scratch allocated, later ones reuse it
    peak_of(5, nd::nmf_gradient::approximate);
    peak_of(5, nd::nmf_gradient::unrolled);
    peak_of(5, nd::nmf_gradient::approximate);
    CHECK(leftover == 0);  // the model gave back everything it took
    const std::size_t approx5 = peak_of(5, nd::nmf_gradient::approximate);
    const std::size_t approx40 = peak_of(40, nd::nmf_gradient::approximate);
    const std::size_t unrolled5 = peak_of(5, nd::nmf_gradient::unrolled);
    const std::size_t unrolled40 = peak_of(40, nd::nmf_gradient::unrolled);
    nd::set_threads(before);
    INFO("approximate T=5 " << approx5 << " B, T=40 " << approx40 << " B; unrolled T=5 " << unrolled5 << " B, T=40 "
                            << unrolled40 << " B");
    CHECK(approx5 == approx40);
    CHECK(approx5 > 4 * nd::parameter_count_v<paper::CNMF1x1, nd::Shape<1, 28, 28>>);  // at least the parameters
    // unrolled keeps x̂ (L1's alone: 3·576 rows × 32 × 4 B = 221 kB) and recomputes the iterations tile by tile:
    // with 8× the iterations only the per-thread record of one tile grows, bounded by the largest layer's (L3:
    // H = 96, I = 1024), not by the batch (a whole-batch record would grow by tens of megabytes here)
    CHECK(unrolled5 > approx5 + 200'000);
    constexpr std::size_t tile_record_growth =
        nd::kernels::nmf_layout<float>::tile_rows * (40 - 5) * (2 * 96 + 1024 + 1) * sizeof(float);
    CHECK(unrolled40 - unrolled5 <= tile_record_growth);
}

TEST_CASE("memory accounting: an impossible allocation throws and leaves the counters alone", "[memory]")
{
    const std::size_t before = nd::memory::current_bytes();
    nd::memory::counting_allocator<float> alloc;
    CHECK_THROWS_AS(alloc.allocate(std::numeric_limits<std::size_t>::max() / 2), std::bad_array_new_length);
    CHECK(nd::memory::current_bytes() == before);
    float* p = alloc.allocate(100);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    CHECK(nd::memory::current_bytes() == before + 100 * sizeof(float));
    alloc.deallocate(p, 100);
    CHECK(nd::memory::current_bytes() == before);
}

namespace {
/// The VmFlags line of /proc/self/smaps for the mapping holding address p ("" if none is found).
std::string mapping_flags(const void* p)
{
    std::ifstream smaps("/proc/self/smaps");
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        std::uintptr_t lo = 0, hi = 0;
        char dash = 0;
        std::istringstream head(line);
        if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(':') > line.find(' '))
            inside = lo <= at && at < hi;
        else if (inside && line.rfind("VmFlags:", 0) == 0)
            return line;
    }
    return "";
}
} // namespace

TEST_CASE("memory accounting: buffers from 2 MiB up are mapped on 2 MiB boundaries for huge pages", "[memory]")
{
    nd::memory::counting_allocator<float> alloc;
    const std::size_t before = nd::memory::current_bytes();
    // one float under, at and over the threshold, and a length that is no whole number of pages
    for (const std::size_t n : {nd::memory::huge_buffer_bytes / 4 - 1, nd::memory::huge_buffer_bytes / 4,
                                std::size_t(3'000'001)}) {
        CAPTURE(n);
        float* p = alloc.allocate(n);
        const bool mapped = nd::memory::maps_huge_buffers && n * sizeof(float) >= nd::memory::huge_buffer_bytes;
        CHECK(reinterpret_cast<std::uintptr_t>(p) % (mapped ? nd::memory::huge_buffer_bytes : 64) == 0);
        CHECK(nd::memory::current_bytes() == before + n * sizeof(float));  // what was asked for, not the pages
        std::fill(p, p + n, 1.5f);  // all of it writable
        CHECK(std::count(p, p + n, 1.5f) == static_cast<std::ptrdiff_t>(n));
#if defined(__linux__) && defined(__x86_64__)
        // marked for huge pages ("hg"), where the kernel has them (qemu-user, which runs the ARM tests, ignores it)
        if (mapped && std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"))
            CHECK(mapping_flags(p).find(" hg") != std::string::npos);
#endif
        alloc.deallocate(p, n);
        CHECK(nd::memory::current_bytes() == before);
    }
    // a mapping the system cannot give is bad_alloc, counters untouched (on the heap path, AddressSanitizer's
    // allocator aborts on such a size instead of failing, so this is checked where buffers are mapped)
    if constexpr (nd::memory::maps_huge_buffers) {
        CHECK_THROWS_AS(alloc.allocate(std::numeric_limits<std::size_t>::max() / 8), std::bad_alloc);
        CHECK(nd::memory::current_bytes() == before);
    }
}
