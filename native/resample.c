/*
 * The polyphase resampler's hot loops in C, for plugins/resample/polyphase.ts (loaded through Deno FFI from
 * native/build/libvoxresample.so, which scripts/build_native.sh builds).
 *
 * Each function does what the function of the same name in plugins/resample/kernel.wat does, on the same memory
 * (the WebAssembly instance's, passed as `mem`; every other argument is the byte offset or count the WebAssembly
 * function takes), and gives the same floats, bit for bit: every output is computed with the same multiplies and adds
 * in the same order. Only how many outputs run side by side differs:
 *
 * - fir, fir1: an output is the dot product of `taps` inputs (a multiple of 16) with one row of coefficients. The
 *   WebAssembly loop keeps four float32x4 sums, a0..a3, for taps 16i + 0..3, 4..7, 8..11, 12..15, and ends with
 *   s = (a0 + a1) + (a2 + a3), out = (s0 + s1) + (s2 + s3). Here one 16-lane vector holds a0..a3 (lane 4q + l is
 *   a_q's lane l), so each lane does the same multiply and add as before, on one AVX-512 register (or two AVX2, or
 *   four SSE ones: `target_clones` picks the widest the CPU has, at load time), and the end is the same sums. Four
 *   outputs are in flight at a time (four sharing one coefficient row when a call makes 4 L outputs or more, else two
 *   pairs sharing theirs, or four neighbours with their own).
 * - hb: the half-band decimator's outputs are independent; here sixty-four are made at a time (four vectors), then
 *   sixteen, then one by one, instead of eight, four and one, each with the same operations in the same order.
 * - split: copies.
 *
 * Built with -ffp-contract=off (never a fused multiply-add, whose single rounding would differ) and without
 * -ffast-math (no reassociation, no flush-to-zero): the float semantics are WebAssembly's, IEEE 754 single precision
 * rounded to nearest. tests/resample_native_test.ts compares the outputs with the WebAssembly kernel's.
 */
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

/* The helpers below pass 16-lane vectors by value; they are always inlined into the functions that target_clones
 * compiles for each instruction set, so no call ever uses the (per-ISA) vector calling convention GCC warns about. */
#pragma GCC diagnostic ignored "-Wpsabi"
#define INLINE static inline __attribute__((always_inline))

/* One body per instruction set, chosen at load time; VOXPIPE_SINGLE_ISA builds one, for the flags given
 * (scripts/build_native.sh --isa, for the test that runs every body). */
#ifdef VOXPIPE_SINGLE_ISA
#define CLONES
#else
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

INLINE v16 ld16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

