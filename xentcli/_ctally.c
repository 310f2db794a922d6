/* The chunk tally: one pass over a chunk's per-sample results for what the aggregates and the
diagnostics count. Mirrors xentcli/tally.py (_tally_numpy and RowMasks in diagnostics.py), which
stays the reference and the fallback; tests/test_tally.py checks that both agree on every field.

Per counted row (a usable label and a finite loss): count, min and max of the loss (its sums are
accumulate.LossMoments', exact, over blocks of rows), correct predictions, top-k hits, the five per-class sums, and the row's quantile-sketch key
ceil(log(loss) / log_gamma). Per row: how many rows each per-row diagnostic rule flags, the
largest |score| among overflow-risk rows, and the range of the integer labels. For the two ranked
rules (loss outliers by loss, confident mistakes by p_max) it keeps the EXAMPLES rows with the
largest key (ties to the lower row) that diagnose_chunk shows as examples. Called through
ctypes with the two structs below (their layout is declared again in xentcli/native.py). */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_cmath.h"

enum { KIND_LOGITS = 0, KIND_PROBS = 1, KIND_LOG_PROBS = 2 };
enum { EXAMPLES = 5 }; /* MAX_EXAMPLES in xentcli/diagnostics.py */
enum { RANKED_OUTLIER, RANKED_CONFIDENT, N_RANKED }; /* RANKED_CODES in xentcli/tally.py */

/* The rules, in the order of the registry's tallied rules (xentcli/diagnostics/rules.py, RULE_CODES
   in tally.py); RULE_ORDER names them, and native.py compares it with the registry at load. */
enum {
    NAN_SCORES, INF_SCORES, OVERFLOW, PROBS_AS_LOGITS, LOGITS_AS_PROBS, LOG_PROBS, CONSTANT,
    ZERO_PROBABILITY, NOT_LOG_PROBS, MASKED, LABEL_OUT_OF_RANGE, NOT_INTEGER, IGNORED, NONFINITE_LOSS,
    OUTLIER, CONFIDENT, N_RULES
};
static const char RULE_ORDER[] =
    "XE101 XE102 XE103 XE104 XE105 XE106 XE107 XE108 XE110 XE111 XE201 XE203 XE208 XE401 XE402 XE404";

typedef struct {
    int64_t n, num_classes, top_k, kind;
    int64_t off_rules; /* bit r set: rule r counts nothing (a sigmoid head: the rules about softmax rows) */
    const double *loss, *p_true, *p_max, *top, *bottom, *log_norm; /* bottom, log_norm: may be NULL */
    const int64_t *label, *pred, *rank;
    const uint8_t *label_is_int, *label_ok, *ignored;
    double log_gamma, min_indexable, overflow_limit, probs_tolerance, log_probs_tolerance, outlier, confident;
    double not_log_probs_tolerance;
} xent_tally_in;

typedef struct {
    int64_t counted, correct, top_k_hits, keys, zeros, negatives;
    int64_t int_labels, label_min, label_max, at_num_classes;
    int64_t hits[N_RULES];
    int64_t ranked_rows[N_RANKED][EXAMPLES], ranked_count[N_RANKED]; /* the example rows, best first */
    double loss_min, loss_max, max_abs;
    /* [num_classes] each, zeroed by the caller; all NULL: no per-class sums (many classes) */
    int64_t *support, *class_correct, *predicted;
    double *class_loss, *class_p_true;
    int32_t *key_out; /* [n]: the sketch keys of the counted positive losses, in row order */
} xent_tally_out;

/* The layout xentcli/native.py declares with ctypes, compared when the library is loaded: a struct
   or constant changed on one side only makes xent refuse the library (and use numpy), never misread
   memory. */
const char *xent_tally_rules(void) { return RULE_ORDER; }

int64_t xent_tally_layout(int64_t *out) {
    out[0] = (int64_t)sizeof(xent_tally_in);
    out[1] = (int64_t)sizeof(xent_tally_out);
    out[2] = N_RULES;
    out[3] = N_RANKED;
    out[4] = EXAMPLES;
    return 5;
}

#define BLOCK 256 /* rows per step: the keys of a block are computed (vectorised) before it is tallied */
#define LANES_SUM 8 /* the lanes of a block's two-class sums (count_block) */
typedef double lanes __attribute__((vector_size(LANES_SUM * sizeof(double))));
typedef int64_t lane_mask __attribute__((vector_size(LANES_SUM * sizeof(int64_t))));

/* log(x) for a finite x > 0, branch-free so that the loop calling it vectorises: fdlibm's
   __ieee754_log (x = 2^k (1 + f), log(1 + f) = 2s + s R(s^2) with s = f / (2 + f)), error < 1 ulp;
   a subnormal x is taken as x·2^64 (exact), its exponent 64 less. */
static inline double log_positive(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01, lg3 = 2.857142874366239149e-01,
                 lg4 = 2.222219843214978396e-01, lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01,
                 lg7 = 1.479819860511658591e-01;
    const int32_t subnormal = x < 0x1p-1022 ? 64 : 0;
    union { double d; uint64_t u; } bits = {.d = subnormal ? x * 0x1p64 : x};
    /* the mantissa scaled into [sqrt(2)/2, sqrt(2)), k the matching exponent */
    const uint64_t top = (bits.u & 0x000fffffffffffffULL) + 0x95f6400000000ULL; /* carries past sqrt(2) */
    const int32_t k = (int32_t)(bits.u >> 52) - 1023 - subnormal + (int32_t)(top >> 52); /* int32: AVX2 converts it */
    bits.u = (bits.u & 0x000fffffffffffffULL) | ((top >> 52) ? 0x3fe0000000000000ULL : 0x3ff0000000000000ULL);
    const double f = bits.d - 1.0, dk = (double)k;
    const double s = f / (2.0 + f), z = s * s, w = z * z;
    const double t1 = w * (lg2 + w * (lg4 + w * lg6)), t2 = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)));
    const double hfsq = 0.5 * f * f;
    return dk * ln2_hi - ((hfsq - (s * (hfsq + t1 + t2) + dk * ln2_lo)) - f);
}

/* The EXAMPLES rows with the largest keys seen so far, best first. Rows arrive in increasing
   order, so a key equal to the last one kept loses: ties go to the lower row. */
typedef struct {
    double key[EXAMPLES];
    int64_t row[EXAMPLES], count;
} ranked;

static inline void rank_row(ranked *r, double key, int64_t row) {
    if (r->count == EXAMPLES && !(key > r->key[EXAMPLES - 1])) return;
    int64_t at = r->count < EXAMPLES ? r->count++ : EXAMPLES - 1;
    for (; at > 0 && key > r->key[at - 1]; at--) r->key[at] = r->key[at - 1], r->row[at] = r->row[at - 1];
    r->key[at] = key, r->row[at] = row;
}

