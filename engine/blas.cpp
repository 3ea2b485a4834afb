// anno::anno_linear -- y = x @ W (+ b) for the compiled decode step (engine/compiled_step.py). Built and
// loaded by engine/blas.py, which passes the BLAS symbol names it found (ANNO_SGEMV, ANNO_SGEMM,
// ANNO_BLAS_INT), links the OpenBLAS library numpy ships and compiles for this CPU (-march=native).
//
// One row (a decode step of one sequence: the case that decides tokens/s) runs on this file's own GEMV
// kernels, split over `threads` threads: the caller and threads-1 workers of a small pool that spin between
// calls, then sleep. Several rows run on OpenBLAS's sgemm (its blocked kernels win there).
// Why own kernels, measured 2026-11-30 on this machine's 2-core AMD EPYC, the 12x768 model's 49 products
// of a token, one C call each (/tmp/s7/k, 3 runs): OpenBLAS sgemv with its own 2-thread pool 16.3-16.9 ms
// (21.6-22.3 GB/s), these kernels 13.8-14.8 ms (24.6-26.3 GB/s); the demo model's 17, 0.17-0.22 vs
// 0.12-0.16 ms (benchmarks/blas.py, 2 threads, one Python call per product: 13.3 ms vs numpy's OpenBLAS 17.5
// and at::mm 22.5). Two things made the difference, each measured alone:
//  - every thread reads one contiguous block: W [in, out] (GPT-2's Conv1D) is split by its rows (each
//    thread a partial sum of all outputs, added up after), not by columns: mlp c_proj (3072x768) 15-16 GB/s
//    split by columns (OpenBLAS's split, or ours), 20-26 split by rows;
//  - a software prefetch 8 rows ahead: a plain 2-thread read of 368 MB here runs at 21.1 GB/s, 24.6 with it.
// On one thread OpenBLAS's sgemv is faster on large [in, out] weights (see `linear`), which then go to it; on
// the demo model's small matrices these kernels are faster (0.19-0.20 vs 0.28-0.29 ms).
// The compiled step's own kernels are single-threaded (engine/compiled_step.py), so no torch OpenMP pool spins
// against these workers. Ahead-of-time compiled steps call aoti_torch_cpu_anno_linear directly (no proxy
// executor: engine/compiled_step.py declares it; engine/blas_shim.c says why it goes through a second library).
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/inductor/aoti_torch/utils.h>
#include <torch/library.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ANNO_OWN_GEMV 1
#else
#define ANNO_OWN_GEMV 0
#endif

extern "C" {
void ANNO_SGEMV(int order, int trans, ANNO_BLAS_INT m, ANNO_BLAS_INT n, float alpha, const float* a,
                ANNO_BLAS_INT lda, const float* x, ANNO_BLAS_INT incx, float beta, float* y, ANNO_BLAS_INT incy);
void ANNO_SGEMM(int order, int ta, int tb, ANNO_BLAS_INT m, ANNO_BLAS_INT n, ANNO_BLAS_INT k, float alpha,
                const float* a, ANNO_BLAS_INT lda, const float* b, ANNO_BLAS_INT ldb, float beta, float* c,
                ANNO_BLAS_INT ldc);
int openblas_set_num_threads_local(int);  // returns the calling thread's previous setting (OpenBLAS >= 0.3.27)
}

