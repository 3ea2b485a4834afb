// anno::anno_linear -- y = x @ W (+ b) for the compiled decode step (engine/compiled_step.py). Built and
// loaded by engine/blas.py, which passes the BLAS symbol names it found (ANNO_SGEMV, ANNO_SGEMM,
// ANNO_BLAS_INT), links the OpenBLAS library numpy ships and compiles for this CPU (-march=native).
//
// One row (a decode step of one sequence: the case that decides tokens/s) runs on this file's own GEMV
// kernels, split over `threads` threads: the caller and threads-1 workers of a small pool that spin between
// calls, then sleep. Several rows (a prompt, a batched step) up to g_own_rows run on own kernels on the same
// pool (2..g_axpy_rows rows of [in, out] weights on `axpy_many`, split by weight rows like one row; more, and
// [out, in] weights, split by columns: `rows_panels`, `dot_rows_many`), more on OpenBLAS's sgemm (its blocked
// kernels win there).
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
// The compiled step's own kernels are single-threaded (engine/step_package.py), so no torch OpenMP pool spins
// against these workers. Ahead-of-time compiled steps call aoti_torch_cpu_anno_linear directly (no proxy
// executor: engine/step_package.py declares it; engine/blas_shim.c says why it goes through a second library).
// anno::anno_attend, the step's attention over its KV cache, runs on the same workers (engine/blas_attention.h).
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/inductor/aoti_torch/utils.h>
#include <torch/library.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "blas_package.h"  // step_load, step_run, step_free (its own includes: outside any namespace)

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
std::atomic<int64_t> g_own_rows{48};  // products of 2..this many rows on own kernels, more on OpenBLAS sgemm
// [in, out] products of 2..this many rows on axpy_many, more on the panel kernel: 12x768's products of 12 /
// 16 / 24 rows 23.8 / 28.8 / 43.1 ms on axpy_many against 30.6 / 32.6 / 36.7 (/tmp/s10/rows_big.py)
std::atomic<int64_t> g_axpy_rows{16};

#include "blas_kernels.h"  // Gemv, the kernels and gemv_part
#include "blas_attention.h"  // Attn and attn_part

#if ANNO_OWN_GEMV
// Workers 1..n-1 of the current call; the caller is one more. A call is cut into `parts` parts that the caller
// and the workers claim from one ticket counter, so the caller does every part no worker has started: a call
// never waits for a worker that the scheduler has not run yet. Why: with a fixed part per thread, a woken
// worker that Linux placed on the caller's own core (2 vCPUs here) held the caller up for a time slice: the
// demo model's one-row step 3.2-4.2 ms instead of 0.15-0.2, the 23-row prompt 3.5-5.7 ms instead of 0.6-1.2,
// after a pause of 10-300 ms (2026-12-01, /tmp/s12/pre.py, 2 runs). Never destroyed (workers may sleep on
// its condition variable while the process exits); replaced in a forked child, which has no workers.
struct Pool {
  std::mutex busy;  // one call at a time uses the workers; a concurrent caller computes alone
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<uint64_t> epoch{0};
  // (parts << 32) | next part: one fetch_add claims a part and reads the call's part count consistently; a
  // claim past the count claims nothing. The caller's store of (parts << 32) publishes the call's job.
  std::atomic<uint64_t> ticket{0};
  std::atomic<int> done{0}, sleepers{0};
  std::atomic<bool> park{false};  // workers sleep at once instead of spinning (OpenBLAS's threads run next)
  Gemv job{};
  Attn attn{};
  bool attending = false;  // the call's job: attn (attn_part) rather than job (gemv_part)
  std::vector<std::vector<float>> scratch;  // [part] -> out floats
  int workers = 0;
};
Pool* g_pool = new Pool;