typedef struct {
    int64_t counted, correct, top_k_hits, keys, zeros, negatives, outliers, confident_wrong;
    double loss_min, loss_max; /* (the loss sums are accumulate.LossMoments', exact, over blocks of rows) */
    ranked examples[N_RANKED];
} counted_sums;

/* One counted row (a usable label and a finite loss x): its sums, per-class sums and sketch key. */
static inline void count_row(const xent_tally_in *in, xent_tally_out *out, counted_sums *t, int64_t i, double x,
                             double key) {
    const int64_t y = in->label[i], p = in->pred[i];
    const int right = p == y;
    t->counted++;
    t->correct += right;
    t->top_k_hits += in->rank[i] <= in->top_k;
    if (x > in->outlier) {
        t->outliers++;
        rank_row(&t->examples[RANKED_OUTLIER], x, i);
    }
    if (in->p_max[i] >= in->confident && !right) {
        t->confident_wrong++;
        rank_row(&t->examples[RANKED_CONFIDENT], in->p_max[i], i);
    }
    t->loss_min = x < t->loss_min ? x : t->loss_min;
    t->loss_max = x > t->loss_max ? x : t->loss_max;
    if (out->support && y >= 0 && y < in->num_classes) { /* NULL: per-class sums kept sparse by the caller */
        out->support[y]++;
        out->class_correct[y] += right;
        out->class_loss[y] += x;
        out->class_p_true[y] += in->p_true[i];
    }
    if (out->predicted && p >= 0 && p < in->num_classes) out->predicted[p]++;
    if (x > in->min_indexable) {
        out->key_out[t->keys++] = (int32_t)key;
    } else if (x < -in->min_indexable) {
        t->negatives++;
    } else {
        t->zeros++;
    }
}

/* count_row over rows b0 … b1 − 1 (numbered row0 + i in the chunk), all counted (usable labels, finite losses): the counts, extremes
   and candidate tests in one vectorised loop, then the order-bound parts each in a tight loop of its
   own — the per-class sums, the sketch keys (row order, as count_row) — and the
   example rows only where the vectorised loop found candidates. Every result equals count_row's. */
static inline __attribute__((always_inline)) void count_block(const xent_tally_in *in, xent_tally_out *out, counted_sums *t, int64_t b0, int64_t b1,
                               int64_t row0, const double *key_of, int64_t *label_min_io, int64_t *label_max_io) {
    const double *restrict loss = in->loss, *restrict p_max = in->p_max, *restrict p_true = in->p_true;
    const int64_t *restrict label = in->label, *restrict pred = in->pred, *restrict rank = in->rank;
    const double outlier = in->outlier, confident = in->confident, min_indexable = in->min_indexable;
    const int64_t top_k = in->top_k, num_classes = in->num_classes;
    int64_t correct = 0, top_k_hits = 0, outliers = 0, confident_wrong = 0, keyed = 0, negatives = 0, entering = 0;
    int64_t label_min = *label_min_io, label_max = *label_max_io;
    double loss_min = t->loss_min, loss_max = t->loss_max;
    /* once EXAMPLES rows are kept, a row enters only above the least of them (rank_row): the floors
       at the block's start, which only rise within it, say which rows rank_row must see */
    const ranked *kept_outliers = &t->examples[RANKED_OUTLIER], *kept_confident = &t->examples[RANKED_CONFIDENT];
    const double floor_outlier = kept_outliers->count == EXAMPLES ? kept_outliers->key[EXAMPLES - 1] : -INFINITY;
    const double floor_confident = kept_confident->count == EXAMPLES ? kept_confident->key[EXAMPLES - 1] : -INFINITY;
#pragma omp simd reduction(+ : correct, top_k_hits, outliers, confident_wrong, keyed, negatives, entering) \
    reduction(min : label_min, loss_min) reduction(max : label_max, loss_max)
    for (int64_t i = b0; i < b1; i++) {
        const int64_t y = label[i];
        const double x = loss[i];
        const int64_t right = pred[i] == y;
        correct += right;
        top_k_hits += rank[i] <= top_k;
        outliers += x > outlier;
        confident_wrong += (p_max[i] >= confident) & !right;
        entering += ((x > outlier) & (x > floor_outlier)) | ((p_max[i] >= confident) & !right & (p_max[i] > floor_confident));
        keyed += x > min_indexable;
        negatives += x < -min_indexable;
        label_min = y < label_min ? y : label_min;
        label_max = y > label_max ? y : label_max;
        loss_min = x < loss_min ? x : loss_min;
        loss_max = x > loss_max ? x : loss_max;
    }
    *label_min_io = label_min, *label_max_io = label_max;
    t->counted += b1 - b0;
    t->correct += correct;
    t->top_k_hits += top_k_hits;
    t->outliers += outliers;
    t->confident_wrong += confident_wrong;
    t->loss_min = loss_min, t->loss_max = loss_max;
    t->negatives += negatives;
    t->zeros += (b1 - b0) - keyed - negatives;
    /* with two classes (a binary head) the per-class sums in LANES_SUM lanes (row i in lane i mod
       LANES_SUM, so that the loop vectorises), added up at the block's end */
    const int two_classes = out->support && out->predicted && num_classes == 2;
    if (two_classes) {
        lanes loss_0 = {0}, loss_1 = {0}, p_0 = {0}, p_1 = {0};
        int64_t i = b0;
        for (; i + LANES_SUM <= b1; i += LANES_SUM) {
            lanes x, p;
            lane_mask one;
            memcpy(&x, loss + i, sizeof x);
            memcpy(&p, p_true + i, sizeof p);
            for (int j = 0; j < LANES_SUM; j++) one[j] = -(label[i + j] == 1);
            loss_0 += (lanes)((lane_mask)x & ~one), loss_1 += (lanes)((lane_mask)x & one);
            p_0 += (lanes)((lane_mask)p & ~one), p_1 += (lanes)((lane_mask)p & one);
        }
        for (int j = 0; i < b1; i++, j++) { /* the last rows of the block, one a lane */
            const double x = loss[i], p = p_true[i];
            const int one = label[i] == 1;
            loss_0[j] += one ? 0.0 : x, loss_1[j] += one ? x : 0.0;
            p_0[j] += one ? 0.0 : p, p_1[j] += one ? p : 0.0;
        }
        double lanes[4] = {0, 0, 0, 0};
        for (int64_t j = 0; j < LANES_SUM; j++) lanes[0] += loss_0[j], lanes[1] += loss_1[j], lanes[2] += p_0[j], lanes[3] += p_1[j];
        out->class_loss[0] += lanes[0], out->class_loss[1] += lanes[1], out->class_p_true[0] += lanes[2], out->class_p_true[1] += lanes[3];
        int64_t ones = 0, right_0 = 0, right_1 = 0, predicted_0 = 0, predicted_1 = 0;
#pragma omp simd reduction(+ : ones, right_0, right_1, predicted_0, predicted_1)
        for (int64_t r = b0; r < b1; r++) {
            const int64_t y = label[r], p = pred[r];
            ones += y == 1;
            right_0 += (y == 0) & (p == 0), right_1 += (y == 1) & (p == 1);
            predicted_0 += p == 0, predicted_1 += p == 1;
        }
        out->support[0] += (b1 - b0) - ones, out->support[1] += ones;
        out->class_correct[0] += right_0, out->class_correct[1] += right_1;
        out->predicted[0] += predicted_0, out->predicted[1] += predicted_1;
    }
    if (entering)
        for (int64_t i = b0; i < b1; i++) {
            if (loss[i] > outlier) rank_row(&t->examples[RANKED_OUTLIER], loss[i], row0 + i);
            if (p_max[i] >= confident && pred[i] != label[i]) rank_row(&t->examples[RANKED_CONFIDENT], p_max[i], row0 + i);
        }
    if (out->support && !two_classes) /* labels in [0, num_classes): the rows are usable */
        for (int64_t i = b0; i < b1; i++) {
            const int64_t y = label[i];
            out->support[y]++;
            out->class_correct[y] += pred[i] == y;
            out->class_loss[y] += loss[i];
            out->class_p_true[y] += p_true[i];
        }
    if (out->predicted && !two_classes)
        for (int64_t i = b0; i < b1; i++) {
            const int64_t p = pred[i];
            if (p >= 0 && p < num_classes) out->predicted[p]++;
        }
    int32_t *restrict keys = out->key_out + t->keys;
    if (keyed == b1 - b0) { /* every row keyed (the usual block): a plain copy, which vectorises */
        for (int64_t i = 0; i < b1 - b0; i++) keys[i] = (int32_t)key_of[i];
        t->keys += keyed;
        return;
    }
    int64_t k = 0;
    for (int64_t i = b0; i < b1; i++) {
        keys[k] = (int32_t)key_of[i - b0];
        k += loss[i] > min_indexable;
    }
    t->keys += k;
}

