// The kernels of anno::anno_linear (engine/blas.cpp, which includes this file once, inside its anonymous
// namespace, after its constants): the per-call job (`Gemv`), the one-row GEMV kernels for both weight
// layouts, the several-row kernels (`axpy_many` and `rows_panels` for [in, out], `dot_rows_many` for [out, in]
// and int8), and `gemv_part`, which gives part k of n of a call to one of them. engine/blas.cpp owns the
// thread pool, the torch op, its C entries and why the kernels are shaped as they are (measurements there
// and here).
// Needs AHEAD_ROWS; kernels exist only where ANNO_OWN_GEMV (AVX2 + FMA).
#pragma once

struct Gemv {  // y = x @ W (+ b) for `rows` rows of x; W [in, out], or [out, in] when out_in
  const float *x, *w, *b;
  float* y;
  int64_t in, out;
  bool out_in;
  const int8_t* w8 = nullptr;  // int8 weights [out, in] instead of w (anno_linear_q8; then out_in is true)
  const float* s = nullptr;    // their per-output scales
  int64_t rows = 1;            // rows of x and y
  const float* p = nullptr;    // W [out, in] re-laid as 16-column panels (engine/blas.cpp's `packed_for`), or null
};

#if ANNO_OWN_GEMV
// One cache line of each of four weight rows, `at` floats ahead (axpy_rows reads 4 rows at a time).
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

// 8 weights at p as floats: fp32 as they are, int8 with one sign-extending load and one conversion
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// t[k][c] = W[c, :] . x[k, :] for 4 fp32 weight rows at w (w + c * in) and NR rows of x at x (x + k * in):
// 4 * NR accumulators (NR <= 3), each weight vector loaded once for NR rows.
template <int NR>
void dot_block(const float* w, const float* x, int64_t in, float (*t)[4]) {
  __m256 acc[NR][4];
#pragma GCC unroll 3
  for (int k = 0; k < NR; ++k) acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + in + i), w2 = _mm256_loadu_ps(w + 2 * in + i),
                 w3 = _mm256_loadu_ps(w + 3 * in + i);
#pragma GCC unroll 3
    for (int k = 0; k < NR; ++k) {
      const __m256 xv = _mm256_loadu_ps(x + k * in + i);
      acc[k][0] = _mm256_fmadd_ps(w0, xv, acc[k][0]);
      acc[k][1] = _mm256_fmadd_ps(w1, xv, acc[k][1]);
      acc[k][2] = _mm256_fmadd_ps(w2, xv, acc[k][2]);
      acc[k][3] = _mm256_fmadd_ps(w3, xv, acc[k][3]);
    }
  }
  for (int k = 0; k < NR; ++k)
    for (int c = 0; c < 4; ++c) {
      float v = hsum(acc[k][c]);
      for (int64_t j = i; j < in; ++j) v += w[c * in + j] * x[k * in + j];
      t[k][c] = v;
    }
}

