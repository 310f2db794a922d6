/* The fused logits kernel: one call per chunk of sparse-labelled logits, two passes over each row.

Computes what xentcli/kernels.py computes for logits with integer labels (see _logits_block there):
with m = max(z), s = z - m and rest = sum over j != argmax of exp(s_j),
    loss = log1p(rest) - s_y,  p_true = exp(s_y - log1p(rest)),  p_max = 1 / (1 + rest),
    entropy = log1p(rest) - sum_j exp(s_j) s_j / (1 + rest),
    margin = s_y - s_pred, or minus the largest s_j other than the argmax where the row is right,
    rank = 1 + #{j : z_j > z_y} + #{j < y : z_j == z_y} (ties ranked as the argmax breaks them: the
    first index first, so rank 1 is pred == y),  log_norm = m + log1p(rest).
The max term (exactly 1) is split off, which keeps losses as small as 4e-9 in float32. Sums are
accumulated in double. float32 rows use a polynomial expf (Cephes, relative error < 2e-7) that the
compiler vectorises; double rows use libm's exp. Rows holding a NaN, or whose maximum is +-inf,
are flagged in `special` and left to the numpy kernel, which owns the IEEE corner cases. The
labels are checked here too: rows whose label is unusable are scored as class 0, flagged in
`label_ok` and given a NaN loss.

The functions are called through ctypes (which releases the GIL, so worker threads run them in
parallel); the module object exists only so that the shared library can be found by import.
Version: XENT_KERNEL_VERSION below must match xentcli/native.py. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "_cmath.h"

#define XENT_KERNEL_VERSION 35

int64_t xent_kernel_version(void) { return XENT_KERNEL_VERSION; }

/* A bus error (SIGBUS) is what reading a memory-mapped input gives once another process has cut the
   file short under it (an NPY or Arrow file xent maps): instead of the process dying without a word,
   the outputs in progress are removed, one line goes to stderr (and with --json an error document to
   stdout) and xent exits with 2 (unusable input). Only async-signal-safe calls in the handler: unlink,
   write, pause, _exit. The first thread to fault does it; another faulting meanwhile waits for its
   exit. A bus error of another kind (a misaligned access: a defect, not an input) is not ours: the
   default action again, and the signal raised anew.
   Outputs are published for the handler, which may run on another thread, by writing a path's first
   byte last and clearing it first (sequentially consistent atomics), and never while the handler runs:
   it reads either a whole path or none. */
enum { BUS_OUTPUTS = 16, BUS_PATH = 4096 };
static char bus_line[1024], bus_document[2048];
static size_t bus_line_length, bus_document_length;
static char bus_outputs[BUS_OUTPUTS][BUS_PATH];
static char bus_folder[BUS_PATH]; /* a folder of outputs in progress (the tasks' rows): emptied, then removed */
static int bus_entered;

/* Every file in `folder`, then the folder itself, removed with system calls only (open, getdents64,
   unlinkat, close, rmdir: no opendir, which allocates); a few passes, since entries removed while
   the folder is listed may hide others. */
static void remove_folder(const char *folder) {
#ifdef __linux__
    static char entries[8192];
    for (int pass = 0; pass < 8; pass++) {
        const int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return;
        int removed = 0;
        long got;
        while ((got = syscall(SYS_getdents64, fd, entries, sizeof entries)) > 0) {
            for (long at = 0; at < got;) {
                const char *entry = entries + at;
                unsigned short length;
                memcpy(&length, entry + 16, sizeof length); /* struct linux_dirent64: d_ino, d_off, d_reclen, d_type, d_name */
                const char *name = entry + 19;
                if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))))
                    removed += unlinkat(fd, name, 0) == 0;
                at += length;
            }
        }
        close(fd);
        if (!removed) break;
    }
#endif
    rmdir(folder);
}