/* The sketch key ceil(log(x) / log_gamma) of each of n values (1.0's for a value not positive and
   finite): what the tallies below give, for the keys computed outside them (sketch.py). */
XENT_CLONES int64_t xent_sketch_keys(const double *restrict x, int64_t n, double log_gamma, int64_t *restrict key) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const double v = x[i] > 0.0 && x[i] < INFINITY ? x[i] : 1.0;
        key[i] = (int64_t)ceil(log_positive(v) / log_gamma);
    }
    return n;
}

/* The sketch key ceil(log(x) / log_gamma) of every row b0 … b1 − 1 (used where counted): vectorised. */
static inline __attribute__((always_inline)) void block_keys(const double *restrict loss, int64_t b0, int64_t b1, double log_gamma,
                                                             double min_indexable, double *restrict key_of) {
#pragma omp simd
    for (int64_t i = b0; i < b1; i++) {
        const double x = loss[i] > min_indexable && loss[i] < INFINITY ? loss[i] : 1.0;
        key_of[i - b0] = ceil(log_positive(x) / log_gamma);
    }
}

/* The chunk's totals into `out`, after the last block. */
static void finish(const xent_tally_in *in, xent_tally_out *out, const counted_sums *t, int64_t *hits, int64_t int_labels,
                   int64_t label_min, int64_t label_max, int64_t at_num_classes, double max_abs) {
    hits[OUTLIER] = t->outliers, hits[CONFIDENT] = t->confident_wrong;
    for (int r = 0; r < N_RULES; r++) out->hits[r] = ((in->off_rules >> r) & 1) ? 0 : hits[r];
    for (int r = 0; r < N_RANKED; r++) {
        out->ranked_count[r] = t->examples[r].count;
        for (int64_t e = 0; e < t->examples[r].count; e++) out->ranked_rows[r][e] = t->examples[r].row[e];
    }
    out->counted = t->counted, out->correct = t->correct, out->top_k_hits = t->top_k_hits;
    out->keys = t->keys, out->zeros = t->zeros, out->negatives = t->negatives;
    out->int_labels = int_labels, out->label_min = label_min, out->label_max = label_max;
    out->at_num_classes = at_num_classes;
    out->loss_min = t->loss_min, out->loss_max = t->loss_max, out->max_abs = max_abs;
}