// y[r, o0:o1] = s[o] * (W[o, :] . x[r, :]) (+ b[o]) for every row r of x, W [out, in] row-major, fp32 (s null:
// no scale) or int8 (anno_linear_q8), 4 outputs at a time. One row (a decode step): the 4 weight rows are
// streamed once, int8 converted as it is read. Several rows: int8 weight rows are converted once into an
// L1 buffer, then blocks of 3 rows of x run against it (`dot_block`), where converting again for every row
// of x cost more: a 3072x768 int8 product at two threads, 23 rows 1.01-1.05 ms against 1.32-1.36, 63 rows
// 2.6 against 3.7-3.8 (/tmp/s9/q8b.py, 2026-11-30).
template <class T>
void dot_rows_many(const Gemv& g, const T* w, const float* s, int64_t o0, int64_t o1) {
  const int64_t in = g.in;
  thread_local std::vector<float> buf;
  if (!std::is_same_v<T, float> && buf.size() < size_t(4 * in)) buf.resize(4 * in);
  for (int64_t o = o0; o + 4 <= o1; o += 4) {
    const T* w0 = w + o * in;
    const float* wf;
    if constexpr (std::is_same_v<T, float>) {
      wf = w0;
      // the rows AHEAD_ROWS on, read from memory or L3 meanwhile: the demo model's lm_head (8000x128) with 4
      // rows 221-240 us against 396 without (one thread, /tmp/s9/small_rows.py)
      for (int64_t i = 0; i < 4 * in; i += 16)
        _mm_prefetch(reinterpret_cast<const char*>(w0 + AHEAD_ROWS * in + i), _MM_HINT_T0);
    } else {
      for (int64_t i = 0; i < 4 * in; i += 64)
        _mm_prefetch(reinterpret_cast<const char*>(w0 + 4 * in + i), _MM_HINT_T0);  // the next 4 rows
      int64_t i = 0;
      for (; i + 8 <= 4 * in; i += 8) _mm256_storeu_ps(buf.data() + i, load8(w0 + i));
      for (; i < 4 * in; ++i) buf[i] = w0[i];
      wf = buf.data();
    }
    float t[3][4];
    for (int64_t r = 0, nr = 0; r < g.rows; r += nr) {
      const int64_t left = g.rows - r;  // 4 as 2 + 2: a lone row per block is load-bound
      nr = left == 4 ? 2 : std::min<int64_t>(3, left);
      const float* x = g.x + r * in;
      if (nr == 3) dot_block<3>(wf, x, in, t);
      else if (nr == 2) dot_block<2>(wf, x, in, t);
      else dot_block<1>(wf, x, in, t);
      for (int k = 0; k < nr; ++k)
        for (int c = 0; c < 4; ++c)
          g.y[(r + k) * g.out + o + c] = (s ? s[o + c] * t[k][c] : t[k][c]) + (g.b ? g.b[o + c] : 0.f);
    }
  }
}

template <class T>
void dot_rows(const Gemv& g, const T* w, const float* s, int64_t o0, int64_t o1) {
  const int64_t in = g.in, ahead = AHEAD_ROWS * in;
  int64_t o = o0;
  if (g.rows > 1) {
    dot_rows_many(g, w, s, o0, o1);
    o = o0 + (o1 - o0) / 4 * 4;
  }
  for (; g.rows == 1 && o + 4 <= o1; o += 4) {
    const T *w0 = w + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
    const float* x = g.x;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= in; i += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(w0 + ahead + i), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w1 + ahead + i), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w2 + ahead + i), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w3 + ahead + i), _MM_HINT_T0);
      const __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);
      s0 = _mm256_fmadd_ps(load8(w0 + i + 8), xb, _mm256_fmadd_ps(load8(w0 + i), xa, s0));
      s1 = _mm256_fmadd_ps(load8(w1 + i + 8), xb, _mm256_fmadd_ps(load8(w1 + i), xa, s1));
      s2 = _mm256_fmadd_ps(load8(w2 + i + 8), xb, _mm256_fmadd_ps(load8(w2 + i), xa, s2));
      s3 = _mm256_fmadd_ps(load8(w3 + i + 8), xb, _mm256_fmadd_ps(load8(w3 + i), xa, s3));
    }
    float r[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
    for (; i < in; ++i) {
      r[0] += w0[i] * x[i], r[1] += w1[i] * x[i], r[2] += w2[i] * x[i], r[3] += w3[i] * x[i];
    }
    for (int k = 0; k < 4; ++k) g.y[o + k] = (s ? s[o + k] * r[k] : r[k]) + (g.b ? g.b[o + k] : 0.f);
  }
  for (; o < o1; ++o)
    for (int64_t r = 0; r < g.rows; ++r) {
      float t = 0.f;
      for (int64_t i = 0; i < in; ++i) t += w[o * in + i] * g.x[r * in + i];
      g.y[r * g.out + o] = (s ? s[o] * t : t) + (g.b ? g.b[o] : 0.f);
    }
}