static void on_bus_error(int signum, siginfo_t *info, void *context) {
    (void)context;
    if (info == NULL || info->si_code != BUS_ADRERR) {
        signal(signum, SIG_DFL);
        raise(signum);
        return;
    }
    if (__atomic_exchange_n(&bus_entered, 1, __ATOMIC_SEQ_CST))
        for (;;) pause(); /* another thread is at it: it ends the process */
    for (int i = 0; i < BUS_OUTPUTS; i++)
        if (__atomic_load_n(&bus_outputs[i][0], __ATOMIC_SEQ_CST)) unlink(bus_outputs[i]);
    if (__atomic_load_n(&bus_folder[0], __ATOMIC_SEQ_CST)) remove_folder(bus_folder);
    ssize_t written = write(1, bus_document, bus_document_length); /* --json: the error document */
    written = write(2, bus_line, bus_line_length);
    (void)written;
    _exit(2);
}

static size_t copy_text(char *to, size_t room, const char *from) {
    size_t n = strlen(from);
    if (n >= room) n = room - 1;
    memcpy(to, from, n);
    return n;
}

/* `line` for stderr, `document` for stdout ("" for none), set before the handler is (re)installed. */
int64_t xent_catch_bus_errors(const char *line, const char *document) {
    if (__atomic_load_n(&bus_entered, __ATOMIC_SEQ_CST)) return 0;
    bus_line_length = copy_text(bus_line, sizeof bus_line, line);
    bus_document_length = copy_text(bus_document, sizeof bus_document, document);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_bus_error;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGBUS, &action, NULL) == 0;
}

static int64_t publish(char *to, const char *path) {
    const size_t n = strlen(path);
    if (n >= BUS_PATH) return 0;
    __atomic_store_n(&to[0], 0, __ATOMIC_SEQ_CST);
    if (n == 0) return 1;
    if (__atomic_load_n(&bus_entered, __ATOMIC_SEQ_CST)) return 0; /* the handler is reading the slots */
    memcpy(to + 1, path + 1, n); /* the rest and the terminating zero */
    __atomic_store_n(&to[0], path[0], __ATOMIC_SEQ_CST);
    return 1;
}

/* Slot `slot` (0 … BUS_OUTPUTS − 1) names `path` as an output to remove on a bus error ("" frees it). */
int64_t xent_bus_output(int64_t slot, const char *path) {
    if (slot < 0 || slot >= BUS_OUTPUTS) return 0;
    return publish(bus_outputs[slot], path);
}

/* `path` names the folder of outputs in progress to empty and remove on a bus error ("" forgets it). */
int64_t xent_bus_folder(const char *path) { return publish(bus_folder, path); }

static inline double exp_nonpositive_f64(double s) { return exp(s); }

#define SCAN_PIECE ((int64_t)1 << 30)
#define ARGMAX_BLOCK 64

/* The kernel, written once for both dtypes: T the element type, EXP its exp of s <= 0 and FLOOR a
   value under which that exp is 0 (s is raised to it in the product e*s, so that 0 * -inf is 0). */
