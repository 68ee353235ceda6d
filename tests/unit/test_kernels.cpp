// The optimised kernels against their naive twins, on sizes that are not multiples of the SIMD width.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

#include <nmfdsl/core/parallel.hpp>
#include <nmfdsl/core/rng.hpp>
#include <nmfdsl/kernels/gemm.hpp>
#include <nmfdsl/kernels/im2col.hpp>
#include <nmfdsl/kernels/select.hpp>
#include <nmfdsl/kernels/simd.hpp>
#include <nmfdsl/testing/naive.hpp>

namespace nd = nmfdsl;

namespace {
template <class T>
std::vector<T> random_vector(std::size_t n, nd::rng& g)
{
    std::vector<T> v(n);
    for (auto& x : v)
        x = g.uniform<T>(T(-1), T(1));
    return v;
}

template <class T>
double max_abs_diff(const std::vector<T>& a, const std::vector<T>& b)
{
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}
} // namespace

TEMPLATE_TEST_CASE("gemm matches the naive twin for every transpose combination and odd sizes", "[kernels][gemm]",
                   float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{3});
    // the last two: one block of C and a long K, which is split into parts summed in order (a weight gradient)
    const std::size_t sizes[][3] = {{1, 1, 1},    {7, 5, 3},   {13, 33, 17}, {31, 65, 400}, {100, 3, 9}, {5, 200, 777},
                                    {0, 4, 4},    {4, 4, 0},   {20, 37, 2 * nd::kernels::gemm_k_part<T> + 5},
                                    {3, 9, 3 * nd::kernels::gemm_k_part<T>}};
    for (const auto& s : sizes)
        for (int ta = 0; ta < 2; ++ta)
            for (int tb = 0; tb < 2; ++tb)
                for (T beta : {T(0), T(1), T(-0.5)}) {
                    const std::size_t M = s[0], N = s[1], K = s[2];
                    const std::size_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
                    const auto A = random_vector<T>((ta ? K : M) * lda, g);
                    const auto B = random_vector<T>((tb ? N : K) * ldb, g);
                    auto C1 = random_vector<T>(M * ldc, g);
                    auto C2 = C1;
                    nd::kernels::gemm<T>(ta, tb, M, N, K, T(1.5), A.data(), lda, B.data(), ldb, beta, C1.data(), ldc);
                    nd::testing::naive_gemm<T>(ta, tb, M, N, K, T(1.5), A.data(), lda, B.data(), ldb, beta, C2.data(),
                                               ldc);
                    INFO("M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " beta=" << beta);
                    const double tol = (std::is_same_v<T, float> ? 2e-5 : 1e-12) * double(K + 1);
                    CHECK(max_abs_diff(C1, C2) <= tol);
                }
}

TEST_CASE("gemm with beta = 0 ignores NaN already in C", "[kernels][gemm]")
{
    std::vector<float> A{1, 2, 3, 4}, B{1, 0, 0, 1}, C(4, std::nanf(""));
    nd::kernels::gemm<float>(false, false, 2, 2, 2, 1.f, A.data(), 2, B.data(), 2, 0.f, C.data(), 2);
    CHECK(C == std::vector<float>{1, 2, 3, 4});
}

TEMPLATE_TEST_CASE("im2col and col2im match their naive twins", "[kernels][im2col]", float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{5});
    const nd::kernels::window windows[] = {
        {9, 7, 3, 3, 2, 1}, {12, 12, 5, 5, 5, 1}, {11, 13, 17, 3, 3, 2}, {4, 4, 6, 4, 4, 1}, {6, 5, 1, 1, 1, 1}};
    for (const auto& w : windows) {
        const std::size_t batch = 3;
        const auto x = random_vector<T>(batch * w.h * w.w * w.c, g);
        std::vector<T> c1(batch * w.oh() * w.ow() * w.patch()), c2(c1.size());
        nd::kernels::im2col(x.data(), batch, w, c1.data());
        nd::testing::naive_im2col(x.data(), batch, w, c2.data());
        CHECK(c1 == c2);

        const auto cols = random_vector<T>(c1.size(), g);
        std::vector<T> d1(x.size(), T(0)), d2(x.size());
        nd::kernels::col2im_add(cols.data(), batch, w, d1.data());
        nd::testing::naive_col2im(cols.data(), batch, w, d2.data());
        CHECK(max_abs_diff(d1, d2) < 1e-5);
    }
}