XENT_CLONES int64_t xent_tally(const xent_tally_in *in, xent_tally_out *out) {
    const int64_t n = in->n, num_classes = in->num_classes;
    const double *restrict loss = in->loss, *restrict top = in->top;
    const double *restrict bottom = in->bottom ? in->bottom : in->top, *restrict log_norm = in->log_norm;
    const int64_t *restrict label = in->label;
    const uint8_t *restrict label_is_int = in->label_is_int, *restrict label_ok = in->label_ok;
    const uint8_t *restrict ignored = in->ignored;
    const double limit = in->overflow_limit, log_probs_tolerance = in->log_probs_tolerance;
    const double log_gamma = in->log_gamma, min_indexable = in->min_indexable;
    const int logits = in->kind == KIND_LOGITS, probs = in->kind == KIND_PROBS, has_log_norm = log_norm != 0;
    const int log_probs = in->kind == KIND_LOG_PROBS && has_log_norm;
    const double not_log_probs_tolerance = in->not_log_probs_tolerance;
#define RULE_ON(rule) ((int)(((in->off_rules >> (rule)) & 1) == 0))
    /* the screen leaves out what rules that are off would look at (a sigmoid head's [0, z] rows lie in [0, 1]) */
    const int probs_as_logits_on = RULE_ON(PROBS_AS_LOGITS), log_probs_on = RULE_ON(LOG_PROBS);
    const int constant_on = RULE_ON(CONSTANT), not_log_probs_on = RULE_ON(NOT_LOG_PROBS);
    int64_t hits[N_RULES] = {0};
    int64_t int_labels = 0, label_min = INT64_MAX, label_max = INT64_MIN, at_num_classes = 0;
    double max_abs = -INFINITY;
    counted_sums t = {.loss_min = INFINITY, .loss_max = -INFINITY};
    double key_of[BLOCK];

    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        const int64_t b1 = b0 + BLOCK < n ? b0 + BLOCK : n;
        block_keys(loss, b0, b1, log_gamma, min_indexable, key_of);
        /* a vectorised screen: does any row of the block trip a rule, or go uncounted? Probabilities
           always take the full path (their rules look at every row's sum). */
        int64_t unusual = probs;
#pragma omp simd reduction(+ : unusual)
        for (int64_t i = b0; i < b1; i++) {
            const double hi = top[i], lo = bottom[i], x = loss[i];
            const double magnitude = fabs(hi) > fabs(lo) ? fabs(hi) : fabs(lo);
            const double ln = has_log_norm ? log_norm[i] : 1.0;
            unusual += (!(magnitude <= limit)) | (hi != hi) | (lo != lo) /* NaN, inf or overflow risk */
                       | (logits & probs_as_logits_on & (lo >= 0.0) & (hi <= 1.0))
                       | (logits & log_probs_on & (fabs(ln) <= log_probs_tolerance))
                       | (log_probs & not_log_probs_on & !(fabs(ln) <= not_log_probs_tolerance))
                       | ((hi == lo) & (num_classes > 1) & constant_on) | (label_ok[i] == 0) | (label_is_int[i] == 0)
                       | (ignored[i] != 0) | (!(fabs(x) < INFINITY));
        }
        if (!unusual) { /* every row counted, no rule tripped: count_row's work in tighter loops, in the same order */
            count_block(in, out, &t, b0, b1, 0, key_of, &label_min, &label_max);
            int_labels += b1 - b0;
            continue;
        }
        for (int64_t i = b0; i < b1; i++) { /* the full rules, as RowMasks in diagnostics.py states them */
            const double hi = top[i], lo = bottom[i], x = loss[i];
            const int64_t y = label[i];
            const int is_int = label_is_int[i] != 0, ok = label_ok[i] != 0, skip = ignored[i] != 0;
            const int nan_row = isnan(hi) || isnan(lo);
            const int inf_row = !nan_row && (isinf(hi) || isinf(lo));
            const int finite = !nan_row && !inf_row;
            const double magnitude = fmax(fabs(hi), fabs(lo));
            hits[NAN_SCORES] += nan_row;
            /* an infinite score is a mask (XE111) when it is -inf off the target: no +inf, and a
               finite loss where the row is scored; otherwise an error (XE102) */
            const int scored = ok && !skip;
            const int masked = inf_row && hi < INFINITY && !(scored && !isfinite(x));
            hits[INF_SCORES] += inf_row && !masked;
            hits[MASKED] += masked;
            if (log_probs) hits[NOT_LOG_PROBS] += !nan_row && hi < INFINITY && !(fabs(log_norm[i]) <= not_log_probs_tolerance);
            if (!probs && finite && magnitude > limit) {
                hits[OVERFLOW]++;
                max_abs = fmax(max_abs, magnitude);
            }
            if (logits) {
                hits[PROBS_AS_LOGITS] += finite && lo >= 0.0 && hi <= 1.0;
                if (has_log_norm) hits[LOG_PROBS] += finite && fabs(log_norm[i]) <= log_probs_tolerance;
            }
            if (probs && has_log_norm) {
                hits[LOGITS_AS_PROBS] +=
                    finite && (lo < 0.0 || hi > 1.0 || fabs(exp(log_norm[i]) - 1.0) > in->probs_tolerance);
                hits[ZERO_PROBABILITY] += ok && !skip && in->p_true[i] == 0.0;
            }
            hits[CONSTANT] += finite && hi == lo && num_classes > 1;
            hits[LABEL_OUT_OF_RANGE] += is_int && !ok && !skip;
            hits[NOT_INTEGER] += !is_int;
            hits[IGNORED] += skip;
            if (is_int && !skip) {
                int_labels++;
                label_min = y < label_min ? y : label_min;
                label_max = y > label_max ? y : label_max;
                at_num_classes += y == num_classes;
            }
            hits[NONFINITE_LOSS] += !skip && !isfinite(x);
            /* counted: a usable label and a finite loss (an ignored row's loss is NaN) */
            if (ok && isfinite(x)) count_row(in, out, &t, i, x, key_of[i - b0]);
        }
    }
#undef RULE_ON
    finish(in, out, &t, hits, int_labels, label_min, label_max, at_num_classes, max_abs);
    return t.counted;
}

/* A binary head's chunk of float32 logits z [n] with 0/1 labels (`label`: n unsigned integers of
   label_bytes each, bool included), scored and tallied in one pass: each block of rows is scored
   by binary_logit_row (as xent_binary_logits_f32 scores it) into buffers that stay in the cache,
   then counted by count_block, so `out` holds what xent_tally gives for that function's arrays;
   `in` gives the limits only (its row pointers are not read). Per row only the loss (`loss`) and
   the prediction (`pred`, 0/1) are kept. Returns -1, with nothing promised of the outputs, when a
   row is anything but plain — a score not finite or beyond the overflow limit, a label not 0 or
   1: the general path takes the chunk, and its rules say what they see. */
XENT_CLONES int64_t xent_binary_tally_f32(const float *restrict z, const void *label, int64_t label_bytes, int64_t n, float cut,
                                          const xent_tally_in *in, xent_tally_out *out, double *restrict loss, uint8_t *restrict pred) {
    const double limit = in->overflow_limit;
    float limit_f = (float)limit; /* the largest float <= limit: for a float x, |x| <= limit_f exactly when (double)|x| <= limit */
    if ((double)limit_f > limit) limit_f = nextafterf(limit_f, 0.0f);
    int64_t hits[N_RULES] = {0};
    int64_t label_min = INT64_MAX, label_max = INT64_MIN;
    counted_sums t = {.loss_min = INFINITY, .loss_max = -INFINITY};
    double key_of[BLOCK], p_true[BLOCK], p_max[BLOCK], log_norm; /* log_norm: not kept (the tally reads no such column) */
    float e_of[BLOCK], log1p_of[BLOCK], arg_of[BLOCK];
    int64_t y[BLOCK], predicted[BLOCK], rank[BLOCK];
    xent_tally_in block = *in;
    block.loss = 0, block.p_true = p_true, block.p_max = p_max, block.label = y, block.pred = predicted, block.rank = rank;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        const int64_t m = b0 + BLOCK < n ? BLOCK : n - b0;
        switch (label_bytes) { /* any width: a 0 or a 1 reads the same signed or not */
        case 1: for (int64_t i = 0; i < m; i++) y[i] = ((const uint8_t *)label)[b0 + i]; break;
        case 2: for (int64_t i = 0; i < m; i++) y[i] = ((const uint16_t *)label)[b0 + i]; break;
        case 4: for (int64_t i = 0; i < m; i++) y[i] = ((const uint32_t *)label)[b0 + i]; break;
        case 8: for (int64_t i = 0; i < m; i++) y[i] = (int64_t)((const uint64_t *)label)[b0 + i]; break;
        default: return -1;
        }
        const float *restrict zb = z + b0;
        double *restrict lb = loss + b0;
        int64_t bad = 0;
        /* binary_logit_row's three stages, each a loop of its own: the float ones on float lanes only (0.7x the time of one loop) */
#pragma omp simd reduction(+ : bad)
        for (int64_t i = 0; i < m; i++) {
            bad += !(fabsf(zb[i]) <= limit_f) | ((uint64_t)y[i] > 1); /* NaN, inf, overflow risk; a label not 0 or 1 */
            binary_logit_float(zb[i], &e_of[i], &log1p_of[i]);
        }
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            binary_logit_rest(zb[i], y[i], cut, e_of[i], log1p_of[i], &lb[i], &arg_of[i], &p_max[i], &log_norm, &predicted[i]);
            rank[i] = predicted[i] == y[i] ? 1 : 2;
            pred[b0 + i] = (uint8_t)predicted[i];
        }