#define XENT_DEFINE_KERNEL(SUFFIX, T, EXP, FLOOR)                                                        \
    /* largest and smallest score, how many beat z_y, how many are NaN (counted in int32 lanes, half  \
       the work of int64 ones, over pieces of at most SCAN_PIECE classes so that they cannot overflow) */ \
    static inline void scan_##SUFFIX(const T *z, int64_t num_classes, T zy, int64_t yi, T *top_out,    \
                                     T *bottom_out, int64_t *above_out, int64_t *nans_out) {             \
        T top = z[0], bottom = z[0];                                                                     \
        int64_t above = 0, nans = 0;                                                                     \
        for (int64_t lo = 0; lo < num_classes; lo += SCAN_PIECE) {                                       \
            const int64_t hi = num_classes - lo < SCAN_PIECE ? num_classes : lo + SCAN_PIECE;            \
            int32_t piece_above = 0, piece_nans = 0;                                                     \
            _Pragma("omp simd reduction(max:top) reduction(min:bottom) reduction(+:piece_above, piece_nans)") \
            for (int64_t j = lo; j < hi; j++) {                                                          \
                const T v = z[j];                                                                        \
                top = v > top ? v : top;                                                                 \
                bottom = v < bottom ? v : bottom;                                                        \
                piece_above += (v > zy) | ((v == zy) & (j < yi));                                        \
                piece_nans += v != v;                                                                    \
            }                                                                                            \
            above += piece_above, nans += piece_nans;                                                    \
        }                                                                                                \
        *top_out = top, *bottom_out = bottom, *above_out = above, *nans_out = nans;                      \
    }                                                                                                    \
    /* the first j with z[j] == top (top is in the row): blocks of ARGMAX_BLOCK compared in vector      \
       lanes, then the block holding it scalar (a scalar search from 0 was a sixth of a wide row's time) */ \
    static inline int64_t first_##SUFFIX(const T *z, int64_t num_classes, T top) {                      \
        int64_t lo = 0;                                                                                  \
        for (; lo + ARGMAX_BLOCK <= num_classes; lo += ARGMAX_BLOCK) {                                   \
            int32_t hit = 0;                                                                             \
            _Pragma("omp simd reduction(|:hit)")                                                         \
            for (int64_t j = lo; j < lo + ARGMAX_BLOCK; j++) hit |= z[j] == top;                         \
            if (hit) break;                                                                              \
        }                                                                                                \
        while (z[lo] != top) lo++;                                                                       \
        return lo;                                                                                       \
    }                                                                                                    \
    /* over z[lo:hi], with s = z - top: the sum of exp(s); with WANT_DETAIL that of exp(s) * s and the   \
       largest s (entropy, margin); with WANT_SQUARES that of exp(s)^2 (Σp², the Brier score). Called   \
       with constant flags, each use compiles to a loop of its own holding only its sums (a plain run's \
       rest alone took two thirds of the time of all four); rest's lanes add in the same order in each. */ \
    static inline __attribute__((always_inline)) void exps_##SUFFIX(                                     \
        const T *z, int64_t lo, int64_t hi, T top, const int want_detail, const int want_squares,       \
        double *rest_io, double *e_dot_s_io, double *squares_io, T *second_io) {                        \
        double rest = *rest_io, e_dot_s = *e_dot_s_io, squares = *squares_io;                            \
        T second = *second_io;                                                                           \
        _Pragma("omp simd reduction(+:rest, e_dot_s, squares) reduction(max:second)")                   \
        for (int64_t j = lo; j < hi; j++) {                                                              \
            const T s = z[j] - top;                                                                      \
            const T e = EXP(s);                                                                          \
            rest += (double)e;                                                                           \
            if (want_detail) {                                                                           \
                const T s_floor = s >= (FLOOR) ? s : (FLOOR);                                            \
                e_dot_s += (double)(e * s_floor);                                                        \
                second = s > second ? s : second;                                                        \
            }                                                                                            \
            if (want_squares) squares += (double)(e * e);                                                \
        }                                                                                                \
        *rest_io = rest, *e_dot_s_io = e_dot_s, *squares_io = squares, *second_io = second;             \
    }                                                                                                    \
    /* both sides of the argmax (which adds exp(0) = 1 and 0, kept apart) */                             \
    static inline __attribute__((always_inline)) void exps_around_##SUFFIX(                              \
        const T *z, int64_t num_classes, int64_t am, T top, const int want_detail, const int want_squares, \
        double *rest, double *e_dot_s, double *squares, T *second) {                                     \
        exps_##SUFFIX(z, 0, am, top, want_detail, want_squares, rest, e_dot_s, squares, second);          \
        exps_##SUFFIX(z, am + 1, num_classes, top, want_detail, want_squares, rest, e_dot_s, squares, second); \
    }                                                                                                    \
    static inline __attribute__((always_inline)) int64_t rows_##SUFFIX(                                  \
        const T *scores, int64_t n, int64_t num_classes, int64_t row_stride, const int64_t *y,          \
        int32_t detail, double *loss, double *p_true, double *p_max, double *entropy, double *margin,    \
        int64_t *rank, int64_t *pred, double *z_max, double *z_min, double *log_norm, uint8_t *special,  \
        double *p_squares, double *z_true) {                                                             \
        int64_t specials = 0;                                                                            \
        for (int64_t i = 0; i < n; i++) {                                                                \
            const T *z = scores + i * row_stride;                                                        \
            const T zy = z[y[i]];                                                                        \
            if (z_true) z_true[i] = (double)zy;                                                          \
            T top, bottom;                                                                               \
            int64_t above, nans;                                                                         \
            scan_##SUFFIX(z, num_classes, zy, y[i], &top, &bottom, &above, &nans);                       \
            special[i] = nans != 0 || isinf(top);                                                        \
            if (special[i]) {                                                                            \
                specials++;                                                                              \
                continue;                                                                                \
            }                                                                                            \
            const int64_t am = first_##SUFFIX(z, num_classes, top);                                      \
            /* the classes before the argmax, then after it; the argmax adds exp(0) = 1 and 0 */         \
            double rest = 0.0, e_dot_s = 0.0, squares = 0.0;                                             \
            T second = -INFINITY;                                                                        \
            if (detail && p_squares)                                                                     \
                exps_around_##SUFFIX(z, num_classes, am, top, 1, 1, &rest, &e_dot_s, &squares, &second);  \
            else if (detail)                                                                             \
                exps_around_##SUFFIX(z, num_classes, am, top, 1, 0, &rest, &e_dot_s, &squares, &second);  \
            else if (p_squares)                                                                          \
                exps_around_##SUFFIX(z, num_classes, am, top, 0, 1, &rest, &e_dot_s, &squares, &second);  \
            else                                                                                         \
                exps_around_##SUFFIX(z, num_classes, am, top, 0, 0, &rest, &e_dot_s, &squares, &second);  \
            const double lse = log1p(rest), s_y = (double)zy - (double)top;                            \
            loss[i] = lse - s_y;                                                                         \
            p_true[i] = exp(s_y - lse);                                                                  \
            p_max[i] = 1.0 / (1.0 + rest);                                                               \
            rank[i] = 1 + above;                                                                         \
            pred[i] = am;                                                                                \
            z_max[i] = (double)top;                                                                      \
            z_min[i] = (double)bottom;                                                                   \
            log_norm[i] = (double)top + lse;                                                             \
            if (p_squares) p_squares[i] = (1.0 + squares) / ((1.0 + rest) * (1.0 + rest));              \
            if (detail) {                                                                                \
                entropy[i] = lse - e_dot_s / (1.0 + rest);                                               \
                margin[i] = am == y[i] ? -(double)second : s_y;                                          \
            }                                                                                            \
        }                                                                                                \
        return specials;                                                                                 \
    }