namespace {
enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
constexpr int64_t AHEAD_ROWS = 8;  // prefetch distance in weight rows (4 and 16 were slower, /tmp/s7/k)
constexpr auto SPIN = std::chrono::microseconds(500);  // workers spin this long after a call, then sleep
// Spins (~30 ns each) before a waiting thread yields its core instead: on a machine with more runnable threads
// than cores a pure spin keeps the thread it waits for off the CPU (12x768 steps during a CI run, 3 alternated
// pairs: mean 35.6-42.6 ms a step with the yield, 17.8-99.8 and a median of 75.6 spinning, 2026-11-30).
constexpr int YIELD_AFTER = 2048;
std::atomic<int> g_own{ANNO_OWN_GEMV};  // 1: own one-row kernels, 0: OpenBLAS sgemv (anno_blas_gemv_kernel)

struct Gemv {  // y = x @ W (+ b) for one row; W [in, out], or [out, in] when out_in
  const float *x, *w, *b;
  float* y;
  int64_t in, out;
  bool out_in;
  const int8_t* w8 = nullptr;  // int8 weights [out, in] instead of w (anno_linear_q8; then out_in is true)
  const float* s = nullptr;    // their per-output scales
  int64_t rows = 1;            // rows of x and y (anno_linear_q8 only)
};

#if ANNO_OWN_GEMV
// One cache line of each of four weight rows, `at` floats ahead (both kernels read 4 rows at a time).
inline void prefetch4(const float* w0, const float* w1, const float* w2, const float* w3, int64_t at) {
  _mm_prefetch(reinterpret_cast<const char*>(w0 + at), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(w1 + at), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(w2 + at), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(w3 + at), _MM_HINT_T0);
}

// acc[0:out] += x[0:rows] @ W[0:rows, :] for W [rows, out] row-major: 4 rows at a time, 16 columns a step
void axpy_rows(const float* __restrict x, const float* __restrict w, float* __restrict acc, int64_t rows,
               int64_t out) {
  const int64_t ahead = AHEAD_ROWS * out;
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {
    const float *w0 = w + i * out, *w1 = w0 + out, *w2 = w1 + out, *w3 = w2 + out;
    const __m256 a0 = _mm256_set1_ps(x[i]), a1 = _mm256_set1_ps(x[i + 1]), a2 = _mm256_set1_ps(x[i + 2]),
                 a3 = _mm256_set1_ps(x[i + 3]);
    int64_t j = 0;
    for (; j + 16 <= out; j += 16) {
      prefetch4(w0, w1, w2, w3, ahead + j);
      __m256 y0 = _mm256_loadu_ps(acc + j), y1 = _mm256_loadu_ps(acc + j + 8);
      y0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(w0 + j), y0);
      y1 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(w0 + j + 8), y1);
      y0 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(w1 + j), y0);
      y1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(w1 + j + 8), y1);
      y0 = _mm256_fmadd_ps(a2, _mm256_loadu_ps(w2 + j), y0);
      y1 = _mm256_fmadd_ps(a2, _mm256_loadu_ps(w2 + j + 8), y1);
      y0 = _mm256_fmadd_ps(a3, _mm256_loadu_ps(w3 + j), y0);
      y1 = _mm256_fmadd_ps(a3, _mm256_loadu_ps(w3 + j + 8), y1);
      _mm256_storeu_ps(acc + j, y0);
      _mm256_storeu_ps(acc + j + 8, y1);
    }
    for (; j < out; ++j) acc[j] += x[i] * w0[j] + x[i + 1] * w1[j] + x[i + 2] * w2[j] + x[i + 3] * w3[j];
  }
  for (; i < rows; ++i)
    for (int64_t j = 0; j < out; ++j) acc[j] += x[i] * w[i * out + j];
}

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// y[o0:o1] = W[o0:o1, :] @ x (+ b) for W [out, in] row-major: 4 dot products at a time
void dot_rows(const Gemv& g, int64_t o0, int64_t o1) {
  const int64_t in = g.in, ahead = AHEAD_ROWS * in;
  const float* x = g.x;
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) {
    const float *w0 = g.w + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
      prefetch4(w0, w1, w2, w3, ahead + i);
      const __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), xb, _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), xa, s0));
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), xb, _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), xa, s1));
      s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), xb, _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), xa, s2));
      s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), xb, _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), xa, s3));
    }
    float r[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
    for (; i < in; ++i) {
      r[0] += w0[i] * x[i], r[1] += w1[i] * x[i], r[2] += w2[i] * x[i], r[3] += w3[i] * x[i];
    }
    for (int k = 0; k < 4; ++k) g.y[o + k] = r[k] + (g.b ? g.b[o + k] : 0.f);
  }
  for (; o < o1; ++o) {
    float r = 0.f;
    for (int64_t i = 0; i < in; ++i) r += g.w[o * in + i] * x[i];
    g.y[o] = r + (g.b ? g.b[o] : 0.f);
  }
}

