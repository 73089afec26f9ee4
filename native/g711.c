/*
 * G.711 loops in C, for plugins/g711/tables.ts (loaded through Deno FFI from native/build/libvoxg711.so, which
 * scripts/build_native.sh builds), which calls them for long frames (a transcode's one-second frames; a call's 20 ms
 * frames stay in JavaScript, whose loop costs less than loading a library).
 *
 * Each gives what the tables in tables.ts give, byte for byte: the decoder reads the caller's 256-entry table; the
 * encoders compute the code from the segment arithmetic the tables are filled from (a 64 KB table read sample by
 * sample is slower than this arithmetic, which the compiler turns into vector code). The arithmetic is integer only,
 * so every body target_clones makes computes the same bytes. tests/g711_native_test.ts compares the encoders with
 * the tables on all 65 536 samples, and the decoder on all 256 codes, in the shipped build and in one built for each
 * narrower instruction set.
 */
#include <stdint.h>

/* One body per instruction set, chosen at load time (AVX-512 and AVX2 encode 16 and 8 samples per instruction);
 * VOXPIPE_SINGLE_ISA builds one, for the flags given (scripts/build_native.sh --isa, for the test of every body). */
#ifdef VOXPIPE_SINGLE_ISA
#define CLONES
#else
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

/*
 * The sample count, in a struct passed by value (in a register, as an int would be): Deno compiles a fast-call
 * trampoline for each FFI function with scalar and pointer parameters only, ~2.5 ms for a process's first and ~0.3 ms
 * for each after (Cranelift), and a struct parameter spares it that. These functions are called once per long frame
 * (a few hundred times per transcode): the generic call path, ~1 µs, costs less. See plugins/g711/_native_g711.ts.
 */
typedef struct {
  int32_t n;
} vp_count;

/* |x|, at most `clip` (inlined into each encoder's loop, which the compiler vectorizes). */
static inline int32_t magnitude(int32_t x, int32_t clip) {
  int32_t mag = x < 0 ? -x : x;
  return mag > clip ? clip : mag;
}

/*
 * μ-law: the magnitude, clipped at 32 635 and biased by 0x84, is in [(16 + m) << (e + 3), (17 + m) << (e + 3)) for
 * segment e and mantissa m; the code is ~(sign | e << 4 | m), the sign bit 0x80 for negative samples. The biased
 * magnitude is at least 0x84 (bit 7 set), so its top bit, 31 - clz, is 7 + e.
 */
CLONES void vp_mulaw_encode(const int16_t *in, uint8_t *out, vp_count count) {
  const int32_t n = count.n;
  for (int32_t i = 0; i < n; i++) {
    int32_t x = in[i];
    int32_t a = magnitude(x, 32635) + 0x84;
    int32_t e = 24 - __builtin_clz((uint32_t)a);
    int32_t m = (a >> (e + 3)) & 15;
    out[i] = (uint8_t)~((x < 0 ? 0x80 : 0) | (e << 4) | m);
  }
}

/*
 * A-law: the magnitude, clipped at 32 767, is in [m << 4, (m + 1) << 4) for segment 0 and in
 * [(16 + m) << (e + 3), (17 + m) << (e + 3)) for segment e > 0; the code is (e << 4 | m) XOR 0x55 for negative
 * samples and XOR 0xD5 for the others. ORed with 0xFF, a magnitude below 256 has its top bit at 7 (segment 0), one
 * above at 7 + e.
 */
CLONES void vp_alaw_encode(const int16_t *in, uint8_t *out, vp_count count) {
  const int32_t n = count.n;
  for (int32_t i = 0; i < n; i++) {
    int32_t x = in[i];
    int32_t mag = magnitude(x, 32767);
    int32_t e = 24 - __builtin_clz((uint32_t)mag | 0xff);
    int32_t m = (mag >> (e == 0 ? 4 : e + 3)) & 15;
    out[i] = (uint8_t)(((e << 4) | m) ^ (x < 0 ? 0x55 : 0xd5));
  }
}

/* Either law: out[i] = table[in[i]], with the caller's decode table (256 samples). */
CLONES void vp_g711_decode(const uint8_t *in, int16_t *out, vp_count count, const int16_t *table) {
  const int32_t n = count.n;
  for (int32_t i = 0; i < n; i++) out[i] = table[in[i]];
}