INLINE void st16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* x in every lane: one broadcast (a compound literal of sixteen x's became sixteen masked inserts per call). */
INLINE v16 splat(float x) {
  const v16 v = {x};
  return __builtin_shuffle(v, (v16i){0});
}

/* kernel.wat's end of a dot product: s = (a0 + a1) + (a2 + a3) lane by lane, then (s0 + s1) + (s2 + s3). */
INLINE float reduce(v16 a) {
  float s0 = (a[0] + a[4]) + (a[8] + a[12]);
  float s1 = (a[1] + a[5]) + (a[9] + a[13]);
  float s2 = (a[2] + a[6]) + (a[10] + a[14]);
  float s3 = (a[3] + a[7]) + (a[11] + a[15]);
  return (s0 + s1) + (s2 + s3);
}

/*
 * reduce() of four sums at once, as vectors (the same additions: a float sum does not depend on the order of its two
 * terms, only on which terms are added first). u = a + a's lanes four up gives a0 + a1 in lanes 0..3 and a2 + a3 in
 * lanes 8..11; gathering those of the four sums and adding gives the four s vectors side by side; two more
 * adds of neighbours give (s0 + s1) + (s2 + s3) in lanes 0, 4, 8, 12.
 */
INLINE void reduce4(v16 a, v16 b, v16 c, v16 d, float *oa, float *ob, float *oc, float *od) {
  const v16i up4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
  v16 ua = a + __builtin_shuffle(a, up4);
  v16 ub = b + __builtin_shuffle(b, up4);
  v16 uc = c + __builtin_shuffle(c, up4);
  v16 ud = d + __builtin_shuffle(d, up4);
  /* [ua 0..3, ua 8..11, ub 0..3, ub 8..11] and the same of uc, ud. */
  const v16i pick = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  v16 ab = __builtin_shuffle(ua, ub, pick);
  v16 cd = __builtin_shuffle(uc, ud, pick);
  /* The a0 + a1 parts and the a2 + a3 parts of all four, then s = their sum. */
  const v16i lo = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  const v16i hi = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  v16 sv = __builtin_shuffle(ab, cd, lo) + __builtin_shuffle(ab, cd, hi);
  const v16i next1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
  v16 t = sv + __builtin_shuffle(sv, next1); /* s0 + s1 in lane 4k, s2 + s3 in lane 4k + 2 */
  const v16i next2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
  v16 w = t + __builtin_shuffle(t, next2);
  *oa = w[0];
  *ob = w[4];
  *oc = w[8];
  *od = w[12];
}

/* Σ x[k] × h[k] for k < taps (a multiple of 16), summed as kernel.wat's fir sums it. */
INLINE float dot(const float *x, const float *h, int32_t taps) {
  v16 a = splat(0.0f);
  for (int32_t k = 0; k < taps; k += 16) a += ld16(x + k) * ld16(h + k);
  return reduce(a);
}

/* Two outputs that share their coefficients (one load of each for both). */
INLINE void dot2(const float *x, const float *y, const float *h, int32_t taps, float *ox, float *oy) {
  v16 a = splat(0.0f), b = splat(0.0f);
  for (int32_t k = 0; k < taps; k += 16) {
    v16 c = ld16(h + k);
    a += ld16(x + k) * c;
    b += ld16(y + k) * c;
  }
  *ox = reduce(a);
  *oy = reduce(b);
}

/* Four outputs at once: x with h, y with g, u with f, v with e (four independent sums in flight). */
INLINE void dot4(const float *x, const float *h, const float *y, const float *g, const float *u, const float *f,
                 const float *v, const float *e, int32_t taps, float *ox, float *oy, float *ou, float *ov) {
  v16 a = splat(0.0f), b = splat(0.0f), c = splat(0.0f), d = splat(0.0f);
  for (int32_t k = 0; k < taps; k += 16) {
    a += ld16(x + k) * ld16(h + k);
    b += ld16(y + k) * ld16(g + k);
    c += ld16(u + k) * ld16(f + k);
    d += ld16(v + k) * ld16(e + k);
  }
  reduce4(a, b, c, d, ox, oy, ou, ov);
}

/* Four outputs sharing one row of coefficients: x, x + step, x + 2 step, x + 3 step with h (one load of h for four). */
INLINE void dot4s(const float *x, int32_t step, const float *h, int32_t taps, float *o0, float *o1, float *o2,
                  float *o3) {
  v16 a = splat(0.0f), b = splat(0.0f), c = splat(0.0f), d = splat(0.0f);
  for (int32_t k = 0; k < taps; k += 16) {
    v16 w = ld16(h + k);
    a += ld16(x + k) * w;
    b += ld16(x + step + k) * w;
    c += ld16(x + 2 * step + k) * w;
    d += ld16(x + 3 * step + k) * w;
  }
  reduce4(a, b, c, d, o0, o1, o2, o3);
}

/* kernel.wat's fir: the polyphase filter, exact phases. State at st: input index, phase (int32 each). */
CLONES int32_t vp_fir(uint8_t *mem, int32_t st, int32_t x, int32_t avail, int32_t coef, int32_t taps, int32_t L,
                      int32_t si, int32_t sf, int32_t out, int32_t max) {
  int32_t *state = (int32_t *)(mem + st);
  int32_t idx = state[0], ph = state[1];
  const float *in = (const float *)(mem + x);
  const float *co = (const float *)(mem + coef);
  float *o = (float *)(mem + out);
  const int32_t lim = avail - taps;
  const int32_t M = si * L + sf; /* input samples per L outputs */
  int32_t n = 0;
  while (n < max && idx <= lim) {
    if (n + 4 * L <= max && idx + 4 * M <= lim) {
      /* 4L outputs as L quadruples (j, j + L, j + 2L, j + 3L): the same phase, M inputs apart. A pass of
       * OFFLINE_PASS_FRAMES gives 44.1 -> 8 kHz's last stage (L = 320) 2 972 outputs: two of these rounds. */
      for (int32_t j = 0; j < L; j++) {
        dot4s(in + idx, M, co + (int64_t)ph * taps, taps, o + n + j, o + n + j + L, o + n + j + 2 * L,
              o + n + j + 3 * L);
        idx += si;
        ph += sf;
        if (ph >= L) {
          ph -= L;
          idx += 1;
        }
      }
      idx += 3 * M;
      n += 4 * L;
      continue;
    }
    if (n + 2 * L <= max && idx + 2 * M <= lim) {
      /* 2L outputs as L pairs (j, j + L): the same phase, M inputs apart; two pairs at a time. */
      int32_t j = 0;
      for (; j + 1 < L; j += 2) {
        int32_t idx2 = idx + si, ph2 = ph + sf;
        if (ph2 >= L) {
          ph2 -= L;
          idx2 += 1;
        }
        const float *h = co + (int64_t)ph * taps, *g = co + (int64_t)ph2 * taps;
        dot4(in + idx, h, in + idx + M, h, in + idx2, g, in + idx2 + M, g, taps, o + n + j, o + n + j + L,
             o + n + j + 1, o + n + j + 1 + L);
        idx = idx2 + si;
        ph = ph2 + sf;
        if (ph >= L) {
          ph -= L;
          idx += 1;
        }
      }
      if (j < L) {
        dot2(in + idx, in + idx + M, co + (int64_t)ph * taps, taps, o + n + j, o + n + j + L);
        idx += si;
        ph += sf;
        if (ph >= L) {
          ph -= L;
          idx += 1;
        }
      }
      idx += M;
      n += 2 * L;
      continue;
    }
    if (n + 4 <= max) {
      /* Four neighbours, each with its own phase's row, when the fourth's input is there. */
      int32_t i[4], q[4];
      i[0] = idx;
      q[0] = ph;
      for (int k = 1; k < 4; k++) {
        i[k] = i[k - 1] + si;
        q[k] = q[k - 1] + sf;
        if (q[k] >= L) {
          q[k] -= L;
          i[k] += 1;
        }
      }
      if (i[3] <= lim) {
        dot4(in + i[0], co + (int64_t)q[0] * taps, in + i[1], co + (int64_t)q[1] * taps, in + i[2],
             co + (int64_t)q[2] * taps, in + i[3], co + (int64_t)q[3] * taps, taps, o + n, o + n + 1, o + n + 2,
             o + n + 3);
        n += 4;
        idx = i[3] + si;
        ph = q[3] + sf;
        if (ph >= L) {
          ph -= L;
          idx += 1;
        }
        continue;
      }
    }
    o[n++] = dot(in + idx, co + (int64_t)ph * taps, taps);
    idx += si;
    ph += sf;
    if (ph >= L) {
      ph -= L;
      idx += 1;
    }
  }
  state[0] = idx;
  state[1] = ph;
  return n;
}

/* kernel.wat's fir1: one phase (L = 1). State at st: input index. */
CLONES int32_t vp_fir1(uint8_t *mem, int32_t st, int32_t x, int32_t avail, int32_t coef, int32_t taps, int32_t si,
                       int32_t out, int32_t max) {
  int32_t *state = (int32_t *)(mem + st);
  int32_t idx = state[0];
  const float *in = (const float *)(mem + x);
  const float *co = (const float *)(mem + coef);
  float *o = (float *)(mem + out);
  const int32_t lim = avail - taps;
  int32_t n = 0;
  while (n + 3 < max && idx + 3 * si <= lim) {
    dot4(in + idx, co, in + idx + si, co, in + idx + 2 * si, co, in + idx + 3 * si, co, taps, o + n, o + n + 1,
         o + n + 2, o + n + 3);
    n += 4;
    idx += 4 * si;
  }
  while (n + 1 < max && idx + si <= lim) {
    dot2(in + idx, in + idx + si, co, taps, o + n, o + n + 1);
    n += 2;
    idx += 2 * si;
  }
  if (n < max && idx <= lim) {
    o[n++] = dot(in + idx, co, taps);
    idx += si;
  }
  state[0] = idx;
  return n;
}

/* kernel.wat's split: e[i] = src[2i], o[i] = src[2i + 1] for n samples (an odd last one goes to e). */
CLONES void vp_split(uint8_t *mem, int32_t src, int32_t n, int32_t e, int32_t o) {
  const float *s = (const float *)(mem + src);
  float *pe = (float *)(mem + e);
  float *po = (float *)(mem + o);
  int32_t i = 0;
  const v16i even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  const v16i odd = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  for (; 2 * i + 32 <= n; i += 16) {
    v16 a = ld16(s + 2 * i), b = ld16(s + 2 * i + 16);
    st16(pe + i, __builtin_shuffle(a, b, even));
    st16(po + i, __builtin_shuffle(a, b, odd));
  }
  for (; 2 * i + 1 < n; i++) {
    pe[i] = s[2 * i];
    po[i] = s[2 * i + 1];
  }
  if (2 * i < n) pe[i] = s[2 * i];
}

/*
 * kernel.wat's hb: the half-band decimator by 2, y = c0 × e[m] + Σ_{i < P} c_{i+1} × (o[m + i] + o[m − 1 − i]), the
 * P + 1 coefficients at coef each splatted over 16 bytes. State at st: m.
 */
CLONES int32_t vp_hb(uint8_t *mem, int32_t st, int32_t e, int32_t o, int32_t no, int32_t coef, int32_t p, int32_t out,
                     int32_t max) {
  int32_t *state = (int32_t *)(mem + st);
  int32_t m = state[0];
  const float *pe = (const float *)(mem + e);
  const float *po = (const float *)(mem + o);
  const float *c = (const float *)(mem + coef);
  float *y = (float *)(mem + out);
  const int32_t lim = no - p;
  int32_t n = 0;
  while (n + 64 <= max && m + 63 <= lim) {
    /* Four vectors of sixteen: four independent sums in flight. */
    v16 c0 = splat(c[0]);
    v16 a0 = c0 * ld16(pe + m), a1 = c0 * ld16(pe + m + 16), a2 = c0 * ld16(pe + m + 32), a3 = c0 * ld16(pe + m + 48);
    for (int32_t i = 0; i < p; i++) {
      v16 ci = splat(c[4 * (i + 1)]);
      const float *f = po + m + i, *b = po + m - 1 - i;
      a0 += ci * (ld16(f) + ld16(b));
      a1 += ci * (ld16(f + 16) + ld16(b + 16));
      a2 += ci * (ld16(f + 32) + ld16(b + 32));
      a3 += ci * (ld16(f + 48) + ld16(b + 48));
    }
    st16(y + n, a0);
    st16(y + n + 16, a1);
    st16(y + n + 32, a2);
    st16(y + n + 48, a3);
    n += 64;
    m += 64;
  }
  while (n + 16 <= max && m + 15 <= lim) {
    v16 acc = splat(c[0]) * ld16(pe + m);
    for (int32_t i = 0; i < p; i++) acc += splat(c[4 * (i + 1)]) * (ld16(po + m + i) + ld16(po + m - 1 - i));
    st16(y + n, acc);
    n += 16;
    m += 16;
  }
  while (n < max && m <= lim) {
    float s = c[0] * pe[m];
    for (int32_t i = 0; i < p; i++) s += c[4 * (i + 1)] * (po[m + i] + po[m - 1 - i]);
    y[n++] = s;
    m++;
  }
  state[0] = m;
  return n;
}

/* a = b2 (1 - u^2), u = j / span: the window's series variable at point j. */
static inline double kaiser_a(int32_t j, int32_t span, double b2) {
  double u = (double)j / (double)span;
  return b2 * (1.0 - u * u);
}

/* The term a point with series variable a needs: the smallest n with a <= limit[n] (the limits increasing), searched
 * from the previous point's n (a falls as j grows). */
static inline int32_t kaiser_n(double a, int32_t n, const double *limit) {
  while (n > 0 && a <= limit[n - 1]) n--;
  while (a > limit[n]) n++;
  return n;
}

/*
 * A windowed-sinc stage's coefficient table: kernel.wat's kaiser_proto over the whole grid, then its kaiser_rows (the
 * same float64 operations in the same order, so the same table, bit for bit; tests/resample_native_test.ts compares
 * them). Compiled ahead, its loops take ~0.6 ms for 44.1 -> 8 kHz's 320 rows (the call 2.3-2.9 ms in a fresh process,
 * the memory touched for the first time), where the WebAssembly functions, run once at start-up in their baseline
 * code, took 6-13 ms.
 *
 * Memory at `mem`: the I0 series' nterms terms (float64, highest power last) at `terms`, its nterms limits after them;
 * the prototype, span + 1 float64, at `proto`; one row of scratch, taps float64, at `row`; the table, rows x taps
 * float32, at `dst`. Point j of the prototype: c2 sinc_j w_j / i0b, sinc_j = s_j / (th j) (1 at j = 0) with s_j by
 * the recurrence s_j = k2 s_j-1 - s_j-2 (s_0 = 0, s_1 = sin1), w_j the series in a = b2 (1 - u^2), u = j / span,
 * summed by Horner's rule from the smallest n with a <= limit[n]. Row r, tap k: proto[|r + (half - 1 - k) d|] (0 from
 * span on), divided by the row's sum and rounded to float32.
 */
void vp_kaiser_table(uint8_t *mem, int32_t proto, int32_t span, double th, double sin1, double k2, double c2,
                     double i0b, double b2, int32_t terms, int32_t nterms, int32_t rows, int32_t taps, int32_t half,
                     int32_t d, int32_t row, int32_t dst) {
  double *p = (double *)(mem + proto);
  const double *t = (const double *)(mem + terms);
  const double *limit = t + nterms;
  /* c2 sinc_j, point by point (the recurrence runs from one to the next). */
  double prev = 0.0, cur = 0.0;
  for (int32_t j = 0; j < span; j++) {
    if (j == 1) cur = sin1;
    if (j > 1) {
      double next = k2 * cur - prev;
      prev = cur;
      cur = next;
    }
    p[j] = c2 * (j > 0 ? cur / (th * (double)j) : 1.0);
  }
  /* The windows, four points at a time as four independent Horner chains (one chain, up to 41 multiply-adds long, is
   * latency-bound alone), as kaiser_proto does: a point whose n is below the group's largest, m, adds +0 while m is
   * above its n, so its sum stays +0 until m = n, where it becomes 0 a + T[n] = T[n] exactly (a >= 0): the sum the
   * point alone would make. */
  int32_t n = nterms - 1;
  int32_t j = 0;
  for (; j + 4 <= span; j += 4) {
    double a[4];
    int32_t nn[4], m = 0;
    for (int q = 0; q < 4; q++) {
      a[q] = kaiser_a(j + q, span, b2);
      n = kaiser_n(a[q], n, limit);
      nn[q] = n;
      if (n > m) m = n;
    }
    double w0 = 0.0, w1 = 0.0, w2 = 0.0, w3 = 0.0;
    for (; m >= 0; m--) {
      const double tm = t[m];
      w0 = w0 * a[0] + (m <= nn[0] ? tm : 0.0);
      w1 = w1 * a[1] + (m <= nn[1] ? tm : 0.0);
      w2 = w2 * a[2] + (m <= nn[2] ? tm : 0.0);
      w3 = w3 * a[3] + (m <= nn[3] ? tm : 0.0);
    }
    p[j] = (p[j] * w0) / i0b;
    p[j + 1] = (p[j + 1] * w1) / i0b;
    p[j + 2] = (p[j + 2] * w2) / i0b;
    p[j + 3] = (p[j + 3] * w3) / i0b;
  }
  for (; j < span; j++) {
    double a = kaiser_a(j, span, b2);
    n = kaiser_n(a, n, limit);
    double w = t[n];
    for (int32_t m = n - 1; m >= 0; m--) w = w * a + t[m];
    p[j] = (p[j] * w) / i0b;
  }
  p[span] = 0.0;
  double *scratch = (double *)(mem + row);
  float *out = (float *)(mem + dst);
  for (int32_t r = 0; r < rows; r++) {
    double sum = 0.0;
    for (int32_t k = 0; k < taps; k++) {
      int32_t j = r + (half - 1 - k) * d;
      if (j < 0) j = -j;
      double v = j < span ? p[j] : 0.0;
      scratch[k] = v;
      sum += v;
    }
    for (int32_t k = 0; k < taps; k++) *out++ = (float)(scratch[k] / sum);
  }
}

/* Which implementation target_clones chose: 3 AVX-512, 2 AVX2, 1 the baseline (SSE2). */
int32_t vp_resample_isa(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 3;
  if (__builtin_cpu_supports("avx2")) return 2;
  return 1;
}