// Claims and runs parts of the current call until none is left.
void run_parts(Pool* p) {
  for (;;) {
    const uint64_t t = p->ticket.fetch_add(1);
    const int parts = static_cast<int>(t >> 32), k = static_cast<int>(t & 0xffffffffu);
    if (k >= parts) return;
    if (p->attending) attn_part(p->attn, k, parts);
    else gemv_part(p->job, k, parts, k == 0 ? nullptr : p->scratch[k].data());
    p->done.fetch_add(1);
  }
}

void work(Pool* p, uint64_t seen) {  // seen: the epoch at its creation (it joins the next call)
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    for (int spins = 0; p->epoch.load() == seen; ++spins) {
      if (spins < YIELD_AFTER) _mm_pause();
      else std::this_thread::yield();  // a busy machine: let whatever else is runnable have this core
      if (spins % 64 == 63 && (p->park.load() || std::chrono::steady_clock::now() - start > SPIN)) {
        p->sleepers.fetch_add(1);
        std::unique_lock<std::mutex> lock(p->mu);
        p->cv.wait(lock, [&] { return p->epoch.load() != seen; });
        p->sleepers.fetch_sub(1);
      }
    }
    seen = p->epoch.load();
    run_parts(p);
  }
}

// Runs the call's job (written by the caller, which holds p->busy) in n parts on the caller and workers
// 1..n-1 (starting any missing); returns when every part is done.
void run_on_pool(Pool* p, int n) {
  // a new worker must not take the current epoch for a call: it would run a job still being written
  while (p->workers < n - 1) {
    std::thread(work, p, p->epoch.load()).detach();
    ++p->workers;
  }
  p->park.store(false);
  p->done.store(0);
  p->ticket.store(static_cast<uint64_t>(n) << 32);  // publishes job, attn, attending and scratch
  p->epoch.fetch_add(1);
  if (p->sleepers.load() > 0) {
    std::lock_guard<std::mutex> lock(p->mu);
    p->cv.notify_all();
  }
  run_parts(p);
  // only parts a running worker has claimed are left
  for (int spins = 0; p->done.load() < n; ++spins) {
    if (spins < YIELD_AFTER) _mm_pause();
    else std::this_thread::yield();  // a worker that was preempted mid-part: give it this core
  }
}

void gemv(const Gemv& g, int64_t threads) {
  const bool by_out = by_columns(g);
  const int64_t split = by_out ? g.out / 16 : g.in / 4;  // parts must keep their alignment
  const int n = static_cast<int>(std::max<int64_t>(1, std::min({threads, split, int64_t(64)})));
  Pool* p = g_pool;
  std::unique_lock<std::mutex> mine(p->busy, std::try_to_lock);
  if (n == 1 || !mine.owns_lock()) return gemv_part(g, 0, 1, nullptr);  // (or another call holds the workers)
  p->scratch.resize(std::max<size_t>(p->scratch.size(), n));
  for (int k = 1; k < n; ++k) p->scratch[k].resize(g.out * g.rows);
  p->job = g;
  p->attending = false;
  run_on_pool(p, n);
  if (!by_out)
    for (int k = 1; k < n; ++k) {
      const float* s = p->scratch[k].data();
      for (int64_t j = 0; j < g.out * g.rows; ++j) g.y[j] += s[j];
    }
}

void attend_on_pool(const Attn& a, int64_t threads) {
  const int n = static_cast<int>(std::max<int64_t>(1, std::min({threads, a.rows * a.heads, int64_t(64)})));
  Pool* p = g_pool;
  std::unique_lock<std::mutex> mine(p->busy, std::try_to_lock);
  if (n == 1 || !mine.owns_lock()) return attn_part(a, 0, 1);
  p->attn = a;
  p->attending = true;
  run_on_pool(p, n);
}

// Before OpenBLAS's own threads run (sgemm of many rows): workers spinning against them took turns with them
// (the demo model's 64-row prompt on two threads 7.8 ms against 3.3 on one, 2026-12-01, /tmp/s12/pre.py).
void park_workers() { g_pool->park.store(true); }