XENT_DEFINE_KERNEL(f32, float, exp_nonpositive_f32, -87.0f)
XENT_DEFINE_KERNEL(f64, double, exp_nonpositive_f64, -745.0)

/* Up to NARROW_MAX_CLASSES classes, float32 rows are taken LANES at a time, transposed so that each
   SIMD lane holds one row: every step is then a vertical vector operation over LANES rows (short
   rows would spend more on horizontal reductions and loop set-up than on arithmetic), and log1p
   and exp of the per-row results vectorise too (in float: within a few ulp, inside the 1e-6
   guarantee). LANES rows of work arrays stay in the L1 cache. */
#define NARROW_MAX_CLASSES 32
#define LANES 64
#define XENT_LANES _Pragma("omp simd")

static inline __attribute__((always_inline)) int64_t narrow_f32(
    const float *scores, int64_t n, int64_t num_classes, int64_t row_stride, const int64_t *y, int32_t detail,
    double *loss, double *p_true, double *p_max, double *entropy, double *margin, int64_t *rank, int64_t *pred,
    double *z_max, double *z_min, double *log_norm, uint8_t *special, double *p_squares, double *z_true) {
    int64_t specials = 0;
    const int32_t classes = (int32_t)num_classes; /* an int32 class index compares with am[] in one vector op */
    float t[NARROW_MAX_CLASSES][LANES];
    for (int64_t i0 = 0; i0 < n; i0 += LANES) {
        const int64_t width = n - i0 < LANES ? n - i0 : LANES;
        float zy[LANES], top[LANES], bottom[LANES], second[LANES];
        int32_t above[LANES], nans[LANES], am[LANES], yl[LANES];
        double rest[LANES], e_dot_s[LANES], squares[LANES];
        for (int64_t k = 0; k < LANES; k++) { /* lanes past the end repeat the last row */
            const int64_t row = i0 + (k < width ? k : width - 1);
            const float *z = scores + row * row_stride;
            for (int32_t j = 0; j < classes; j++) t[j][k] = z[j];
            zy[k] = z[y[row]];
            yl[k] = (int32_t)y[row];
        }
        XENT_LANES for (int k = 0; k < LANES; k++) {
            top[k] = bottom[k] = t[0][k];
            above[k] = nans[k] = 0;
            am[k] = 0;
            rest[k] = e_dot_s[k] = squares[k] = 0.0;
            second[k] = -INFINITY;
        }
        for (int32_t j = 0; j < classes; j++) {
            XENT_LANES for (int k = 0; k < LANES; k++) {
                const float v = t[j][k];
                top[k] = v > top[k] ? v : top[k];
                bottom[k] = v < bottom[k] ? v : bottom[k];
                above[k] += (v > zy[k]) | ((v == zy[k]) & (j < yl[k]));
                nans[k] += v != v;
            }
        }
        for (int32_t j = classes - 1; j >= 0; j--) /* the first index of the maximum */
            XENT_LANES for (int k = 0; k < LANES; k++) am[k] = t[j][k] == top[k] ? j : am[k];
        /* the argmax adds exp(0) = 1, kept apart; e_dot_s and second only for entropy and margin */
        if (detail) {
            for (int32_t j = 0; j < classes; j++) {
                XENT_LANES for (int k = 0; k < LANES; k++) {
                    const float s = t[j][k] - top[k];
                    const float other = j == am[k] ? 0.0f : 1.0f;
                    const float e = exp_nonpositive_f32(s) * other;
                    rest[k] += (double)e;
                    e_dot_s[k] += (double)(e * (s >= -87.0f ? s : -87.0f));
                    squares[k] += (double)(e * e);
                    second[k] = other != 0.0f && s > second[k] ? s : second[k];
                }
            }
        } else if (p_squares) { /* --calibration: Σp² for the Brier score, from the same exps */
            for (int32_t j = 0; j < classes; j++) {
                XENT_LANES for (int k = 0; k < LANES; k++) {
                    const float other = j == am[k] ? 0.0f : 1.0f;
                    const float e = exp_nonpositive_f32(t[j][k] - top[k]) * other;
                    rest[k] += (double)e;
                    squares[k] += (double)(e * e);
                }
            }
        } else {
            for (int32_t j = 0; j < classes; j++) {
                XENT_LANES for (int k = 0; k < LANES; k++) {
                    const float other = j == am[k] ? 0.0f : 1.0f;
                    rest[k] += (double)(exp_nonpositive_f32(t[j][k] - top[k]) * other);
                }
            }
        }
        double out_lse[LANES], out_s_y[LANES], out_p_true[LANES];
        XENT_LANES for (int k = 0; k < LANES; k++) {
            out_lse[k] = (double)log1p_nonnegative_f32((float)rest[k]);
            out_s_y[k] = (double)zy[k] - (double)top[k];
            out_p_true[k] = (double)exp_nonpositive_f32((float)(out_s_y[k] - out_lse[k]));
        }
        int64_t block_specials = 0;
        const int64_t *restrict yb = y + i0;
        uint8_t *restrict special_b = special + i0;
        double *restrict loss_b = loss + i0, *restrict p_true_b = p_true + i0, *restrict p_max_b = p_max + i0;
        double *restrict z_max_b = z_max + i0, *restrict z_min_b = z_min + i0, *restrict log_norm_b = log_norm + i0;
        int64_t *restrict rank_b = rank + i0, *restrict pred_b = pred + i0;
#pragma omp simd reduction(+ : block_specials)
        for (int64_t k = 0; k < width; k++) {
            const uint8_t odd = (nans[k] != 0) | (top[k] == INFINITY) | (top[k] == -INFINITY);
            special_b[k] = odd;
            block_specials += odd;
            loss_b[k] = out_lse[k] - out_s_y[k];
            p_true_b[k] = out_p_true[k];
            p_max_b[k] = 1.0 / (1.0 + rest[k]);
            rank_b[k] = 1 + above[k];
            pred_b[k] = am[k];
            z_max_b[k] = (double)top[k];
            z_min_b[k] = (double)bottom[k];
            log_norm_b[k] = (double)top[k] + out_lse[k];
        }
        if (z_true) {
            double *restrict z_true_b = z_true + i0;
            XENT_LANES for (int64_t k = 0; k < width; k++) z_true_b[k] = (double)zy[k];
        }
        if (p_squares) {
            double *restrict squares_b = p_squares + i0;
            XENT_LANES for (int64_t k = 0; k < width; k++) squares_b[k] = (1.0 + squares[k]) / ((1.0 + rest[k]) * (1.0 + rest[k]));
        }
        if (detail) {
            double *restrict entropy_b = entropy + i0, *restrict margin_b = margin + i0;
            XENT_LANES for (int64_t k = 0; k < width; k++) {
                entropy_b[k] = out_lse[k] - e_dot_s[k] / (1.0 + rest[k]);
                margin_b[k] = am[k] == yb[k] ? -(double)second[k] : out_s_y[k];
            }
        }
        specials += block_specials;
    }
    return specials;
}