namespace {
/// col2im_add_rows with a compile-time window, in calls of `chunk` rows (row stride `stride`), against the naive twin.
template <nd::kernels::window G>
void check_fixed_col2im(std::size_t chunk, std::size_t stride, nd::rng& g)
{
    const std::size_t batch = 3, rows = batch * G.oh() * G.ow();
    std::vector<float> cols(rows * stride, 0.f), dense(rows * G.patch());
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < G.patch(); ++i)
            dense[r * G.patch() + i] = cols[r * stride + i] = g.uniform(-1.f, 1.f);
    std::vector<float> fast(batch * G.h * G.w * G.c, 0.f), slow(fast.size(), 0.f);
    for (std::size_t first = 0; first < rows; first += chunk)
        nd::kernels::col2im_add_rows(cols.data() + first * stride, first, std::min(chunk, rows - first),
                                     nd::kernels::fixed_window<G>{}, fast.data(), stride);
    nd::testing::naive_col2im(dense.data(), batch, G, slow.data());
    INFO("window " << G.h << "x" << G.w << "x" << G.c << ", kernel " << G.kh << "x" << G.kw << ", stride "
                   << G.stride << ", calls of " << chunk << " rows");
    CHECK(max_abs_diff(fast, slow) < 1e-5);
}
} // namespace

namespace {
/// im2col_rows with a compile-time window, in calls of `chunk` rows into rows of `stride` values whose padding
/// holds `pad`, against the naive twin. The input is allocated to its exact size, so a read past the last sample
/// (the whole-vector path reads up to L − KW·C values beyond a run) shows under AddressSanitizer; the rows too.
template <class T, nd::kernels::window G>
void check_fixed_im2col(std::size_t chunk, std::size_t stride, T pad, nd::rng& g)
{
    constexpr std::size_t L = xsimd::batch<T>::size, run = G.kw * G.c;
    const std::size_t batch = 2, rows = batch * G.oh() * G.ow();
    const auto x = random_vector<T>(batch * G.h * G.w * G.c, g);
    std::vector<T> cols(rows * stride, pad), dense(rows * G.patch());
    for (std::size_t first = 0; first < rows; first += chunk)
        nd::kernels::im2col_rows(x.data(), first, std::min(chunk, rows - first), nd::kernels::fixed_window<G>{},
                                 cols.data() + first * stride, stride);
    nd::testing::naive_im2col(x.data(), batch, G, dense.data());
    INFO("window " << G.h << "x" << G.w << "x" << G.c << ", kernel " << G.kh << "x" << G.kw << ", row stride "
                   << stride << ", calls of " << chunk << " rows, " << L << " lanes");
    std::size_t wrong_values = 0, wrong_padding = 0;
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < stride; ++i) {
            const T v = cols[r * stride + i];
            if (i < G.patch())
                wrong_values += v != dense[r * G.patch() + i];
            else  // left as it was, or zero in the L − run columns after the patch
                wrong_padding += !(v == pad || (v == T(0) && i < G.patch() + L - std::min(run, L)));
        }
    CHECK(wrong_values == 0);
    CHECK(wrong_padding == 0);
}
} // namespace