#pragma omp simd
        for (int64_t i = 0; i < m; i++) p_true[i] = (double)exp_nonpositive_f32(arg_of[i]);
        if (bad) return -1;
        block_keys(lb, 0, m, in->log_gamma, in->min_indexable, key_of);
        block.loss = lb;
        count_block(&block, out, &t, 0, m, b0, key_of, &label_min, &label_max);
    }
    finish(in, out, &t, hits, n, label_min, label_max, 0, -INFINITY);
    return t.counted;
}

/* A chunk's sketch keys (count_block's key_out) counted by value, as sketch.Buckets.add_keys counts
   them with numpy (np.bincount(keys − min)): xent_key_range writes the smallest and the largest key
   to range[0], range[1]; xent_key_counts adds each key's count into counts[key − low], zeroed by the
   caller for range[1] − range[0] + 1 keys. Consecutive rows often share a key: four partial counts,
   in `scratch` (4 × the span, zeroed by the caller), break the chain of increments on one entry. */
XENT_CLONES int64_t xent_key_range(const int32_t *restrict keys, int64_t n, int64_t *range) {
    int32_t low = INT32_MAX, high = INT32_MIN;
#pragma omp simd reduction(min : low) reduction(max : high)
    for (int64_t i = 0; i < n; i++) {
        low = keys[i] < low ? keys[i] : low;
        high = keys[i] > high ? keys[i] : high;
    }
    range[0] = low, range[1] = high;
    return n;
}

int64_t xent_key_counts(const int32_t *restrict keys, int64_t n, int64_t low, int64_t span, int64_t *restrict counts,
                        int64_t *restrict scratch) {
    int64_t *restrict part[4] = {scratch, scratch + span, scratch + 2 * span, scratch + 3 * span};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        part[0][keys[i] - low]++;
        part[1][keys[i + 1] - low]++;
        part[2][keys[i + 2] - low]++;
        part[3][keys[i + 3] - low]++;
    }
    for (; i < n; i++) part[0][keys[i] - low]++;
#pragma omp simd
    for (int64_t k = 0; k < span; k++) counts[k] = part[0][k] + part[1][k] + part[2][k] + part[3][k];
    return span;
}

/* numpy's pairwise sum of n contiguous doubles, float(np.add.reduce(x)) (numpy's pairwise_sum in
   loops_utils.h.src: under 8 values one by one; up to 128 in eight accumulators folded
   ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest one by one; above, halves split
   at a multiple of 8). */
XENT_EXACT static double pairwise_sum(const double *x, int64_t n) {
    XENT_EXACT_BODY
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++) res += x[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = x[j];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += x[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += x[i];
        return res;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(x, half) + pairwise_sum(x + half, n - half);
}

/* squared_deviations: Σ (x − mean)², deviations: Σ (x − mean), over n contiguous doubles, each
   summed as numpy's pairwise sum sums the array of its terms — float(np.square(x − mean).sum()) and
   float(np.add.reduce(x − mean)) — as pairwise_sum above. Two passes: one loop carrying both sums
   took 1.7x their time. */
#define XENT_DEVIATION_SUM(NAME, TERM)                                                                   \
    XENT_EXACT static double NAME(const double *x, int64_t n, double mean) {                             \
        XENT_EXACT_BODY                                                                                  \
        if (n < 8) {                                                                                     \
            double res = 0.0;                                                                            \
            for (int64_t i = 0; i < n; i++) {                                                            \
                const double d = x[i] - mean;                                                            \
                res += TERM;                                                                             \
            }                                                                                            \
            return res;                                                                                  \
        }                                                                                                \
        if (n <= 128) {                                                                                  \
            double r[8];                                                                                 \
            for (int j = 0; j < 8; j++) {                                                                \
                const double d = x[j] - mean;                                                            \
                r[j] = TERM;                                                                             \
            }                                                                                            \
            int64_t i = 8;                                                                               \
            for (; i < n - (n % 8); i += 8)                                                              \
                for (int j = 0; j < 8; j++) {                                                            \
                    const double d = x[i + j] - mean;                                                    \
                    r[j] += TERM;                                                                        \
                }                                                                                        \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));              \
            for (; i < n; i++) {                                                                         \
                const double d = x[i] - mean;                                                            \
                res += TERM;                                                                             \
            }                                                                                            \
            return res;                                                                                  \
        }                                                                                                \
        int64_t half = n / 2;                                                                            \
        half -= half % 8;                                                                                \
        return NAME(x, half, mean) + NAME(x + half, n - half, mean);                                     \
    }
XENT_DEVIATION_SUM(squared_deviations, d * d)
XENT_DEVIATION_SUM(deviations, d)

/* accumulate.LossMoments: per block b (values bounds[b] … bounds[b+1] − 1) its sum,
   float(np.add.reduce(block)), and about its mean m_b = sum / n_b its M2, float(np.square(block −
   m_b).sum()), and its deviations' sum, float(np.add.reduce(block − m_b)) (accumulate.block_moments
   is the numpy twin); NaN M2 and deviations for a block whose sum is not finite. */
XENT_EXACT int64_t xent_block_moments(const double *values, const int64_t *bounds, int64_t blocks, double *sums, double *m2s,
                                      double *devs) {
    XENT_EXACT_BODY
    for (int64_t b = 0; b < blocks; b++) {
        const double *x = values + bounds[b];
        const int64_t n = bounds[b + 1] - bounds[b];
        const double sum = 0.0 + pairwise_sum(x, n);
        sums[b] = sum;
        m2s[b] = devs[b] = NAN;
        if (n && isfinite(sum)) {
            m2s[b] = 0.0 + squared_deviations(x, n, sum / (double)n);
            devs[b] = 0.0 + deviations(x, n, sum / (double)n);
        }
    }
    return blocks;
}