// y[r0:r0+NR, j:j+16] = b + x[r0:r0+NR, :] @ P for P the in x 16 panel of W [in, out] at columns j, copied
// contiguous to w: 2*NR accumulators (NR <= 6: 12 of AVX2's 16 registers), each panel line loaded once for
// NR rows of x. (-O2 does not unroll the k loops by itself; rolled, the accumulators lived in memory and the
// 12x768 model's products of 20 rows took 93 ms instead of 64 at two threads.)
template <int NR>
void panel(const Gemv& g, int64_t r0, int64_t j, const float* w, int64_t ws) {
  const int64_t in = g.in, out = g.out;
  const float* x = g.x + r0 * in;
  __m256 a0[NR], a1[NR];
  const __m256 b0 = g.b ? _mm256_loadu_ps(g.b + j) : _mm256_setzero_ps();
  const __m256 b1 = g.b ? _mm256_loadu_ps(g.b + j + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int k = 0; k < NR; ++k) a0[k] = b0, a1[k] = b1;
  for (int64_t i = 0; i < in; ++i, w += ws) {
    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
#pragma GCC unroll 6
    for (int k = 0; k < NR; ++k) {
      const __m256 xv = _mm256_broadcast_ss(x + k * in + i);
      a0[k] = _mm256_fmadd_ps(xv, w0, a0[k]);
      a1[k] = _mm256_fmadd_ps(xv, w1, a1[k]);
    }
  }
#pragma GCC unroll 6
  for (int k = 0; k < NR; ++k) {
    _mm256_storeu_ps(g.y + (r0 + k) * out + j, a0[k]);
    _mm256_storeu_ps(g.y + (r0 + k) * out + j + 8, a1[k]);
  }
}

void panel_rows(const Gemv& g, int64_t r0, int64_t j, const float* w, int64_t ws) {
  switch (std::min<int64_t>(6, g.rows - r0)) {
    case 6: return panel<6>(g, r0, j, w, ws);
    case 5: return panel<5>(g, r0, j, w, ws);
    case 4: return panel<4>(g, r0, j, w, ws);
    case 3: return panel<3>(g, r0, j, w, ws);
    case 2: return panel<2>(g, r0, j, w, ws);
    default: return panel<1>(g, r0, j, w, ws);
  }
}

// acc[r, 0:n] += x[r, 0:4] @ (w[0:n], w[ws:ws + n], w[2ws:..], w[3ws:..]) for the NR rows r of x (ldx apart)
// and acc (ldy apart), n % 8 == 0: the 4 * NR broadcasts stay in registers, and each accumulator vector is
// loaded and stored once for four weight rows (stores were the limit with two).
template <int NR, bool PREFETCH>
void tile4(const float* x, int64_t ldx, const float* w, int64_t ws, float* acc, int64_t ldy, int64_t n) {
  __m256 a[NR][4];
#pragma GCC unroll 2
  for (int k = 0; k < NR; ++k)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) a[k][q] = _mm256_set1_ps(x[k * ldx + q]);
  for (int64_t c = 0; c < n; c += 8) {
    if (PREFETCH && c % 16 == 0) prefetch4(w, w + ws, w + 2 * ws, w + 3 * ws, AHEAD_ROWS * ws + c);
    const __m256 v0 = _mm256_loadu_ps(w + c), v1 = _mm256_loadu_ps(w + ws + c),
                 v2 = _mm256_loadu_ps(w + 2 * ws + c), v3 = _mm256_loadu_ps(w + 3 * ws + c);
#pragma GCC unroll 2
    for (int k = 0; k < NR; ++k) {
      float* p = acc + k * ldy + c;
      __m256 y = _mm256_fmadd_ps(a[k][0], v0, _mm256_loadu_ps(p));
      y = _mm256_fmadd_ps(a[k][1], v1, y);
      y = _mm256_fmadd_ps(a[k][2], v2, y);
      _mm256_storeu_ps(p, _mm256_fmadd_ps(a[k][3], v3, y));
    }
  }
}