// 8 int8 weights at p as floats (one sign-extending load, one conversion)
inline __m256 cvt8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// y[r, o0:o1] = s[o] * (W8[o, :] . x[r, :]) (+ b[o]) for every row r of x, W8 int8 [out, in]: 4 outputs at a
// time, each row of x against those 4 weight rows while they are in L1 (the weights are read from memory
// once; the int8 -> float conversion is repeated per row, so many rows go to `linear_q8`'s sgemm instead).
void dot_rows_q8(const Gemv& g, int64_t o0, int64_t o1) {
  const int64_t in = g.in, ahead = AHEAD_ROWS * in;
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) {
    const int8_t *w0 = g.w8 + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
    for (int64_t r = 0; r < g.rows; ++r) {
      const float* x = g.x + r * in;
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      int64_t i = 0;
      for (; i + 16 <= in; i += 16) {
        if (r == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(w0 + ahead + i), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(w1 + ahead + i), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(w2 + ahead + i), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(w3 + ahead + i), _MM_HINT_T0);
        }
        const __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_fmadd_ps(cvt8(w0 + i + 8), xb, _mm256_fmadd_ps(cvt8(w0 + i), xa, s0));
        s1 = _mm256_fmadd_ps(cvt8(w1 + i + 8), xb, _mm256_fmadd_ps(cvt8(w1 + i), xa, s1));
        s2 = _mm256_fmadd_ps(cvt8(w2 + i + 8), xb, _mm256_fmadd_ps(cvt8(w2 + i), xa, s2));
        s3 = _mm256_fmadd_ps(cvt8(w3 + i + 8), xb, _mm256_fmadd_ps(cvt8(w3 + i), xa, s3));
      }
      float t[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
      for (; i < in; ++i) {
        t[0] += w0[i] * x[i], t[1] += w1[i] * x[i], t[2] += w2[i] * x[i], t[3] += w3[i] * x[i];
      }
      for (int k = 0; k < 4; ++k) g.y[r * g.out + o + k] = g.s[o + k] * t[k] + (g.b ? g.b[o + k] : 0.f);
    }
  }
  for (; o < o1; ++o)
    for (int64_t r = 0; r < g.rows; ++r) {
      float t = 0.f;
      for (int64_t i = 0; i < in; ++i) t += g.w8[o * in + i] * g.x[r * in + i];
      g.y[r * g.out + o] = g.s[o] * t + (g.b ? g.b[o] : 0.f);
    }
}

// Part k of n: [in, out] weights by rows (part 0 into y, with the bias; part k > 0 into its scratch, summed
// by the caller), [out, in] weights by output rows.
void gemv_part(const Gemv& g, int k, int n, float* scratch) {
  if (g.out_in) {
    int64_t o0 = g.out * k / n & ~int64_t(15), o1 = k + 1 == n ? g.out : g.out * (k + 1) / n & ~int64_t(15);
    if (g.w8) dot_rows_q8(g, o0, o1);
    else dot_rows(g, o0, o1);
    return;
  }
  int64_t r0 = g.in * k / n & ~int64_t(3), r1 = k + 1 == n ? g.in : g.in * (k + 1) / n & ~int64_t(3);
  float* acc = k == 0 ? g.y : scratch;
  if (k == 0 && g.b) std::memcpy(acc, g.b, g.out * sizeof(float));
  else std::memset(acc, 0, g.out * sizeof(float));
  axpy_rows(g.x + r0, g.w + r0 * g.out, acc, r1 - r0, g.out);
}