TEMPLATE_TEST_CASE("im2col over row ranges with a compile-time window matches the naive twin", "[kernels][im2col]",
                   float, double)
{
    // Runs of at most one vector are copied as whole vectors (AVX2 and NEON/SSE for short runs; AVX-512 floats use
    // masked runs), value by value where the vector would read past the last sample or the row is too short for
    // the last run's vector (the row strides below are both). Calls end inside output lines and samples; the
    // padding is zero (as the CNMF layer keeps it) or a marker that must survive outside the zeroed columns.
    using T = TestType;
    nd::rng g(nd::seed{12});
    for (std::size_t chunk : {1u, 7u, 48u, 1000u})
        for (T pad : {T(0), T(7)}) {
            check_fixed_im2col<T, nd::kernels::window{28, 28, 1, 5, 5, 1}>(chunk, 32, pad, g);
            check_fixed_im2col<T, nd::kernels::window{28, 28, 1, 5, 5, 1}>(chunk, 25, pad, g);
            check_fixed_im2col<T, nd::kernels::window{9, 10, 1, 3, 3, 1}>(chunk, 16, pad, g);
            check_fixed_im2col<T, nd::kernels::window{9, 10, 1, 3, 3, 1}>(chunk, 12, pad, g);
            check_fixed_im2col<T, nd::kernels::window{11, 9, 2, 3, 2, 2}>(chunk, 12, pad, g);
            check_fixed_im2col<T, nd::kernels::window{7, 12, 3, 3, 3, 1}>(chunk, 27, pad, g);
        }
}

TEST_CASE("col2im over row ranges with a compile-time window matches the naive twin", "[kernels][im2col]")
{
    // With AVX-512 the first three take the line-accumulator path (input lines and patches of at most 32 floats):
    // the Fashion-MNIST first layer, a 2-channel window with stride 2, and a line of exactly 16 floats. With AVX2
    // the single-channel stride-1 windows take the transposed path: the Fashion-MNIST layer, a line of 16, output
    // lines of 28 and 32 rows (three and four blocks of 8, one partial), and rows too short to be read in blocks of
    // 8 columns (stride 25: the row path). Calls start and stop inside output lines and samples. The last window's
    // lines are too long for either and take the row path.
    nd::rng g(nd::seed{10});
    for (std::size_t chunk : {1u, 7u, 48u, 1000u}) {
        check_fixed_col2im<nd::kernels::window{28, 28, 1, 5, 5, 1}>(chunk, 32, g);
        check_fixed_col2im<nd::kernels::window{28, 28, 1, 5, 5, 1}>(chunk, 25, g);
        check_fixed_col2im<nd::kernels::window{11, 9, 2, 3, 2, 2}>(chunk, 12, g);
        check_fixed_col2im<nd::kernels::window{6, 16, 1, 2, 4, 1}>(chunk, 8, g);
        check_fixed_col2im<nd::kernels::window{10, 30, 1, 4, 3, 1}>(chunk, 16, g);
        check_fixed_col2im<nd::kernels::window{9, 32, 1, 3, 1, 1}>(chunk, 8, g);
        check_fixed_col2im<nd::kernels::window{7, 12, 3, 3, 3, 1}>(chunk, 27, g);
    }
}

TEST_CASE("col2im overwrites: it equals col2im_add into zeros, whatever dx held", "[kernels][im2col]")
{
    nd::rng g(nd::seed{10});
    const nd::kernels::window w{7, 6, 5, 3, 3, 1};
    const auto c = random_vector<float>(3 * w.oh() * w.ow() * w.patch(), g);
    std::vector<float> added(3 * w.h * w.w * w.c, 0.0f), written(added.size(), std::nanf(""));
    nd::kernels::col2im_add(c.data(), 3, w, added.data());
    nd::kernels::col2im(c.data(), 3, w, written.data());
    CHECK(written == added);
}

