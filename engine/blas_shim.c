/* The symbols AOTInductor-compiled decode steps call for anno::anno_linear, anno::anno_linear_q8 and
   anno::anno_attend
   (engine/blas.cpp), forwarding to the op's library. Why a separate library: the steps' libraries find the
   symbols only in the process's global
   scope, and loading the op's library RTLD_GLOBAL put its dependencies (libtorch, OpenBLAS) there too, which
   broke CTranslate2 loaded later in the same process (greedy ids all 2; tests/test_export.py, 2026-11-30).
   This one has no dependencies, so RTLD_GLOBAL adds exactly these symbols. engine/blas.py builds and loads it
   and sets the targets. */
#include <stdint.h>

typedef int32_t (*anno_linear_fn)(void* x, void* w, void** b, int32_t out_in, int64_t threads, void** ret0);
static anno_linear_fn target;

void anno_shim_set(anno_linear_fn fn) { target = fn; }

int32_t aoti_torch_cpu_anno_linear(void* x, void* w, void** b, int32_t out_in, int64_t threads, void** ret0) {
  return target(x, w, b, out_in, threads, ret0);
}

typedef int32_t (*anno_linear_q8_fn)(void* x, void* w, void* s, void** b, int64_t threads, void** ret0);
static anno_linear_q8_fn target_q8;

void anno_shim_set_q8(anno_linear_q8_fn fn) { target_q8 = fn; }

int32_t aoti_torch_cpu_anno_linear_q8(void* x, void* w, void* s, void** b, int64_t threads, void** ret0) {
  return target_q8(x, w, s, b, threads, ret0);
}

typedef int32_t (*anno_attend_fn)(void* q, void* kc, void* vc, void* slot, void* pos, double scale, int64_t threads,
                                  void** ret0);
static anno_attend_fn target_attend;

void anno_shim_set_attend(anno_attend_fn fn) { target_attend = fn; }

int32_t aoti_torch_cpu_anno_attend(void* q, void* kc, void* vc, void* slot, void* pos, double scale, int64_t threads,
                                   void** ret0) {
  return target_attend(q, kc, vc, slot, pos, scale, threads, ret0);
}