/* xent diff's Poisson bootstrap (see xentcli/compare.py, Bootstrap.replicates_of, its numpy twin):
   for each cell of m pairs and each replicate b, the weight k ~ Poisson(m) is drawn from a
   counter-based hash of (cell, b, seed) — exact inversion of the CDF table for m <= small_mean, the
   normal quantile with the first Cornish-Fisher term above — and added to both sides' histograms
   (laid out [span][replicates], so that one cell's replicates are adjacent in memory). */
static inline uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static double normal_quantile(double p) { /* P. J. Acklam's rational approximation, as normal_quantiles */
    static const double a[] = {-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
                               1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00};
    static const double b[] = {-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
                               6.680131188771972e01, -1.328068155288572e01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
                               -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
                               3.754408661907416e00};
    if (p < 1e-15) p = 1e-15;
    if (p > 1 - 1e-15) p = 1 - 1e-15;
    if (p < 0.02425 || p > 1 - 0.02425) {
        const double sign = p < 0.02425 ? 1.0 : -1.0, t = sqrt(-2 * log(p < 0.02425 ? p : 1 - p));
        double num = 0, den = 0;
        for (int i = 0; i < 6; i++) num = num * t + c[i];
        for (int i = 0; i < 4; i++) den = den * t + d[i];
        return sign * num / (den * t + 1);
    }
    const double q = p - 0.5, r = q * q;
    double num = 0, den = 0;
    for (int i = 0; i < 6; i++) num = num * r + a[i];
    for (int i = 0; i < 5; i++) den = den * r + b[i];
    return num * q / (den * r + 1);
}

static inline int64_t poisson_draw(double u, int64_t m, double sqrt_m, const double *row, const int32_t *start,
                                   int64_t guide_width) {
    if (row) { /* the first k with cdf[k] > u (searchsorted, side right), from the guide table's lower
                  bound for u's bin: a step or two */
        int64_t k = start[(int64_t)(u * (double)guide_width)];
        while (row[k] <= u) k++;
        return k;
    }
    const double z = normal_quantile(u);
    const double x = rint((double)m + sqrt_m * z + (z * z - 1) / 6);
    return x > 0 ? (int64_t)x : 0;
}

/* Every cell's replicate weights first … last − 1 added into histograms of type T (int32 or int64),
   64 replicates at a time: a block's columns of both histograms stay in the cache while every cell
   adds to them (a cell's whole rows would stream the histograms through memory once per cell). */
#define XENT_BOOTSTRAP_CELLS(T, hist_b, hist_c)                                                                          \
    for (int64_t block = first; block < last; block += 64) {                                                             \
        const int64_t block_end = block + 64 < last ? block + 64 : last;                                                 \
        for (int64_t c = 0; c < cells; c++) {                                                                            \
            const uint64_t word = mix64(cell_ids[c] ^ salt);                                                             \
            const int64_t m = counts[c];                                                                                 \
            const double *row = m <= small_mean ? cdf + (m - 1) * cdf_width : 0;                                         \
            const int32_t *start = m <= small_mean ? guide + (m - 1) * guide_width : 0;                                  \
            const double sqrt_m = sqrt((double)m);                                                                       \
            T *base = hist_b + slot_base[c] * replicates, *candidate = hist_c + slot_candidate[c] * replicates;          \
            /* one hash gives two replicates' uniforms: its high and its low 32 bits */                                 \
            for (int64_t b = block; b < block_end; b += 2) {                                                             \
                const uint64_t x = mix64(word + (uint64_t)(b / 2 + 1) * golden);                                         \
                const T k = (T)poisson_draw((double)(x >> 32) * 0x1.0p-32, m, sqrt_m, row, start, guide_width);         \
                base[b] += k;                                                                                            \
                candidate[b] += k;                                                                                       \
                if (b + 1 < block_end) {                                                                                 \
                    const T k2 = (T)poisson_draw((double)(x & 0xFFFFFFFFULL) * 0x1.0p-32, m, sqrt_m, row, start,       \
                                                 guide_width);                                                           \
                    base[b + 1] += k2;                                                                                   \
                    candidate[b + 1] += k2;                                                                              \
                }                                                                                                        \
            }                                                                                                            \
        }                                                                                                                \
    }

int64_t xent_bootstrap(int64_t cells, int64_t replicates, int64_t first, int64_t last, uint64_t seed, const uint64_t *cell_ids,
                       const int64_t *counts, const int64_t *slot_base, const int64_t *slot_candidate,
                       const double *cdf, int64_t cdf_width, int64_t small_mean, const int32_t *guide,
                       int64_t guide_width, int64_t *hist_base, int64_t *hist_candidate, int32_t *narrow_base,
                       int32_t *narrow_candidate) {
    /* only replicates first … last − 1 (first even): threads share the histograms, each its columns;
       with narrow_* (the caller's bound on the weights allows) int32 histograms instead of int64 */
    const uint64_t golden = 0x9E3779B97F4A7C15ULL, salt = mix64(seed + golden);
    if (narrow_base) {
        XENT_BOOTSTRAP_CELLS(int32_t, narrow_base, narrow_candidate)
    } else {
        XENT_BOOTSTRAP_CELLS(int64_t, hist_base, hist_candidate)
    }
    return cells;
}

/* --by: one chunk's per-group sums (slices.py, _sums_by, its numpy twin), row i in group
   group[i] − offset (0 … k−1): rows, counted rows, the counted losses' mean and M2 (a second pass
   over the rows: the deviations from each group's mean), the counted rows predicted right, and
   with `cell` (the row's calibration cell, −1: none; a bin is `per` cells) the calibration bins
   count, Σconfidence, Σhit, summed in `scratch` [k][m][3] (one cache line a row; zeroed here; a loop of its own: 0.8x the time) and
   written out as bins [3][k'][m]. The sums run in row order, as numpy's bincount does. With
   `present`, the groups without rows are dropped: the k' others (their indices in `present`) move
   to the front of every output. Returns k'. */