#define XENT_KERNEL_ARGS(T)                                                                             \
    const T *scores, int64_t n, int64_t num_classes, int64_t row_stride, int64_t *y, int32_t detail,       \
        double *loss, double *p_true, double *p_max, double *entropy, double *margin, int64_t *rank,    \
        int64_t *pred, double *z_max, double *z_min, double *log_norm, uint8_t *special, double *p_squares, \
        double *z_true
#define XENT_KERNEL_CALL                                                                                \
    scores, n, num_classes, row_stride, y, detail, loss, p_true, p_max, entropy, margin, rank, pred, z_max, \
        z_min, log_norm, special, p_squares, z_true

/* The labels' side, around either kernel: a label is usable when it is a whole number in
   [0, num_classes) (kernels.label_classes states the same rule); unusable rows are scored as
   class 0 (y) and their loss is then NaN. */
static inline void usable_labels(const int64_t *restrict label, const uint8_t *restrict label_is_int, int64_t n,
                                 int64_t num_classes, int64_t *restrict y, uint8_t *restrict label_ok) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const uint8_t ok = label_is_int[i] & (label[i] >= 0) & (label[i] < num_classes);
        label_ok[i] = ok;
        y[i] = ok ? label[i] : 0;
    }
}

static inline void unusable_losses(double *restrict loss, const uint8_t *restrict label_ok, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) loss[i] = label_ok[i] ? loss[i] : NAN;
}