// acc[0:rows, :] += x[:, r0:r1] @ W[r0:r1, :] for several rows of x, W [in, out] (acc rows `out` apart): the
// one-row kernel's split (by weight rows, each part streaming its rows of W once, contiguously; the caller
// adds the parts' sums) with every row of x served, two at a time, by each four weight rows while they are in
// L1/L2. 12x768's [in, out] products at two threads, in multiples of their one-row time: 1.15 / 1.14-1.25 /
// 1.88-1.96 at 2 / 4 / 8 rows, against 2.0-2.1 / 2.0-2.4 / 2.8-3.2 on the panel kernel below (which reads each
// weight row as 256-byte pieces a row's length apart). The prefetches go with the first pass's loads: issued
// all at once before it (768 for a 3072-wide row) they gave 1.11 / 1.48 / 2.37. Tiling the columns (256 /
// 1024 / 2048 at a time, so the accumulators stay in L1) was slower too (/tmp/s10/rows.py, 2026-11-30).
void axpy_many(const Gemv& g, int64_t r0, int64_t r1, float* acc) {
  const int64_t in = g.in, out = g.out, vec = out & ~int64_t(7);
  int64_t i = r0;
  for (; i + 4 <= r1; i += 4) {
    const float* w0 = g.w + i * out;
    int64_t r = 0;  // the first pass over these weight rows prefetches the ones AHEAD_ROWS on, as it goes
    for (; r + 2 <= g.rows; r += 2)
      r ? tile4<2, false>(g.x + r * in + i, in, w0, out, acc + r * out, out, vec)
        : tile4<2, true>(g.x + r * in + i, in, w0, out, acc + r * out, out, vec);
    if (r < g.rows)
      r ? tile4<1, false>(g.x + r * in + i, in, w0, out, acc + r * out, out, vec)
        : tile4<1, true>(g.x + r * in + i, in, w0, out, acc + r * out, out, vec);
  }
  for (int64_t r = 0; r < g.rows; ++r)  // the last weight rows (in % 4) and columns (out % 8)
    for (int64_t k = r0; k < r1; ++k)
      for (int64_t c = k < i ? vec : 0; c < out; ++c) acc[r * out + c] += g.x[r * in + k] * g.w[k * out + c];
}

// Below this many weights (1 MB, in cache), up to 6 rows read the panels straight from W: the demo model's
// products of 4 rows at one thread took 11-22 us so against 27-35 with the copy (/tmp/s9/small_rows.py).
constexpr int64_t SMALL_PANEL_WEIGHTS = int64_t(1) << 18;
constexpr int64_t GROUP = 4;  // panels copied per pass over W's rows: 256 contiguous bytes of each row

// y[:, c0:c1] = x @ W[:, c0:c1] (+ b) for several rows of x, W [in, out]: 16 columns (a panel) at a time. Each
// group of GROUP panels is first copied from W (GROUP * 64 contiguous bytes per weight row, rows `out` floats
// apart) into contiguous buffers (GROUP * in * 64 bytes: 192 KB for in = 768, in L2), and every block of 6
// rows of x then reads those. So the weights are read from memory once however many rows there are, and
// only the columns this thread computes are copied (OpenBLAS's sgemm repacks all of W per call). Reading
// 64-byte lines straight from W (a new page every line) was as slow for each later block of rows as for the
// first: 12x768's products of 20 rows 89 ms at two threads, against 47-59 so (sgemm 55-68, MKL 56-87 in the
// same runs, /tmp/s9_rows.py, 2026-11-30, a noisy machine).
void rows_panels(const Gemv& g, int64_t c0, int64_t c1) {
  thread_local std::vector<float> buf;
  const int64_t in = g.in, out = g.out;
  if (buf.size() < size_t(in * 16 * GROUP)) buf.resize(in * 16 * GROUP);
  int64_t j = c0;
  if (g.rows <= 6 && in * out < SMALL_PANEL_WEIGHTS)  // one block of rows over weights in cache: read W itself
    for (; j + 16 <= c1; j += 16) panel_rows(g, 0, j, g.w + j, out);
  while (j + 16 <= c1) {
    const int64_t n = std::min<int64_t>(GROUP, (c1 - j) / 16);  // panels in this group
    const float* w = g.w + j;
    float* d = buf.data();
    for (int64_t i = 0; i < in; ++i, w += out) {
      _mm_prefetch(reinterpret_cast<const char*>(w + AHEAD_ROWS * out), _MM_HINT_T0);
      for (int64_t p = 0; p < n; ++p) {
        _mm256_storeu_ps(d + (p * in + i) * 16, _mm256_loadu_ps(w + 16 * p));
        _mm256_storeu_ps(d + (p * in + i) * 16 + 8, _mm256_loadu_ps(w + 16 * p + 8));
      }
    }
    for (int64_t p = 0; p < n; ++p)
      for (int64_t r = 0; r < g.rows; r += 6) panel_rows(g, r, j + 16 * p, d + p * in * 16, 16);
    j += 16 * n;
  }
  for (; j < c1; ++j)
    for (int64_t r = 0; r < g.rows; ++r) {
      float t = g.b ? g.b[j] : 0.f;
      for (int64_t i = 0; i < in; ++i) t += g.x[r * in + i] * g.w[i * out + j];
      g.y[r * out + j] = t;
    }
}

