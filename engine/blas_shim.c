/* The symbol AOTInductor-compiled decode steps call for anno::anno_linear (engine/blas.cpp), forwarding to the
   op's library. Why a separate library: the steps' libraries find the symbol only in the process's global
   scope, and loading the op's library RTLD_GLOBAL put its dependencies (libtorch, OpenBLAS) there too, which
   broke CTranslate2 loaded later in the same process (greedy ids all 2; tests/test_export.py, 2026-11-30).
   This one has no dependencies, so RTLD_GLOBAL adds exactly this symbol. engine/blas.py builds and loads it
   and sets the target. */
#include <stdint.h>

typedef int32_t (*anno_linear_fn)(void* x, void* w, void** b, int32_t out_in, int64_t threads, void** ret0);
static anno_linear_fn target;

void anno_shim_set(anno_linear_fn fn) { target = fn; }

int32_t aoti_torch_cpu_anno_linear(void* x, void* w, void** b, int32_t out_in, int64_t threads, void** ret0) {
  return target(x, w, b, out_in, threads, ret0);
}
