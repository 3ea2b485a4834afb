// Attention of the compiled decode step over its KV cache (anno::anno_attend, engine/blas.cpp): for every row r
// and head h, softmax(scale * q . K[slot r, h, 0..pos r]) @ V[slot r, h, 0..pos r]. Included by engine/blas.cpp.
//
// Why not inductor's own fused kernel (engine/step_package.py's explicit softmax, the step before 2026-12-01): it
// runs on one thread (the packages that call the op are compiled single-threaded), strided, and over the whole
// cache width whatever the rows' lengths. Measured on the 12x768 model, 8-slot package of width 128, keys at
// position 60, a slow day of this 2-core machine (13 GB/s copies; /tmp/s11/ab.py): a step of 1 row 29.1 ms with
// it against 26.1 with attention left out, 4 rows 43.9 against 35.0. This reads each row's keys and values
// once, up to its own position, on the op's workers.

struct Attn {
  const float* q;        // [rows, heads * hd], row stride q_row (a view of the fused qkv product)
  int64_t q_row;
  const float *k, *v;    // caches [slots, heads, width, hd], contiguous
  const int64_t *slot, *pos;  // [rows]: the cache slot and the position (keys 0..pos) of each row
  int64_t rows, heads, width, hd;
  float scale;
  float* o;              // [rows, heads * hd], contiguous
};

#if ANNO_OWN_GEMV
inline float dot8(const float* a, const float* b, int64_t n) {  // n a multiple of 8
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  if (i < n) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  return hsum(_mm256_add_ps(s0, s1));  // engine/blas_kernels.h's
}

// o[0..8R) = inv * sum_j s[j] * V[j, 0..8R): R registers of outputs over all keys, V read in order.
template <int R>
inline void values_block(const float* V, const float* s, int64_t len, int64_t hd, float inv, float* o) {
  __m256 acc[R];
  for (int t = 0; t < R; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t j = 0; j < len; ++j) {
    const __m256 w = _mm256_set1_ps(s[j]);
    for (int t = 0; t < R; ++t) acc[t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(V + j * hd + 8 * t), acc[t]);
  }
  const __m256 m = _mm256_set1_ps(inv);
  for (int t = 0; t < R; ++t) _mm256_storeu_ps(o + 8 * t, _mm256_mul_ps(acc[t], m));
}
#endif

// Pairs (row, head) k, k + n, k + 2n, ... of the call (part k of n): interleaved, so rows of different lengths
// spread over the parts.
inline void attn_part(const Attn& a, int k, int n) {
  thread_local std::vector<float> score;
  score.resize(a.width);
  float* s = score.data();
  const int64_t hd = a.hd;
  for (int64_t i = k; i < a.rows * a.heads; i += n) {
    const int64_t r = i / a.heads, h = i % a.heads, len = a.pos[r] + 1;
    const float* q = a.q + r * a.q_row + h * hd;
    const int64_t base = (a.slot[r] * a.heads + h) * a.width * hd;
    const float *K = a.k + base, *V = a.v + base;
    float* o = a.o + (r * a.heads + h) * hd;
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < len; ++j) {
      float t;
#if ANNO_OWN_GEMV
      if (hd % 8 == 0) t = dot8(q, K + j * hd, hd);
      else
#endif
      {
        t = 0.f;
        for (int64_t d = 0; d < hd; ++d) t += q[d] * K[j * hd + d];
      }
      s[j] = t * a.scale;
      top = std::max(top, s[j]);
    }
    float total = 0.f;
    for (int64_t j = 0; j < len; ++j) total += (s[j] = std::exp(s[j] - top));
    const float inv = 1.f / total;
    std::memset(o, 0, hd * sizeof(float));
    int64_t d0 = 0;
#if ANNO_OWN_GEMV
    for (; d0 + 64 <= hd; d0 += 64) values_block<8>(V + d0, s, len, hd, inv, o + d0);
    for (; d0 + 32 <= hd; d0 += 32) values_block<4>(V + d0, s, len, hd, inv, o + d0);  // the demo model's 32
    for (; d0 + 8 <= hd; d0 += 8) values_block<1>(V + d0, s, len, hd, inv, o + d0);
#endif
    for (int64_t j = 0; j < len && d0 < hd; ++j)
      for (int64_t d = d0; d < hd; ++d) o[d] += s[j] * V[j * hd + d];
    for (int64_t d = d0; d < hd; ++d) o[d] *= inv;
  }
}