// Workers 1..n-1 of the current call; the caller is part 0. Never destroyed (workers may sleep on its
// condition variable while the process exits); replaced in a forked child, which has no workers.
struct Pool {
  std::mutex busy;  // one call at a time uses the workers; a concurrent caller computes alone
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<uint64_t> epoch{0};
  std::atomic<int> pending{0}, sleepers{0};
  Gemv job{};
  int parts = 1;
  std::vector<std::vector<float>> scratch;  // [part] -> out floats
  int workers = 0;
};
Pool* g_pool = new Pool;

void work(Pool* p, int k, uint64_t seen) {  // seen: the epoch at its creation (it joins the next call)
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    for (int spins = 0; p->epoch.load() == seen; ++spins) {
      if (spins < YIELD_AFTER) _mm_pause();
      else std::this_thread::yield();  // a busy machine: let whatever else is runnable have this core
      if (spins % 64 == 63 && std::chrono::steady_clock::now() - start > SPIN) {
        p->sleepers.fetch_add(1);
        std::unique_lock<std::mutex> lock(p->mu);
        p->cv.wait(lock, [&] { return p->epoch.load() != seen; });
        p->sleepers.fetch_sub(1);
      }
    }
    seen = p->epoch.load();
    if (k < p->parts) gemv_part(p->job, k, p->parts, p->scratch[k].data());
    p->pending.fetch_sub(1);
  }
}

void gemv(const Gemv& g, int64_t threads) {
  const int64_t split = g.out_in ? g.out / 16 : g.in / 4;  // parts must keep their alignment
  const int n = static_cast<int>(std::max<int64_t>(1, std::min({threads, split, int64_t(64)})));
  Pool* p = g_pool;
  std::unique_lock<std::mutex> mine(p->busy, std::try_to_lock);
  if (n == 1 || !mine.owns_lock()) return gemv_part(g, 0, 1, nullptr);  // (or another call holds the workers)
  // a new worker must not take the current epoch for a call: it would run a job still being written
  while (p->workers < n - 1) std::thread(work, p, ++p->workers, p->epoch.load()).detach();
  p->scratch.resize(std::max<size_t>(p->scratch.size(), n));
  for (int k = 1; k < n; ++k) p->scratch[k].resize(g.out);
  p->job = g;
  p->parts = n;
  p->pending.store(p->workers);
  p->epoch.fetch_add(1);  // publishes job and parts to the workers
  if (p->sleepers.load() > 0) {
    std::lock_guard<std::mutex> lock(p->mu);
    p->cv.notify_all();
  }
  gemv_part(g, 0, n, nullptr);
  for (int spins = 0; p->pending.load() > 0; ++spins) {
    if (spins < YIELD_AFTER) _mm_pause();
    else std::this_thread::yield();  // a worker that is not running: give it this core
  }
  if (!g.out_in)
    for (int k = 1; k < n; ++k) {
      const float* s = p->scratch[k].data();
      for (int64_t j = 0; j < g.out; ++j) g.y[j] += s[j];
    }
}

void reset_after_fork() { g_pool = new Pool; }  // the child has none of the parent's workers
const int g_atfork = pthread_atfork(nullptr, nullptr, reset_after_fork);
#endif

// x [rows, in]; w [in, out] (out_in false: GPT-2's Conv1D) or [out, in] (out_in true: nn.Linear, the lm_head);
// b [out] or none; threads: threads for this call. Returns y [rows, out], fp32, contiguous.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, bool out_in,
                  int64_t threads) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, "anno::anno_linear: threads must be in [1, 1024], got ", threads);
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2, "anno::anno_linear: x and w must be 2-D, got ", x.sizes(), " and ",
              w.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat,
              "anno::anno_linear: x and w must be float32");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "anno::anno_linear: x and w must be contiguous");
  const int64_t rows = x.size(0), in = x.size(1), out = out_in ? w.size(0) : w.size(1);
  TORCH_CHECK((out_in ? w.size(1) : w.size(0)) == in, "anno::anno_linear: x has ", in, " columns but w is ",
              w.sizes(), out_in ? " ([out, in])" : " ([in, out])");
  if (b.has_value())
    TORCH_CHECK(b->dim() == 1 && b->size(0) == out && b->scalar_type() == at::kFloat && b->is_contiguous(),
                "anno::anno_linear: b must be contiguous float32 [", out, "], got ", b->sizes());
  // one allocation and plain copies: each extra torch op here costs ~1-2 us of dispatch, 17 calls a step
  at::Tensor y = at::empty({rows, out}, x.options());
  if (rows == 0 || out == 0) return y;
  const float* W = w.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  const float* B = b.has_value() ? b->data_ptr<float>() : nullptr;
  float* Y = y.data_ptr<float>();
