// anno::linear -- y = x @ W (+ b) for the compiled decode step (engine/compiled_step.py), on OpenBLAS.
// Built and loaded by engine/blas.py, which passes the BLAS symbol names it found (ANNO_SGEMV, ANNO_SGEMM,
// ANNO_BLAS_INT) and links the OpenBLAS library numpy ships.
//
// Why not at::addmm (MKL): on this machine's AMD EPYC, MKL 2024.2's one-row sgemm streams the 12x768 model's
// weights at 16.5 GB/s with two threads, OpenBLAS's sgemv at 22.6-24 GB/s (benchmarks/blas.py).
// Threads: OpenBLAS's own pool, `threads` wide for this call (a per-thread setting, restored after). The
// compiled step that calls this op is built with single-threaded kernels (engine/compiled_step.py), so torch's
// OpenMP pool never spins against OpenBLAS's on the same cores: 12x768 at two threads, 53.1 tok/s this way,
// 44.8 with the columns split over torch's OpenMP threads instead, 3.6 with both pools live (2026-11-30).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

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

// x [rows, in]; w [in, out] (out_in false: GPT-2's Conv1D) or [out, in] (out_in true: nn.Linear, the lm_head);
// b [out] or none; threads: OpenBLAS threads for this call. Returns y [rows, out], fp32, contiguous.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, bool out_in,
                  int64_t threads) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, "anno::linear: threads must be in [1, 1024], got ", threads);
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2, "anno::linear: x and w must be 2-D, got ", x.sizes(), " and ",
              w.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat, "anno::linear: x and w must be float32");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "anno::linear: x and w must be contiguous");
  const int64_t rows = x.size(0), in = x.size(1), out = out_in ? w.size(0) : w.size(1);
  TORCH_CHECK((out_in ? w.size(1) : w.size(0)) == in, "anno::linear: x has ", in, " columns but w is ", w.sizes(),
              out_in ? " ([out, in])" : " ([in, out])");
  if (b.has_value())
    TORCH_CHECK(b->dim() == 1 && b->size(0) == out && b->scalar_type() == at::kFloat && b->is_contiguous(),
                "anno::linear: b must be contiguous float32 [", out, "], got ", b->sizes());
  // one allocation and plain copies: each extra torch op here costs ~1-2 us of dispatch, 17 calls a step
  at::Tensor y = at::empty({rows, out}, x.options());
  if (rows == 0 || out == 0) return y;
  const float beta = b.has_value() ? 1.f : 0.f;
  const float* W = w.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  if (b.has_value())  // y starts as the bias (beta 1); b itself is never written
    for (int64_t r = 0; r < rows; ++r) std::copy_n(b->data_ptr<float>(), out, Y + r * out);
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
}  // namespace

TORCH_LIBRARY(anno, m) { m.def("linear(Tensor x, Tensor w, Tensor? b, bool out_in, int threads) -> Tensor"); }
TORCH_LIBRARY_IMPL(anno, CPU, m) { m.impl("linear", linear); }