TEST_CASE("mark_nonzero_patches finds exactly the all-zero rows of im2col", "[kernels][im2col]")
{
    nd::rng g(nd::seed{14});
    const nd::kernels::window windows[] = {
        {9, 7, 3, 3, 2, 1}, {12, 12, 1, 5, 5, 1}, {11, 13, 2, 3, 3, 2}, {4, 4, 6, 4, 4, 1}, {6, 5, 1, 1, 1, 1}};
    for (const auto& w : windows) {
        INFO("window " << w.h << "x" << w.w << "x" << w.c << ", kernel " << w.kh << "x" << w.kw << ", stride "
                       << w.stride);
        const std::size_t batch = 4;
        std::vector<float> x(batch * w.h * w.w * w.c, 0.f);
        // sample 0 all zero; then sparser and sparser single values, one of them NaN, some -0
        for (std::size_t i = w.h * w.w * w.c; i < x.size(); ++i) {
            const std::size_t n = i / (w.h * w.w * w.c);
            if (g.below(3 * n) == 0)
                x[i] = g.uniform01<float>() + 0.01f;
            else if (g.below(4) == 0)
                x[i] = -0.f;
        }
        x[x.size() / 2] = std::numeric_limits<float>::quiet_NaN();
        const std::size_t rows = batch * w.oh() * w.ow();
        std::vector<float> cols(rows * w.patch());
        nd::testing::naive_im2col(x.data(), batch, w, cols.data());
        std::vector<unsigned char> flags(rows, 7);
        nd::kernels::mark_nonzero_patches(x.data(), batch, w, flags.data());
        std::size_t zero_rows = 0;
        for (std::size_t r = 0; r < rows; ++r) {
            const float* row = cols.data() + r * w.patch();
            const bool nonzero = std::any_of(row, row + w.patch(), [](float v) { return v != 0.f; });
            zero_rows += nonzero ? 0 : 1;
            INFO("row " << r);
            CHECK(int(flags[r]) == (nonzero ? 1 : 0));
        }
        CHECK(zero_rows >= w.oh() * w.ow());  // sample 0, at least
        CHECK(zero_rows < rows);
    }
}

TEST_CASE("col2im is the adjoint of im2col", "[kernels][im2col]")
{
    // <im2col(x), c> == <x, col2im(c)> for any x, c.
    nd::rng g(nd::seed{9});
    const nd::kernels::window w{10, 9, 4, 3, 4, 2};
    const auto x = random_vector<double>(2 * w.h * w.w * w.c, g);
    const auto c = random_vector<double>(2 * w.oh() * w.ow() * w.patch(), g);
    std::vector<double> cols(c.size()), back(x.size(), 0.0);
    nd::kernels::im2col(x.data(), 2, w, cols.data());
    nd::kernels::col2im_add(c.data(), 2, w, back.data());
    double lhs = 0, rhs = 0;
    for (std::size_t i = 0; i < c.size(); ++i)
        lhs += cols[i] * c[i];
    for (std::size_t i = 0; i < x.size(); ++i)
        rhs += x[i] * back[i];
    CHECK(lhs == Approx(rhs).epsilon(1e-12));
}

TEST_CASE("parallel gemm gives the same bits for any thread count", "[kernels][gemm][threads]")
{
    const std::size_t before = nd::threads();
    nd::rng g(nd::seed{21});
    const std::size_t M = 301, N = 173, K = 259;
    const auto A = random_vector<float>(M * K, g), B = random_vector<float>(K * N, g);
    std::vector<std::vector<float>> results;
    for (std::size_t t : {1, 2, 3}) {
        nd::set_threads(t);
        for (int ta = 0; ta < 2; ++ta) {
            std::vector<float> C(M * N, 0.f), skinny(16 * N, 0.f), long_k(6 * 3, 1.f);
            nd::kernels::gemm<float>(ta, false, M, N, K, 1.f, A.data(), ta ? M : K, B.data(), N, 0.f, C.data(), N);
            nd::kernels::gemm<float>(false, false, 16, N, K, 1.f, A.data(), K, B.data(), N, 0.f, skinny.data(), N);
            // a long K, split into parts (A read as Kl × 6, B as Kl × 3)
            const std::size_t Kl = 2 * nd::kernels::gemm_k_part<float> + 100;
            REQUIRE((Kl * 6 <= A.size() && Kl * 3 <= B.size()));
            nd::kernels::gemm<float>(true, false, 6, 3, Kl, 1.f, A.data(), 6, B.data(), 3, 1.f, long_k.data(), 3);
            C.insert(C.end(), skinny.begin(), skinny.end());
            C.insert(C.end(), long_k.begin(), long_k.end());
            results.push_back(C);
        }
    }
    nd::set_threads(before);
    CHECK(results[0] == results[2]);
    CHECK(results[0] == results[4]);
    CHECK(results[1] == results[3]);
    CHECK(results[1] == results[5]);
}