#if ANNO_OWN_GEMV
  // On one thread OpenBLAS's sgemv streams large [in, out] weights faster than these kernels: 12x768 at one
  // thread 45.7 vs 38.5 tok/s with all products on them (benchmarks/generate.py's ob_gemv variant,
  // 2026-11-30); small weights (the demo model's) and [out, in] ones (a dot product per output) stay here.
  const bool own = threads > 1 || out_in || in * out < (int64_t(1) << 18);
  if (rows == 1 && own && g_own.load(std::memory_order_relaxed)) {
    gemv(Gemv{X, W, B, Y, in, out, out_in}, threads);
    return y;
  }
#endif
  const float beta = B ? 1.f : 0.f;
  if (B)  // y starts as the bias (beta 1); b itself is never written
    for (int64_t r = 0; r < rows; ++r) std::copy_n(B, out, Y + r * out);
  const ANNO_BLAS_INT ld = out_in ? in : out;
  const int prior = openblas_set_num_threads_local(static_cast<int>(threads));  // this thread's calls only
  if (rows == 1) {
    if (out_in) ANNO_SGEMV(RowMajor, NoTrans, out, in, 1.f, W, ld, X, 1, beta, Y, 1);
    else ANNO_SGEMV(RowMajor, Trans, in, out, 1.f, W, ld, X, 1, beta, Y, 1);
  } else {
    ANNO_SGEMM(RowMajor, NoTrans, out_in ? Trans : NoTrans, rows, out, in, 1.f, X, in, W, ld, beta, Y, out);
  }
  openblas_set_num_threads_local(prior);
  return y;
}

// Rows from which anno_linear_q8 dequantizes the weights and calls at::linear (MKL, on torch's own threads):
// below, its own kernel (which converts every weight once per row) is cheaper than the fp32 copy. Not
// OpenBLAS's sgemm: inside an eager prefill its pool and torch's OpenMP pool took turns spinning (the demo
// model's 23-token prefill 104 ms instead of ~3, 2026-11-30).
constexpr int64_t Q8_DENSE_ROWS = 64;

// y = x @ (W8 * s[:, None]).T (+ b): weight-only int8 (engine/int8.py), W8 int8 [out, in] (nn.Linear's
// layout), s float32 [out]; activations stay float32. Why: a one-row product reads a quarter of the fp32
// bytes, and decoding is memory-bound.
at::Tensor linear_q8(const at::Tensor& x, const at::Tensor& w, const at::Tensor& s, const std::optional<at::Tensor>& b,
                     int64_t threads) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, "anno::anno_linear_q8: threads must be in [1, 1024], got ", threads);
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2, "anno::anno_linear_q8: x and w must be 2-D, got ", x.sizes(), " and ",
              w.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kChar,
              "anno::anno_linear_q8: x must be float32 and w int8");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "anno::anno_linear_q8: x and w must be contiguous");
  const int64_t rows = x.size(0), in = x.size(1), out = w.size(0);
  TORCH_CHECK(w.size(1) == in, "anno::anno_linear_q8: x has ", in, " columns but w is ", w.sizes(), " ([out, in])");
  TORCH_CHECK(s.dim() == 1 && s.size(0) == out && s.scalar_type() == at::kFloat && s.is_contiguous(),
              "anno::anno_linear_q8: scale must be contiguous float32 [", out, "], got ", s.sizes());
  if (b.has_value())
    TORCH_CHECK(b->dim() == 1 && b->size(0) == out && b->scalar_type() == at::kFloat && b->is_contiguous(),
                "anno::anno_linear_q8: b must be contiguous float32 [", out, "], got ", b->sizes());
  at::Tensor y = at::empty({rows, out}, x.options());
  if (rows == 0 || out == 0) return y;
  const int8_t* W8 = w.data_ptr<int8_t>();
  const float* S = s.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  const float* B = b.has_value() ? b->data_ptr<float>() : nullptr;
  float* Y = y.data_ptr<float>();
