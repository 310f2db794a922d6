/* What the C kernel (_ckernel.c) and the chunk tally (_ctally.c) share: the CPU clones, the
float32 exp and log1p their vectorised loops call, and a binary head's row of float32 logits. */

#ifndef XENT_CMATH_H
#define XENT_CMATH_H

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define XENT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define XENT_CLONES
#endif

/* For the functions whose float arithmetic must equal numpy's operation for operation (their numpy
   twins are tested bit for bit): no fused multiply-add. GCC contracts a * b + c into one FMA
   wherever the target has it (aarch64, -march=native, -mfma), which rounds once instead of twice. */
#if defined(__GNUC__) && !defined(__clang__)
#define XENT_EXACT __attribute__((optimize("fp-contract=off")))
#else
#define XENT_EXACT
#endif
#if defined(__clang__)
#define XENT_EXACT_BODY _Pragma("clang fp contract(off)")
#else
#define XENT_EXACT_BODY
#endif

/* exp(s) for s <= 0 (s = z - max z); 0 below -87 (under ln(FLT_MIN)). Cephes expf: s = n ln2 + r,
   |r| <= ln2/2, exp(r) = 1 + r + r^2 P(r). Branch-free, so that the loops calling it vectorise. */
static inline float exp_nonpositive_f32(float s) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const float keep = s >= -87.0f ? 1.0f : 0.0f;
    const float x = s >= -87.0f ? s : -87.0f;
    const float n = (x * log2e + 0x1.8p23f) - 0x1.8p23f; /* round to nearest */
    float r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f * keep;
}

/* log(1 + x) for x >= 0 in float, branch-free: Goldberg's log(u) * x / (u - 1) with u = 1 + x
   ("What every computer scientist should know about floating-point arithmetic", Theorem 4) over
   Cephes' logf (relative error < 1e-7). */
static inline float log1p_nonnegative_f32(float x) {
    const float u = 1.0f + x;
    union { float f; int32_t i; } bits = {.f = u};
    float e = (float)(((bits.i >> 23) & 0xff) - 126);
    bits.i = (bits.i & 0x007fffff) | 0x3f000000; /* mantissa in [0.5, 1) */
    const float small = bits.f < 0.707106781186547524f ? 1.0f : 0.0f;
    e -= small;
    const float m = bits.f + bits.f * small - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    const float log_u = m + y + 0.693359375f * e;
    const float d = u - 1.0f;
    return d == 0.0f ? x : log_u * (x / (d == 0.0f ? 1.0f : d));
}

/* A binary head's row: the float32 logit x with the 0/1 label y, scored as the two-class kernel
   scores the row [0, x] (narrow_f32's arithmetic): with e = exp(−|x|) (float), the loss
   log1p(e) − (x_y − max(x, 0)), p_true = exp(x_y − max(x, 0) − log1p(e)), p_max = 1/(1 + e),
   log_norm = max(x, 0) + log1p(e), and pred = x ≥ cut (binary.binary_stats' rule). In three
   stages, which binary_logit_row runs in turn and the one pass (xent_binary_tally_f32) runs as
   three loops over a block, so that the float stages vectorise on float lanes only:
   binary_logit_float gives e and log1p(e); binary_logit_rest the rest but p_true, for which it
   gives the float argument of its exp. */
static inline __attribute__((always_inline)) void binary_logit_float(float x, float *e, float *log1p_e) {
    *e = exp_nonpositive_f32(-(x < 0.0f ? -x : x));
    *log1p_e = log1p_nonnegative_f32(*e);
}

static inline __attribute__((always_inline)) void binary_logit_rest(float x, int64_t y, float cut, float e, float log1p_e, double *loss,
                                                                    float *p_true_arg, double *p_max, double *log_norm, int64_t *pred) {
    const float top = x > 0.0f ? x : 0.0f;
    const double lse = (double)log1p_e;
    const double s_y = (double)(y == 1 ? x : 0.0f) - (double)top;
    *loss = lse - s_y;
    *p_true_arg = (float)(s_y - lse);
    *p_max = 1.0 / (1.0 + (double)e);
    *log_norm = (double)top + lse;
    *pred = x >= cut;
}

static inline __attribute__((always_inline)) void binary_logit_row(float x, int64_t y, float cut, double *loss, double *p_true,
                                                                   double *p_max, double *log_norm, int64_t *pred) {
    float e, log1p_e, p_true_arg;
    binary_logit_float(x, &e, &log1p_e);
    binary_logit_rest(x, y, cut, e, log1p_e, loss, &p_true_arg, p_max, log_norm, pred);
    *p_true = (double)exp_nonpositive_f32(p_true_arg);
}

#endif