TEST_CASE("the thread pool runs every task once, propagates exceptions and validates its size", "[threads]")
{
    nd::thread_pool pool(3);
    CHECK(pool.threads() == 3);
    std::vector<int> hits(1000, 0);
    pool.parallel_for(hits.size(), [&](std::size_t i) { hits[i] += 1; });
    CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
    CHECK_THROWS_WITH(pool.parallel_for(10, [](std::size_t i) {
        if (i == 7)
            throw std::runtime_error("task 7 failed");
    }),
                      "task 7 failed");
    std::atomic<int> nested{0};
    pool.parallel_for(4, [&](std::size_t) { pool.parallel_for(5, [&](std::size_t) { ++nested; }); });
    CHECK(nested == 20);  // nested loops run serially inside a task
    CHECK_THROWS_AS(pool.set_threads(0), nd::argument_error);
    pool.set_threads(1);
    CHECK(pool.threads() == 1);
}

TEST_CASE("the thread pool survives many short calls back to back", "[threads]")
{
    // A worker still leaving call k while the caller starts call k+1 must neither run nor skip a task of k+1 (a
    // stray task claim once made a benchmark hang with 2 threads). Many tiny calls make that window likely.
    for (std::size_t threads : {2, 3}) {
        nd::thread_pool pool(threads);
        std::vector<std::atomic<int>> hits(7);
        std::vector<int> expected(7, 0);
        for (std::size_t call = 0; call < 200000; ++call) {
            const std::size_t n = 2 + call % 6;
            pool.parallel_for(n, [&](std::size_t i) { hits[i].fetch_add(1, std::memory_order_relaxed); });
            for (std::size_t i = 0; i < n; ++i)
                ++expected[i];
        }
        INFO(threads << " threads");
        for (std::size_t i = 0; i < hits.size(); ++i)
            CHECK(hits[i].load() == expected[i]);
    }
}

TEST_CASE("the thread pool's workers poll, then sleep; either way the next call wakes them", "[threads]")
{
    // Two tasks that each wait for the other can only both finish if a worker runs one while the caller runs the
    // other: after a pause shorter than the workers' polling (20 µs) and after one longer than it (3 ms, so they
    // sleep on the condition variable). A task longer than the polling makes the caller sleep until it ends.
    nd::thread_pool pool(2);
    for (const auto pause : {std::chrono::microseconds(20), std::chrono::microseconds(3000)})
        for (int call = 0; call < 5; ++call) {
            std::this_thread::sleep_for(pause);
            std::atomic<int> arrived{0};
            std::atomic<int> met{0};
            pool.parallel_for(2, [&](std::size_t) {
                arrived.fetch_add(1);
                const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                while (arrived.load() < 2 && std::chrono::steady_clock::now() < give_up)
                    std::this_thread::yield();
                if (arrived.load() == 2)
                    met.fetch_add(1);
                std::this_thread::sleep_for(std::chrono::microseconds(500));
            });
            INFO("pause " << pause.count() << " us, call " << call);
            CHECK(met.load() == 2);
        }
}