/* label, label_is_int: [n] as the sources give them; label_ok [n] and y [n] are written */
#define XENT_LABEL_ARGS const int64_t *label, const uint8_t *label_is_int, uint8_t *label_ok

XENT_CLONES int64_t xent_sparse_logits_f32(XENT_LABEL_ARGS, XENT_KERNEL_ARGS(float)) {
    usable_labels(label, label_is_int, n, num_classes, y, label_ok);
    const int64_t specials = num_classes <= NARROW_MAX_CLASSES ? narrow_f32(XENT_KERNEL_CALL) : rows_f32(XENT_KERNEL_CALL);
    unusable_losses(loss, label_ok, n);
    return specials;
}

XENT_CLONES int64_t xent_sparse_logits_f64(XENT_LABEL_ARGS, XENT_KERNEL_ARGS(double)) {
    usable_labels(label, label_is_int, n, num_classes, y, label_ok);
    const int64_t specials = rows_f64(XENT_KERNEL_CALL);
    unusable_losses(loss, label_ok, n);
    return specials;
}

/* A binary head of float32 logits z with 0/1 labels, row by row as the two-class kernel scores the
   rows [0, z] (binary_logit_row in _cmath.h, vectorised over rows without the transposition): loss,
   p_true, p_max, log_norm, pred; rank 1 when pred is the label, else 2; and the score itself (the
   row's extremes), as binary.binary_stats makes them. Returns -1, with nothing promised of the
   outputs, when a score is not finite or a label is not 0 or 1: the general path takes the chunk.
   (The plain score pass takes such a chunk through xent_binary_tally_f32 in _ctally.c, which keeps
   none of these arrays.) */