XENT_EXACT int64_t xent_group_sums(const int64_t *restrict group, int64_t n, int64_t offset, int64_t k, const double *restrict loss,
                        const uint8_t *restrict counted, const uint8_t *restrict correct, int64_t *restrict rows, int64_t *restrict count,
                        double *restrict mean, double *restrict m2, int64_t *restrict right, const int64_t *restrict cell, int64_t per,
                        int64_t m, const double *restrict confidence, const uint8_t *restrict hit, double *restrict scratch,
                        double *restrict bins, int64_t *restrict present) {
    XENT_EXACT_BODY
    int32_t bin_of_cell[4096];  /* cell / per without a division a row (cells < 4096: calibration.CELLS is 3600) */
    if (cell) {
        for (int64_t j = 0, b = 0, next = per; j < 4096; j++) { /* j / per, counted up: no division an entry */
            if (j == next) b++, next += per;
            bin_of_cell[j] = (int32_t)(b < m ? b : m - 1); /* every entry set */
        }
        memset(scratch, 0, (size_t)(k * m * 3) * sizeof(double));
    }
    for (int64_t i = 0; i < n; i++) {
        const int64_t g = group[i] - offset;
        rows[g]++;
        if (counted[i]) {
            count[g]++;
            mean[g] += loss[i];
            right[g] += correct[i] != 0;
        }
    }
    if (cell)
        for (int64_t i = 0; i < n; i++) {
            if (cell[i] < 0) continue;
            double *at = scratch + 3 * ((group[i] - offset) * m + bin_of_cell[cell[i]]);
            at[0] += 1.0;
            at[1] += confidence[i];
            at[2] += (double)(((uint32_t)hit[i] + 255u) >> 8); /* hit[i] != 0 without a branch (gcc made one: mispredicted, 2.5 ns a row) */
        }
    for (int64_t g = 0; g < k; g++) mean[g] = count[g] ? mean[g] / (double)count[g] : 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (counted[i]) {
            const int64_t g = group[i] - offset;
            const double d = loss[i] - mean[g];
            m2[g] += d * d;
        }
    }
    int64_t kept = k;
    if (present) {
        kept = 0;
        for (int64_t g = 0; g < k; g++) {
            if (!rows[g]) continue;
            present[kept] = g;
            rows[kept] = rows[g], count[kept] = count[g], mean[kept] = mean[g], m2[kept] = m2[g], right[kept] = right[g];
            kept++;
        }
    }
    if (cell)
        for (int64_t j = 0; j < kept; j++) {
            const int64_t g = present ? present[j] : j;
            for (int64_t s = 0; s < 3; s++)
                for (int64_t b = 0; b < m; b++) bins[(s * kept + j) * m + b] = scratch[3 * (g * m + b) + s];
        }
    return kept;
}

/* --calibration: each confidence's cell of the grid (calibration.py, cells_of, its numpy twin):
   the j with j/cells < c <= (j+1)/cells (0 for c = 0), each edge the correctly rounded quotient —
   the float64 numbers calibration.EDGES holds — from a vectorised division rather than a gather
   from the table (2.5x faster); from floor(c * cells), within one cell of it (a truncation where
   ceil would be a libm call on baseline x86-64), and one comparison with each neighbouring edge;
   -1 for the rows `use` leaves out (NULL: every row). NaN and values below 0 start from 0, above 1
   from the last cell. */
XENT_CLONES int64_t xent_calibration_cells(const double *confidence, const uint8_t *use, int64_t n, int64_t cells, int64_t *cell) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const double c = confidence[i], x = c * (double)cells;
        int64_t j = x >= 1.0 ? (x < (double)cells ? (int64_t)x : cells - 1) : 0;
        j -= (c <= (double)j / (double)cells) & (j > 0);
        j += (c > (double)(j + 1) / (double)cells) & (j < cells - 1);
        cell[i] = use && !use[i] ? -1 : j;
    }
    return n;
}

/* --calibration: one chunk's grid sums (Calibration.update, its numpy twin) over the rows with a
   cell (cell >= 0): per cell the rows, Σconf, Σconf², the right ones and Σconf·right, each float sum
   added in row order within (cell, right) as numpy's bincount adds them, and Σconf as the wrong
   rows' sum plus the right rows'; each chunk sum is then added to the arrays given, as `+=` adds
   numpy's. `scratch`: 3 * cells zeroed doubles. And into totals[3]: the Brier sum and its rows over
   the finite values — brier_a[i], or brier_a[i] − 2·brier_b[i] + 1 (Σp² − 2·p_y + 1) when brier_b is
   given; none without brier_a — and the certain mistakes: certain[i], or by default confidence
   exactly 1 and wrong. (Built for baseline x86-64, which has no FMA, unlike the cloned loops: c * c is rounded
   before the sum.) */
XENT_EXACT int64_t xent_calibration_sums(const int64_t *cell, const double *confidence, const uint8_t *right, int64_t n, int64_t cells,
                              int64_t *count, double *conf, double *conf2, int64_t *correct, double *conf_correct,
                              double *scratch, const double *brier_a, const double *brier_b, const uint8_t *certain, double *totals) {
    XENT_EXACT_BODY
    double brier = 0.0;
    int64_t brier_rows = 0, certain_wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t j = cell[i];
        if (j < 0) continue;
        const double c = confidence[i];
        const int r = right[i] != 0;
        count[j]++;
        correct[j] += r;
        scratch[3 * j + r] += c;
        scratch[3 * j + 2] += c * c;
        certain_wrong += certain ? certain[i] != 0 : (c == 1.0 && !r);
        if (brier_a) {
            const double v = brier_b ? brier_a[i] - 2.0 * brier_b[i] + 1.0 : brier_a[i];
            if (isfinite(v)) {
                brier += v;
                brier_rows++;
            }
        }
    }
    for (int64_t j = 0; j < cells; j++) {
        conf[j] += scratch[3 * j] + scratch[3 * j + 1];
        conf_correct[j] += scratch[3 * j + 1];
        conf2[j] += scratch[3 * j + 2];
    }
    totals[0] += brier;
    totals[1] += (double)brier_rows;
    totals[2] += (double)certain_wrong;
    return n;
}

/* --by: a chunk's per-group partials merged into the totals (GroupTotals._add_ids, its numpy twin,
   with the same float operations in the same order): other group j is totals' group ids[j]; Chan's
   merge of the counted losses' mean and M2, the counts added, and the [3][k][m] calibration bins
   of the other (NULL: none) added into the totals' [3][groups][m]. */
XENT_EXACT int64_t xent_group_merge(const int64_t *ids, int64_t k, int64_t groups, const int64_t *rows_b, const int64_t *counted_b,
                         const double *mean_b, const double *m2_b, const int64_t *correct_b, const double *bins_b, int64_t m,
                         int64_t *rows, int64_t *counted, double *mean, double *m2, int64_t *correct, double *bins) {
    XENT_EXACT_BODY
    for (int64_t j = 0; j < k; j++) {
        const int64_t g = ids[j], na = counted[g], nb = counted_b[j], total = na + nb;
        const double safe = (double)(total > 1 ? total : 1);
        const double step = mean_b[j] - mean[g];
        mean[g] += total > 0 ? step * (double)nb / safe : 0.0;
        m2[g] += m2_b[j] + (total > 0 ? step * step * (double)na * (double)nb / safe : 0.0);
        counted[g] = total;
        rows[g] += rows_b[j];
        correct[g] += correct_b[j];
        if (bins_b)
            for (int64_t s = 0; s < 3; s++) {
                double *to = bins + (s * groups + g) * m;
                const double *from = bins_b + (s * k + j) * m;
                for (int64_t b = 0; b < m; b++) to[b] += from[b];
            }
    }
    return k;
}