#if ANNO_OWN_GEMV
  if (rows < Q8_DENSE_ROWS) {
    Gemv g{X, nullptr, B, Y, in, out, true};
    g.w8 = W8, g.s = S, g.rows = rows;
    gemv(g, threads);
    return y;
  }
#endif
  at::Tensor wf = w.to(at::kFloat).mul_(s.unsqueeze(1));  // the fp32 weights, then one GEMM
  return b.has_value() ? at::linear(x, wf, *b) : at::linear(x, wf);
}
}  // namespace

extern "C" {
// The C entry AOTInductor-compiled steps call for anno::anno_linear: as aoti_torch_cpu_anno_linear (the name
// is aoti_torch_<device>_<op name>), which engine/blas_shim.c exports and forwards here.
__attribute__((visibility("default"))) AOTITorchError anno_linear_c(AtenTensorHandle x, AtenTensorHandle w,
                                                                    AtenTensorHandle* b, int32_t out_in,
                                                                    int64_t threads, AtenTensorHandle* ret0) {
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    RECORD_FUNCTION("anno::anno_linear", c10::ArrayRef<const c10::IValue>{});  // seen by torch.profiler
    at::Tensor y = linear(*torch::aot_inductor::tensor_handle_to_tensor_pointer(x),
                          *torch::aot_inductor::tensor_handle_to_tensor_pointer(w),
                          torch::aot_inductor::pointer_to_optional<at::Tensor>(b), out_in != 0, threads);
    *ret0 = torch::aot_inductor::new_tensor_handle(std::move(y));
  });
}

// anno::anno_linear_q8's C entry, as aoti_torch_cpu_anno_linear_q8 (engine/blas_shim.c).
__attribute__((visibility("default"))) AOTITorchError anno_linear_q8_c(AtenTensorHandle x, AtenTensorHandle w,
                                                                       AtenTensorHandle s, AtenTensorHandle* b,
                                                                       int64_t threads, AtenTensorHandle* ret0) {
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    RECORD_FUNCTION("anno::anno_linear_q8", c10::ArrayRef<const c10::IValue>{});
    at::Tensor y = linear_q8(*torch::aot_inductor::tensor_handle_to_tensor_pointer(x),
                             *torch::aot_inductor::tensor_handle_to_tensor_pointer(w),
                             *torch::aot_inductor::tensor_handle_to_tensor_pointer(s),
                             torch::aot_inductor::pointer_to_optional<at::Tensor>(b), threads);
    *ret0 = torch::aot_inductor::new_tensor_handle(std::move(y));
  });
}

// mode 1: one-row products on this file's kernels, 0: on OpenBLAS's sgemv, -1: only ask. Returns the mode
// now in force, or -1 when mode 1 is asked of a build without them (no AVX2 + FMA). For benchmarks/blas.py.
__attribute__((visibility("default"))) int anno_blas_gemv_kernel(int mode) {
  if (mode == 1 && !ANNO_OWN_GEMV) return -1;
  if (mode == 0 || mode == 1) g_own.store(mode);
  return g_own.load();
}
}

TORCH_LIBRARY(anno, m) {
  m.def("anno_linear(Tensor x, Tensor w, Tensor? b, bool out_in, int threads) -> Tensor");
  m.def("anno_linear_q8(Tensor x, Tensor w, Tensor scale, Tensor? b, int threads) -> Tensor");
}
TORCH_LIBRARY_IMPL(anno, CPU, m) {
  m.impl("anno_linear", linear);
  m.impl("anno_linear_q8", linear_q8);
}