// Packed copies of small [out, in] fp32 weights (the tied lm_head: the demo model's 8000x128), as 16-column
// panels for `packed_panels`, made on first use and kept for PACK_ENTRIES weights. Why: the [out, in] kernels
// (dot_rows) end every output with a horizontal sum, which at in = 128 costs about as much as its FMAs; from
// panels the products need none. The demo model's lm_head at two threads, alone (/tmp/s14_lm.py, medians of 3 x
// 200 calls, 2026-12-01): 1 row 33.1 -> 29.4 us, 2 rows 62.4 -> 44.1, 4 rows 101.8 -> 82.0, 8 rows 172 -> 97.5.
// A copy is used only while it is provably the weights': the same storage (held weakly, so a freed tensor's
// memory reused by another fails the check), data pointer, shape and version counter (every in-place write,
// an optimizer step or load_state_dict, bumps it); else it is made again. Inference tensors have no version
// counter and are not packed. Up to PACK_MAX_FLOATS weights (16 MB): 12x768's 8000x768 (24.6 MB, from memory)
// took the same time in either layout at 1-8 rows in the same runs, so a copy would only cost memory.
constexpr int64_t PACK_MAX_FLOATS = int64_t(1) << 22;
constexpr size_t PACK_ENTRIES = 4;
struct Packed {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage;
  const float* data;
  int64_t in, out, version;
  std::shared_ptr<const std::vector<float>> panels;
};
std::mutex g_pack_mu;
std::vector<Packed> g_packs;  // least recently used first
std::atomic<int> g_pack{1};   // 0: never pack (anno_blas_pack, for benchmarks and the equality test)