/* --temperature-scan: splitmix64 of the row numbers offset + positions[i] (temperature.py,
   row_hashes, its numpy twin), computed where the chunk is scored. */
int64_t xent_row_hashes(int64_t offset, const int64_t *positions, int64_t n, uint64_t *out) {
    for (int64_t i = 0; i < n; i++) out[i] = mix64((uint64_t)(offset + positions[i]) + 0x9E3779B97F4A7C15ULL);
    return n;
}

/* xent diff's bootstrap cells (compare.py, Bootstrap._compact; numpy's unique(return_counts=True) is
   its twin): the distinct values of `values` in ascending order with their counts, by an LSD radix
   sort of value − min in 16-bit digits (as many passes as the range needs: two for the cells of
   ordinary losses) instead of a comparison sort. Both arrays (n values each) are overwritten, no
   other memory is used: the k distinct values end at the front of one, their counts at the front
   of the other — of `scratch` and `values` respectively when *swapped is set. Returns k (−1: out of memory). */
int64_t xent_unique_counts(int64_t *values, int64_t n, int64_t *scratch, int64_t *swapped) {
    *swapped = 0;
    if (n <= 0) return 0;
    int64_t low = values[0], high = values[0];
    for (int64_t i = 1; i < n; i++) {
        if (values[i] < low) low = values[i];
        if (values[i] > high) high = values[i];
    }
    const uint64_t range = (uint64_t)high - (uint64_t)low;
    int64_t *from = values, *to = scratch;
    int64_t *count = malloc(sizeof(int64_t) << 16);  /* 512 KiB: not on a thread's stack */
    if (!count) return -1;
    for (int shift = 0; shift < 64 && (range >> shift) != 0; shift += 16) {
        memset(count, 0, sizeof(int64_t) << 16);
        for (int64_t i = 0; i < n; i++) count[(((uint64_t)from[i] - (uint64_t)low) >> shift) & 0xFFFF]++;
        int64_t at = 0;
        for (int64_t d = 0; d < (1 << 16); d++) {
            const int64_t c = count[d];
            count[d] = at;
            at += c;
        }
        for (int64_t i = 0; i < n; i++) to[count[(((uint64_t)from[i] - (uint64_t)low) >> shift) & 0xFFFF]++] = from[i];
        int64_t *swap = from;
        from = to, to = swap;
    }
    free(count);
    *swapped = from == scratch;
    int64_t k = 0;  /* run-length: the distinct values forward in `from` (k <= i), their counts in `to` */
    for (int64_t i = 0; i < n; i++) {
        if (k && from[k - 1] == from[i]) {
            to[k - 1]++;
        } else {
            from[k] = from[i], to[k] = 1;
            k++;
        }
    }
    return k;
}

/* Σ_c v[i, c]·w[j, c] for each row i and vector j, in double, for values of float32 (is_f32) or
   double at element strides (row_stride, col_stride), the vectors contiguous [k, C]: four partial
   sums by c mod 4, added as (a0 + a1) + (a2 + a3), then the classes past the last multiple of 4 in
   order. The order depends on C alone, so a row gets the same bits whatever rows are computed with
   it (a BLAS matmul's does not: kernels.dot_vectors). A non-finite product is left to the caller. */
#define XENT_ROW_DOTS(T)                                                                                \
    for (int64_t i = 0; i < n; i++) {                                                                   \
        const T *row = (const T *)values + i * row_stride;                                              \
        for (int64_t j = 0; j < k; j++) {                                                               \
            const double *wj = w + j * c;                                                               \
            double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;                                              \
            int64_t m = 0;                                                                              \
            for (; m + 4 <= c; m += 4) {                                                                \
                a0 += (double)row[m * col_stride] * wj[m];                                              \
                a1 += (double)row[(m + 1) * col_stride] * wj[m + 1];                                    \
                a2 += (double)row[(m + 2) * col_stride] * wj[m + 2];                                    \
                a3 += (double)row[(m + 3) * col_stride] * wj[m + 3];                                    \
            }                                                                                           \
            double total = (a0 + a1) + (a2 + a3);                                                       \
            for (; m < c; m++) total += (double)row[m * col_stride] * wj[m];                            \
            out[i * k + j] = total;                                                                     \
        }                                                                                               \
    }

XENT_EXACT int64_t xent_row_dots(const void *values, int64_t is_f32, int64_t n, int64_t c, int64_t row_stride, int64_t col_stride,
                                 const double *w, int64_t k, double *out) {
    XENT_EXACT_BODY
    if (is_f32) {
        XENT_ROW_DOTS(float)
    } else {
        XENT_ROW_DOTS(double)
    }
    return n;
}

/* optax's integer-label loss from the kernel's row maximum and logsumexp (kernels.naive_logsumexp_from,
   its numpy twin, operation for operation): in the scores' type T, lse = (T)z_max + (T)(log_norm − z_max),
   then loss = (double)(lse − z[i, y]); NaN for a label outside [0, C). z[i, y] is z_true[i] where given
   (the kernel's copy of it, exact: no second read of the scores), else read from the scores. The rows
   whose lse is not finite are written to `bad` (the caller recomputes them by the full path); returns
   how many. */
#define XENT_NAIVE_LSE(T)                                                                               \
    for (int64_t i = 0; i < n; i++) {                                                                   \
        const T lse = (T)z_max[i] + (T)(log_norm[i] - z_max[i]);                                         \
        const int64_t y = label[i];                                                                     \
        const int ok = y >= 0 && y < c;                                                                 \
        out[i] = ok ? (double)(lse - (z_true ? (T)z_true[i] : ((const T *)scores)[i * c + y])) : NAN;    \
        if (!isfinite(lse)) bad[found++] = i;                                                           \
    }

XENT_EXACT int64_t xent_naive_lse(const void *scores, int64_t is_f32, int64_t n, int64_t c, const int64_t *label,
                                  const double *z_max, const double *log_norm, const double *z_true, double *out, int64_t *bad) {
    XENT_EXACT_BODY
    int64_t found = 0;
    if (is_f32) {
        XENT_NAIVE_LSE(float)
    } else {
        XENT_NAIVE_LSE(double)
    }
    return found;
}