XENT_CLONES int64_t xent_binary_logits_f32(const float *restrict z, const int64_t *restrict label, int64_t n, float cut,
                                           double *restrict loss, double *restrict p_true, double *restrict p_max,
                                           int64_t *restrict pred, int64_t *restrict rank, double *restrict score,
                                           double *restrict log_norm) {
    int64_t bad = 0;
#pragma omp simd reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) {
        const float x = z[i];
        const int64_t y = label[i];
        bad += !(x - x == 0.0f) | (y != 0 && y != 1);
        binary_logit_row(x, y, cut, &loss[i], &p_true[i], &p_max[i], &log_norm[i], &pred[i]);
        rank[i] = pred[i] == y ? 1 : 2;
        score[i] = (double)x;
    }
    return bad ? -1 : n;
}

/* A multi-label sigmoid head's chunk element by element (binary.py's fast path: finite float32
   logits, targets in [0, 1], no weights, no smoothing): per row the summed loss and the labels
   predicted right, its largest and smallest score; per label (added to) the positive targets, the
   positive predictions, the right ones, the true positives and the summed loss. The loss is the
   stable form max(z, 0) − z·t + log1p(exp(−|z|)) with the float32 exp and log1p above (each within
   2e-7); max(z, 0) − z·t is one fused multiply-add, rounded once from its exact value (with t near 1
   and z large the difference cancels, which a float32 product first would not survive), and both
   terms are ≥ 0, so an element's loss is within 4e-7 of its float64 value; rows and labels sum the
   elements in float64. Returns -1, with nothing promised of the outputs, when a score is not finite
   or a target lies outside [0, 1] (NaN included): the caller's general path takes the chunk.
   Blocks of ~4,096 elements: their losses (and the check) first, in a loop of floats only (it
   vectorises on float lanes; mixed with the doubles it ran at half their width), then each row's
   counts on float and int32 lanes, then its float64 sums; the per-label counts kept in int32 and
   added into the int64 outputs at the end (the right ones derived: rows − predicted − positive +
   2 · true positives). */