TEST_CASE("the start-up check names the first instruction set the CPU lacks", "[cpu]")
{
    namespace cpu = nd::cpu;
    const cpu::isa needed[] = {cpu::isa::sse4_2, cpu::isa::avx2, cpu::isa::fma, cpu::isa::avx512f, cpu::isa::avx512bw};
    const auto without_avx512 = [](cpu::isa i) { return i != cpu::isa::avx512f && i != cpu::isa::avx512bw; };
    CHECK(cpu::first_missing(needed, 5, without_avx512) == cpu::isa::avx512f);
    CHECK(cpu::first_missing(needed, 3, without_avx512) == std::nullopt);
    CHECK(cpu::isa_name(cpu::isa::avx512f) == "AVX-512F");
    // this very binary runs on this CPU, so nothing it was compiled for is missing
    const auto has = [](cpu::isa i) { return cpu::cpu_has(i); };
    CHECK(cpu::first_missing(cpu::compiled_isas.items.data(), cpu::compiled_isas.size, has) == std::nullopt);
#if defined(__AVX2__)
    CHECK(cpu::cpu_has(cpu::isa::avx2));
#endif
}

TEMPLATE_TEST_CASE("copy_short_row copies exactly n elements for every length and offset", "[kernels][simd]", float,
                   double)
{
    using T = TestType;
    constexpr std::size_t L = xsimd::batch<T>::size;
    nd::rng g(nd::seed{5});
    for (std::size_t n = 0; n <= 4 * L; ++n)
        for (std::size_t offset : {std::size_t(0), std::size_t(1), L - 1}) {  // unaligned starts too
            const std::vector<T> src = random_vector<T>(n + offset + L, g);
            std::vector<T> dst(n + offset + L, T(-7));
            nd::kernels::copy_short_row(src.data() + offset, n, dst.data() + offset);
            for (std::size_t i = 0; i < dst.size(); ++i) {
                const bool inside = i >= offset && i < offset + n;
                CHECK(dst[i] == (inside ? src[i] : T(-7)));
            }
        }
}

TEMPLATE_TEST_CASE("column_rank_thresholds splits every column at its k-th smallest value, as a sort does",
                   "[kernels][select]", float, double)
{
    using T = TestType;
    nd::rng g(nd::seed{17});
    // 37 columns: whole vectors and a partial one on every ISA; the values are drawn from a small set, so there are
    // many ties, with zeros of both signs, negatives, infinities and a constant column
    const std::vector<T> pool{T(-0.0), T(0), T(0), T(0), T(1.5), T(-2), T(0.25), T(3), T(1e-30), T(-1e-30),
                              std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity()};
    for (std::size_t rows : {1u, 2u, 9u, 196u}) {
        constexpr std::size_t columns = 37, stride = 40;
        std::vector<T> x(rows * stride, T(7));
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t c = 0; c < columns; ++c)
                x[r * stride + c] = c == 5 ? T(2) : c % 3 == 0 ? g.uniform<T>(T(-1), T(1))
                                                               : pool[std::size_t(g.uniform<T>(T(0), T(11.99)))];
        for (std::size_t k : {std::size_t(1), (rows + 1) / 2, rows * 4 / 5 > 0 ? rows * 4 / 5 : 1, rows}) {
            std::vector<T> thr(columns, T(-5));
            nd::kernels::column_rank_thresholds(x.data(), rows, columns, stride, k, thr.data());
            for (std::size_t c = 0; c < columns; ++c) {
                std::vector<T> column;
                for (std::size_t r = 0; r < rows; ++r)
                    column.push_back(x[r * stride + c]);
                std::sort(column.begin(), column.end());
                const T kth = column[k - 1];
                INFO("rows " << rows << ", k " << k << ", column " << c << ", threshold " << thr[c]);
                CHECK(thr[c] >= kth);
                if (k < rows)
                    CHECK((thr[c] < column[k] || column[k] == kth));
                for (std::size_t r = 0; r < rows; ++r)
                    CHECK((x[r * stride + c] > thr[c]) == (x[r * stride + c] > kth));
            }
        }
    }
}