std::shared_ptr<const std::vector<float>> packed_for(const at::Tensor& w, int64_t in, int64_t out) {
  if (!g_pack.load(std::memory_order_relaxed) || out % 16 || in * out > PACK_MAX_FLOATS || w.is_inference() ||
      !w.has_storage())
    return nullptr;
  const float* data = w.data_ptr<float>();
  const int64_t version = w._version();
  const c10::StorageImpl* impl = w.storage().unsafeGetStorageImpl();
  std::lock_guard<std::mutex> lock(g_pack_mu);
  // copies of freed weights (a model the app unloaded) go at once rather than when four newer ones push them out
  g_packs.erase(std::remove_if(g_packs.begin(), g_packs.end(), [](const Packed& p) { return p.storage.expired(); }),
                g_packs.end());
  for (auto it = g_packs.begin(); it != g_packs.end(); ++it) {
    if (it->data != data || it->in != in || it->out != out) continue;
    if (it->version == version && it->storage.lock().get() == impl) {
      std::rotate(it, it + 1, g_packs.end());  // most recently used last
      return g_packs.back().panels;
    }
    g_packs.erase(it);  // the weights changed, or this memory is another tensor's now
    break;
  }
  auto panels = std::make_shared<std::vector<float>>(in * out);
  float* d = panels->data();
  for (int64_t j = 0; j < out; j += 16)  // panel j / 16: d[(j + c) ... ] = W[j + c, i] at d[j * in + i * 16 + c]
    for (int64_t c = 0; c < 16; ++c)
      for (int64_t i = 0; i < in; ++i) d[j * in + i * 16 + c] = data[(j + c) * in + i];
  if (g_packs.size() >= PACK_ENTRIES) g_packs.erase(g_packs.begin());
  g_packs.push_back(Packed{w.storage().getWeakStorageImpl(), data, in, out, version, panels});
  return panels;
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
  // the packed copy of a small [out, in] weight, held until this call returns (another call may drop it from
  // the cache meanwhile)
  const auto packed = out_in && rows <= g_own_rows.load(std::memory_order_relaxed) ? packed_for(w, in, out) : nullptr;
  if (rows == 1 && own && g_own.load(std::memory_order_relaxed)) {
    Gemv g{X, W, B, Y, in, out, out_in};
    g.p = packed ? packed->data() : nullptr;
    gemv(g, threads);
    return y;
  }
  // Several rows (a prompt, a batched step) on the own panel kernels too, with the same rule for one thread
  // (OpenBLAS's sgemm was as fast or faster there on large [in, out] weights: 12x768, 20 rows, 61-67 vs 71-106
  // ms) and up to g_own_rows rows (from 64, sgemm's blocking wins: 86-102 vs 128-162 ms at two threads).
  if (rows > 1 && own && rows <= g_own_rows.load(std::memory_order_relaxed)) {
    Gemv g{X, W, B, Y, in, out, out_in};
    g.rows = rows;
    g.p = packed ? packed->data() : nullptr;
    gemv(g, threads);
    return y;
  }
#endif
  const float beta = B ? 1.f : 0.f;
  if (B)  // y starts as the bias (beta 1); b itself is never written
    for (int64_t r = 0; r < rows; ++r) std::copy_n(B, out, Y + r * out);
  const ANNO_BLAS_INT ld = out_in ? in : out;
#if ANNO_OWN_GEMV
  if (threads > 1) park_workers();
#endif
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

// q [rows, heads * hd] (any row stride, unit column stride: a view of the qkv product); kc, vc [slots, heads,
// width, hd] contiguous float32 caches holding this call's keys already; slot, pos [rows] int64. Returns o [rows,
// heads * hd]: each row's attention over its slot's keys 0..pos (engine/blas_attention.h).
at::Tensor attend(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, const at::Tensor& slot,
                  const at::Tensor& pos, double scale, int64_t threads) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, "anno::anno_attend: threads must be in [1, 1024], got ", threads);
  TORCH_CHECK(kc.dim() == 4 && kc.sizes() == vc.sizes(), "anno::anno_attend: kc and vc must be [slots, heads, "
              "width, hd] alike, got ", kc.sizes(), " and ", vc.sizes());
  TORCH_CHECK(kc.scalar_type() == at::kFloat && vc.scalar_type() == at::kFloat && q.scalar_type() == at::kFloat,
              "anno::anno_attend: q, kc and vc must be float32");
  TORCH_CHECK(kc.is_contiguous() && vc.is_contiguous(), "anno::anno_attend: kc and vc must be contiguous");
  const int64_t slots = kc.size(0), heads = kc.size(1), width = kc.size(2), hd = kc.size(3);
  TORCH_CHECK(q.dim() == 2 && q.size(1) == heads * hd && q.stride(1) == 1, "anno::anno_attend: q must be [rows, ",
              heads * hd, "] with unit column stride, got ", q.sizes(), " strides ", q.strides());
  const int64_t rows = q.size(0);
  for (const at::Tensor* t : {&slot, &pos})
    TORCH_CHECK(t->dim() == 1 && t->size(0) == rows && t->scalar_type() == at::kLong && t->is_contiguous(),
                "anno::anno_attend: slot and pos must be contiguous int64 [", rows, "], got ", t->sizes());
  const int64_t* S = slot.data_ptr<int64_t>();
  const int64_t* P = pos.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    TORCH_CHECK(S[r] >= 0 && S[r] < slots && P[r] >= 0 && P[r] < width, "anno::anno_attend: row ", r, " has slot ",
                S[r], " (slots ", slots, ") and pos ", P[r], " (width ", width, ")");
  at::Tensor o = at::empty({rows, heads * hd}, q.options());
  if (rows == 0) return o;
  const Attn a{q.data_ptr<float>(), q.stride(0), kc.data_ptr<float>(), vc.data_ptr<float>(), S, P, rows, heads,
               width, hd, static_cast<float>(scale), o.data_ptr<float>()};
#if ANNO_OWN_GEMV
  attend_on_pool(a, threads);
#else
  attn_part(a, 0, 1);
#endif
  return o;
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