XENT_CLONES int64_t xent_sigmoid_f32(const float *restrict z, const float *restrict t, int64_t n, int64_t k, float cut,
                                     double *restrict row_loss, int64_t *restrict row_right, int64_t *restrict lab_pos,
                                     int64_t *restrict lab_pred, int64_t *restrict lab_correct, int64_t *restrict lab_tp,
                                     double *restrict lab_loss, double *restrict row_max, double *restrict row_min) {
    if (k <= 0) return -1; /* no labels: nothing to score here (the sources refuse such scores) */
    enum { BLOCK = 4096, FLUSH_ROWS = 1 << 30 };
    const int64_t rows_per_block = k < BLOCK ? BLOCK / k : 1;
    float *block_loss = malloc((size_t)(rows_per_block * k) * sizeof(float));
    int32_t *counts = calloc((size_t)(3 * k), sizeof(int32_t));
    if (!block_loss || !counts) {
        free(block_loss);
        free(counts);
        return -2;
    }
    int32_t *restrict c_pos = counts, *restrict c_pred = counts + k, *restrict c_tp = counts + 2 * k;
    int64_t held = 0; /* rows in the int32 counts */
    int64_t result = n;
    for (int64_t i0 = 0; i0 < n; i0 += rows_per_block) {
        const int64_t rows = i0 + rows_per_block < n ? rows_per_block : n - i0;
        const float *restrict zb = z + i0 * k, *restrict tb = t + i0 * k;
        int32_t bad = 0;
#pragma omp simd reduction(| : bad)
        for (int64_t e = 0; e < rows * k; e++) {
            const float x = zb[e], target = tb[e];
            bad |= !(x - x == 0.0f) | !(target >= 0.0f && target <= 1.0f);
            const float softplus = log1p_nonnegative_f32(exp_nonpositive_f32(-fabsf(x)));
            block_loss[e] = fmaf(-x, target, x > 0.0f ? x : 0.0f) + softplus;
        }
        if (bad) {
            result = -1;
            break;
        }
        for (int64_t r = 0; r < rows; r++) {
            const int64_t i = i0 + r;
            const float *restrict zi = zb + r * k, *restrict ti = tb + r * k, *restrict li = block_loss + r * k;
            int32_t pred_n = 0, pos_n = 0, tp_n = 0;
            float top = zi[0], bottom = zi[0];
#pragma omp simd reduction(+ : pred_n, pos_n, tp_n) reduction(max : top) reduction(min : bottom)
            for (int64_t j = 0; j < k; j++) {
                const float x = zi[j];
                top = x > top ? x : top;
                bottom = x < bottom ? x : bottom;
                const int32_t pred = x >= cut, positive = ti[j] >= 0.5f, tp = pred & positive;
                pred_n += pred;
                pos_n += positive;
                tp_n += tp;
                c_pos[j] += positive;
                c_pred[j] += pred;
                c_tp[j] += tp;
            }
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < k; j++) {
                const double loss = (double)li[j];
                sum += loss;
                lab_loss[j] += loss;
            }
            row_loss[i] = sum;
            row_right[i] = k - pred_n - pos_n + 2 * (int64_t)tp_n;
            row_max[i] = (double)top;
            row_min[i] = (double)bottom;
            if (++held == FLUSH_ROWS || i == n - 1) {
                for (int64_t j = 0; j < k; j++) {
                    lab_pos[j] += c_pos[j];
                    lab_pred[j] += c_pred[j];
                    lab_tp[j] += c_tp[j];
                    lab_correct[j] += held - c_pred[j] - c_pos[j] + 2 * (int64_t)c_tp[j];
                    c_pos[j] = c_pred[j] = c_tp[j] = 0;
                }
                held = 0;
            }
        }
    }
    free(counts);
    free(block_loss);
    return result;
}

static struct PyModuleDef xent_module = {
    PyModuleDef_HEAD_INIT, "_ckernel", "xent's fused logits kernel (called through ctypes)", -1, NULL,
};

PyMODINIT_FUNC PyInit__ckernel(void) { return PyModule_Create(&xent_module); }