// y[0, j:j+64] = b + x[0, :] @ 4 packed panels at w (each in x 16, contiguous, one after another): 8
// accumulators, so one row is not held up by one FMA chain per panel (panel<1> waits on its two).
void packed_row4(const Gemv& g, int64_t j, const float* w) {
  const int64_t in = g.in;
  const float *w0 = w, *w1 = w + 16 * in, *w2 = w + 32 * in, *w3 = w + 48 * in;
  __m256 a[8];
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) a[q] = g.b ? _mm256_loadu_ps(g.b + j + 8 * q) : _mm256_setzero_ps();
  for (int64_t i = 0; i < in; ++i, w0 += 16, w1 += 16, w2 += 16, w3 += 16) {
    const __m256 xv = _mm256_broadcast_ss(g.x + i);
    a[0] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0), a[0]);
    a[1] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + 8), a[1]);
    a[2] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1), a[2]);
    a[3] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + 8), a[3]);
    a[4] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2), a[4]);
    a[5] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + 8), a[5]);
    a[6] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3), a[6]);
    a[7] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + 8), a[7]);
  }
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) _mm256_storeu_ps(g.y + j + 8 * q, a[q]);
}

// y[:, c0:c1] = x @ W[c0:c1, :].T (+ b) from the packed panels g.p (c0, c1 multiples of 16): panel p holds
// W[16p:16p+16, :] transposed, in x 16 contiguous, so every panel line is one 64-byte read and no output
// needs a horizontal sum (dot_rows' dot products of in = 128 spend about as long on their sums as on the
// FMAs). Several rows: panel<NR> over 6 rows at a time; one row: packed_row4.
void packed_panels(const Gemv& g, int64_t c0, int64_t c1) {
  const int64_t in = g.in;
  int64_t j = c0;
  if (g.rows == 1)
    for (; j + 64 <= c1; j += 64) packed_row4(g, j, g.p + j * in);
  for (; j + 16 <= c1; j += 16)
    for (int64_t r = 0; r < g.rows; r += 6) panel_rows(g, r, j, g.p + j * in, 16);
}

// Part k of n. [out, in] weights: by output rows. [in, out] weights, one row of x: by weight rows (part 0 into
// y, with the bias; part k > 0 into its scratch, summed by the caller); several rows: by output columns.
// Whether a call is split by output columns (the panel and dot kernels) rather than by weight rows (the axpy
// kernels). Small [in, out] weights (in cache) keep the panel kernel for several rows: the demo model's 4-row
// products 0.185 vs 0.224 ms on axpy_many (2 rows 0.177 vs 0.149, 8 rows level; /tmp/s10/rows.py).
inline bool by_columns(const Gemv& g) {
  return g.out_in || (g.rows > 1 && (g.rows > g_axpy_rows.load(std::memory_order_relaxed) ||
                                     g.in * g.out < SMALL_PANEL_WEIGHTS));
}

void gemv_part(const Gemv& g, int k, int n, float* scratch) {
  if (by_columns(g)) {
    int64_t o0 = g.out * k / n & ~int64_t(15), o1 = k + 1 == n ? g.out : g.out * (k + 1) / n & ~int64_t(15);
    if (g.w8) dot_rows(g, g.w8, g.s, o0, o1);
    else if (g.p) packed_panels(g, o0, o1);
    else if (g.out_in) dot_rows(g, g.w, static_cast<const float*>(nullptr), o0, o1);
    else rows_panels(g, o0, o1);
    return;
  }
  int64_t r0 = g.in * k / n & ~int64_t(3), r1 = k + 1 == n ? g.in : g.in * (k + 1) / n & ~int64_t(3);
  float* acc = k == 0 ? g.y : scratch;
  for (int64_t r = 0; r < g.rows; ++r)
    if (k == 0 && g.b) std::memcpy(acc + r * g.out, g.b, g.out * sizeof(float));
    else std::memset(acc + r * g.out, 0, g.out * sizeof(float));
  if (g.rows == 1) axpy_rows(g.x + r0, g.w + r0 * g.out, acc, r1 - r0, g.out);
  else axpy_many(g, r0, r1, acc);
}
#endif  // ANNO_OWN_GEMV