// anno::anno_attend's C entry, as aoti_torch_cpu_anno_attend (engine/blas_shim.c).
__attribute__((visibility("default"))) AOTITorchError anno_attend_c(AtenTensorHandle q, AtenTensorHandle kc,
                                                                    AtenTensorHandle vc, AtenTensorHandle slot,
                                                                    AtenTensorHandle pos, double scale,
                                                                    int64_t threads, AtenTensorHandle* ret0) {
  AOTI_TORCH_CONVERT_EXCEPTION_TO_ERROR_CODE({
    RECORD_FUNCTION("anno::anno_attend", c10::ArrayRef<const c10::IValue>{});
    using torch::aot_inductor::tensor_handle_to_tensor_pointer;
    at::Tensor o = attend(*tensor_handle_to_tensor_pointer(q), *tensor_handle_to_tensor_pointer(kc),
                          *tensor_handle_to_tensor_pointer(vc), *tensor_handle_to_tensor_pointer(slot),
                          *tensor_handle_to_tensor_pointer(pos), scale, threads);
    *ret0 = torch::aot_inductor::new_tensor_handle(std::move(o));
  });
}

// mode 1: one-row products on this file's kernels, 0: on OpenBLAS's sgemv, -1: only ask. Returns the mode
// now in force, or -1 when mode 1 is asked of a build without them (no AVX2 + FMA). For benchmarks/blas.py.
__attribute__((visibility("default"))) int anno_blas_gemv_kernel(int mode) {
  if (mode == 1 && !ANNO_OWN_GEMV) return -1;
  if (mode == 0 || mode == 1) g_own.store(mode);
  return g_own.load();
}

// Products of 2..rows rows on this file's kernels, more on OpenBLAS's sgemm (rows >= 1; -1: only ask). Returns
// the setting now in force. For benchmarks/blas.py.
__attribute__((visibility("default"))) int64_t anno_blas_own_rows(int64_t rows) {
  if (rows >= 1 && ANNO_OWN_GEMV) g_own_rows.store(rows);
  return ANNO_OWN_GEMV ? g_own_rows.load() : 1;
}

// mode 1: small [out, in] weights on packed copies (packed_for), 0: never (and drop the copies), -1: only ask.
// Returns the mode now in force (0 in a build without own kernels). For benchmarks and tests.
__attribute__((visibility("default"))) int anno_blas_pack(int mode) {
#if ANNO_OWN_GEMV
  if (mode == 0 || mode == 1) g_pack.store(mode);
  if (mode == 0) {
    std::lock_guard<std::mutex> lock(g_pack_mu);
    g_packs.clear();
  }
  return g_pack.load();
#else
  return 0;
#endif
}

// [in, out] products of 2..rows rows on axpy_many, more on the panel kernel (rows >= 1; -1: only ask). Returns
// the setting now in force. For benchmarks/blas.py.
__attribute__((visibility("default"))) int64_t anno_blas_axpy_rows(int64_t rows) {
  if (rows >= 1) g_axpy_rows.store(rows);
  return g_axpy_rows.load();
}
}

TORCH_LIBRARY(anno, m) {
  m.def("anno_linear(Tensor x, Tensor w, Tensor? b, bool out_in, int threads) -> Tensor");
  m.def("anno_linear_q8(Tensor x, Tensor w, Tensor scale, Tensor? b, int threads) -> Tensor");
  m.def("anno_attend(Tensor q, Tensor kc, Tensor vc, Tensor slot, Tensor pos, float scale, int threads) -> Tensor");
  m.def("step_load(str path, str[] names, Tensor[] constants) -> int", step_load);
  m.def("step_run(int id, Tensor[] inputs) -> Tensor[]", step_run);
  m.def("step_free(int id) -> ()", step_free);
}
TORCH_LIBRARY_IMPL(anno, CPU, m) {
  m.impl("anno_linear", linear);
  m.impl("anno_linear_q8", linear_q8);
  m.impl("anno_attend", attend);
}
