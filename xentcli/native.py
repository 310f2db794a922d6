"""The fused C kernel for logits with integer labels (xentcli/_ckernel.c), loaded through ctypes.

The extension is optional: built by `pip install` where a C compiler exists. Without it (or with
XENT_KERNEL=numpy in the environment) every chunk goes through the numpy kernels in kernels.py,
which give the same results within the float32 guarantee. ctypes releases the GIL during the call,
so the engine's worker threads run the kernel in parallel.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli.config import kernel_choice

KERNEL_VERSION = 35  # XENT_KERNEL_VERSION in _ckernel.c: a stale build is not used

_P, _I64 = ctypes.c_void_p, ctypes.c_int64
N_RULES = 16  # N_RULES in _ctally.c (checked at load: layout())
N_RANKED, EXAMPLES = 2, 5  # N_RANKED and EXAMPLES in _ctally.c


class _TallyIn(ctypes.Structure):
    """xent_tally_in in _ctally.c, field for field."""

    _fields_ = (
        [(name, _I64) for name in ("n", "num_classes", "top_k", "kind", "off_rules")]
        + [(name, _P) for name in ("loss", "p_true", "p_max", "top", "bottom", "log_norm", "label", "pred", "rank",
                                   "label_is_int", "label_ok", "ignored")]
        + [(name, ctypes.c_double) for name in ("log_gamma", "min_indexable", "overflow_limit", "probs_tolerance",
                                                "log_probs_tolerance", "outlier", "confident",
                                                "not_log_probs_tolerance")]
    )


class _TallyOut(ctypes.Structure):
    """xent_tally_out in _ctally.c, field for field."""

    _fields_ = (
        [(name, _I64) for name in ("counted", "correct", "top_k_hits", "keys", "zeros", "negatives", "int_labels",
                                   "label_min", "label_max", "at_num_classes")]
        + [("hits", _I64 * N_RULES), ("ranked_rows", (_I64 * EXAMPLES) * N_RANKED), ("ranked_count", _I64 * N_RANKED)]
        + [(name, ctypes.c_double) for name in ("loss_min", "loss_max", "max_abs")]
        + [(name, _P) for name in ("support", "class_correct", "predicted", "class_loss", "class_p_true", "key_out")]
    )


def _load() -> tuple[dict[np.dtype, ctypes._CFuncPtr], ctypes._CFuncPtr, ctypes.CDLL] | None:
    if kernel_choice() == "numpy":
        return None
    try:
        from xentcli import _ckernel  # type: ignore[attr-defined]

        library = ctypes.CDLL(_ckernel.__file__)
    except (ImportError, OSError):
        return None
    library.xent_kernel_version.restype = ctypes.c_int64
    if library.xent_kernel_version() != KERNEL_VERSION or _c_layout(library) != layout():
        return None
    pointer, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    functions = {}
    for dtype, name in ((np.dtype(np.float32), "xent_sparse_logits_f32"), (np.dtype(np.float64), "xent_sparse_logits_f64")):
        function = getattr(library, name)
        function.restype = i64
        function.argtypes = [pointer] * 3 + [pointer, i64, i64, i64, pointer, i32] + [pointer] * 13
        functions[dtype] = function
    library.xent_tally.restype = i64
    library.xent_tally.argtypes = [ctypes.POINTER(_TallyIn), ctypes.POINTER(_TallyOut)]
    library.xent_sigmoid_f32.restype = i64
    library.xent_binary_logits_f32.restype = i64
    library.xent_binary_logits_f32.argtypes = [pointer, pointer, i64, ctypes.c_float] + [pointer] * 7
    library.xent_binary_tally_f32.restype = i64
    library.xent_binary_tally_f32.argtypes = [pointer, pointer, i64, i64, ctypes.c_float, ctypes.POINTER(_TallyIn),
                                              ctypes.POINTER(_TallyOut), pointer, pointer]
    library.xent_sigmoid_f32.argtypes = [pointer, pointer, i64, i64, ctypes.c_float] + [pointer] * 9
    library.xent_group_sums.restype = i64
    library.xent_group_sums.argtypes = [pointer, i64, i64, i64] + [pointer] * 8 + [pointer, i64, i64] + [pointer] * 5
    library.xent_block_moments.restype = i64
    library.xent_block_moments.argtypes = [pointer] * 2 + [i64] + [pointer] * 3
    library.xent_key_range.restype = i64
    library.xent_key_range.argtypes = [pointer, i64, pointer]
    library.xent_sketch_keys.restype = i64
    library.xent_sketch_keys.argtypes = [pointer, i64, ctypes.c_double, pointer]
    library.xent_key_counts.restype = i64
    library.xent_key_counts.argtypes = [pointer, i64, i64, i64, pointer, pointer]
    library.xent_unique_counts.restype = i64
    library.xent_unique_counts.argtypes = [pointer, i64, pointer, pointer]
    library.xent_row_hashes.restype = i64
    library.xent_row_hashes.argtypes = [i64, pointer, i64, pointer]
    library.xent_group_merge.restype = i64
    library.xent_group_merge.argtypes = [pointer, i64, i64] + [pointer] * 6 + [i64] + [pointer] * 6
    library.xent_calibration_cells.restype = i64
    library.xent_calibration_cells.argtypes = [pointer, pointer, i64, i64, pointer]
    library.xent_calibration_sums.restype = i64
    library.xent_calibration_sums.argtypes = [pointer, pointer, pointer, i64, i64] + [pointer] * 10
    library.xent_row_dots.restype = i64
    library.xent_row_dots.argtypes = [pointer] + [i64] * 5 + [pointer, i64, pointer]
    library.xent_naive_lse.restype = i64
    library.xent_naive_lse.argtypes = [pointer] + [i64] * 3 + [pointer] * 6
    library.xent_catch_bus_errors.restype = i64
    library.xent_catch_bus_errors.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    library.xent_bus_output.restype = i64
    library.xent_bus_output.argtypes = [i64, ctypes.c_char_p]
    library.xent_bus_folder.restype = i64
    library.xent_bus_folder.argtypes = [ctypes.c_char_p]
    library.xent_bootstrap.restype = i64
    library.xent_bootstrap.argtypes = [i64, i64, i64, i64, ctypes.c_uint64] + [pointer] * 4 + [pointer, i64, i64, pointer, i64] + [pointer] * 4
    return functions, library.xent_tally, library


def layout() -> tuple[int, ...]:
    """The sizes of the tally's structs and its constants as declared here (see xent_tally_layout)."""
    return (ctypes.sizeof(_TallyIn), ctypes.sizeof(_TallyOut), N_RULES, N_RANKED, EXAMPLES)


def _c_layout(library: ctypes.CDLL) -> tuple[int, ...]:
    """The same, as the compiled C declares them."""
    values = (ctypes.c_int64 * 8)()
    if not hasattr(library, "xent_tally_layout"):
        return ()
    library.xent_tally_layout.restype = ctypes.c_int64
    library.xent_tally_layout.argtypes = [ctypes.c_void_p]
    count = library.xent_tally_layout(values)
    return tuple(values[:count])


_LOADED = _load()
_FUNCTIONS, _TALLY, _LIBRARY = _LOADED if _LOADED is not None else (None, None, None)


def _held(library: ctypes.CDLL | None) -> ctypes.PyDLL | None:
    """The same library through ctypes.PyDLL, whose calls keep the GIL: for the short calls the main
    thread makes between chunks (a merge takes microseconds; a CDLL call releases the GIL and then
    waits for a worker thread to give it back, up to a switch interval of 5 ms)."""
    if library is None:
        return None
    held = ctypes.PyDLL(library._name)
    held.xent_group_merge.restype = library.xent_group_merge.restype
    held.xent_group_merge.argtypes = library.xent_group_merge.argtypes
    return held


_HELD = _held(_LIBRARY)


# glibc's mallopt parameters (malloc.h) and the values the engine asks for.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 32 << 20  # the largest M_MMAP_THRESHOLD glibc accepts on 64-bit systems


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed chunk-sized blocks instead of returning them to the system.

    Every chunk allocates a few MiB of fresh arrays. By default glibc serves blocks over 128 KiB
    (rising as they are freed) with a new memory mapping, and a worker thread's arena hands freed
    memory back as soon as 128 KiB lie free at its top: either way each chunk page-faults its arrays
    in again, which cost as much system time as the 10-class arithmetic. Blocks below 32 MiB now
    come from the heap and up to 32 MiB free stay there, so memory stays bounded by the chunks in
    flight. True when applied (glibc only; elsewhere nothing changes). Runs once per process.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))


_BUS_SLOTS = 16  # BUS_OUTPUTS in _ckernel.c
_bus_slots: dict[str, int] = {}
_bus_lock = threading.Lock()
_bus_folder: list[str] = []  # the folder bus_folder named


def catch_bus_errors(line: str, document: str = "") -> bool:
    """A bus error (a memory-mapped input cut short by another process) ends the process with
    `line` on stderr (and `document` on stdout) and exit 2, the outputs named by bus_output removed,
    instead of a silent death by SIGBUS (xent_catch_bus_errors). False: no C library, nothing changed."""
    if _LIBRARY is None:
        return False
    return bool(_LIBRARY.xent_catch_bus_errors(line.encode("utf-8", "backslashreplace"), document.encode("utf-8", "backslashreplace")))


def bus_output(path: str, held: bool) -> None:
    """Name (held) or forget an output file in progress, for the bus error's handler to remove."""
    if _LIBRARY is None or (_bus_folder and os.path.dirname(os.path.abspath(path)) == _bus_folder[0]):
        return  # the folder's removal removes it
    with _bus_lock:
        if held:
            free = sorted(set(range(_BUS_SLOTS)) - set(_bus_slots.values()))
            if free and _LIBRARY.xent_bus_output(free[0], os.fsencode(path)):
                _bus_slots[path] = free[0]
        elif path in _bus_slots:
            _LIBRARY.xent_bus_output(_bus_slots.pop(path), b"")


def tally_rules() -> tuple[str, ...]:
    """The rule codes of the C tally's hit counters, in its order (xent_tally_rules in _ctally.c)."""
    if _LIBRARY is None:
        return ()
    _LIBRARY.xent_tally_rules.restype = ctypes.c_char_p
    return tuple(_LIBRARY.xent_tally_rules().decode().split())


def name() -> str:
    """Which kernel scores logits with integer labels: "c" or "numpy"."""
    return "c" if _FUNCTIONS is not None else "numpy"


def has_tally() -> bool:
    return _TALLY is not None


def supports(scores: npt.NDArray) -> bool:
    return _FUNCTIONS is not None and scores.dtype in _FUNCTIONS and scores.ndim == 2 and scores.shape[1] > 0


def sparse_logits(
    scores: npt.NDArray, label: npt.NDArray[np.int64], label_is_int: npt.NDArray[np.bool_], detail: bool, squares: bool = False,
    z_true: bool = False,
) -> dict[str, npt.NDArray]:
    """By name: loss, p_true, p_max, entropy, margin, rank, pred, z_max, z_min, log_norm, the special
    rows, label_ok and y for a [n, C] block of logits with integer labels (`label_is_int`: whether
    each is a whole number). label_ok: the label is whole and in [0, C); y: the class each row was
    scored as (the label, or 0 where unusable, whose loss is NaN). The special rows (a NaN, or a
    ±inf maximum; the kernel counts them) hold garbage and must be recomputed by the numpy kernel. entropy and margin are
    filled only with `detail`; p_squares (Σ_c p_c², for the Brier score) only with `squares`;
    z_true (the score of the class y, exact: optax's loss needs it) only with `z_true`."""
    assert _FUNCTIONS is not None
    if scores.strides[1] != scores.itemsize or scores.strides[0] % scores.itemsize:
        scores = np.ascontiguousarray(scores)
    label = np.ascontiguousarray(label, dtype=np.int64)
    label_is_int = np.ascontiguousarray(label_is_int, dtype=np.bool_)
    n, num_classes = scores.shape
    loss, p_true, p_max, entropy, margin, z_max, z_min, log_norm = np.empty((8, n))
    rank, pred, y = np.empty((3, n), dtype=np.int64)
    special, label_ok = np.empty((2, n), dtype=np.bool_)
    p_squares = np.empty(n) if squares else None
    true_score = np.empty(n) if z_true else None
    specials = _FUNCTIONS[scores.dtype](
        label.ctypes.data, label_is_int.ctypes.data, label_ok.ctypes.data,
        scores.ctypes.data, n, num_classes, scores.strides[0] // scores.itemsize, y.ctypes.data, int(detail),
        loss.ctypes.data, p_true.ctypes.data, p_max.ctypes.data, entropy.ctypes.data, margin.ctypes.data,
        rank.ctypes.data, pred.ctypes.data, z_max.ctypes.data, z_min.ctypes.data, log_norm.ctypes.data,
        special.ctypes.data, None if p_squares is None else p_squares.ctypes.data,
        None if true_score is None else true_score.ctypes.data,
    )
    redo = np.flatnonzero(special) if specials else np.empty(0, np.int64)
    return {"loss": loss, "p_true": p_true, "p_max": p_max, "entropy": entropy, "margin": margin, "rank": rank, "pred": pred,
            "z_max": z_max, "z_min": z_min, "log_norm": log_norm, "special": redo, "label_ok": label_ok, "y": y,
            "p_squares": p_squares, "z_true": true_score}


def _address(values: npt.NDArray | None, dtype: type) -> tuple[int | None, npt.NDArray | None]:
    """The address of a contiguous array of `dtype` (converted if need be; kept alive by the caller)."""
    if values is None:
        return None, None
    values = np.ascontiguousarray(values, dtype=dtype)
    return values.ctypes.data, values


# The per-row inputs of the C tally (xent_tally_in) and their C types; None allowed for bottom, log_norm.
TALLY_INPUTS = {
    "loss": np.float64, "p_true": np.float64, "p_max": np.float64, "top": np.float64, "bottom": np.float64,
    "log_norm": np.float64, "label": np.int64, "pred": np.int64, "rank": np.int64, "label_is_int": np.bool_,
    "label_ok": np.bool_, "ignored": np.bool_,
}


def tally(rows: dict[str, npt.NDArray | None], kind: int, num_classes: int, top_k: int, *, codes: tuple[str, ...],
          ranked_codes: tuple[str, ...], per_class: bool = True, off_rules: int = 0, **limits: float) -> dict[str, Any]:
    """The C tally of one chunk's per-row values (`rows`: TALLY_INPUTS by name): the fields of
    tally.ChunkTally (see _ctally.c); without `per_class` the per-class sums are left out (None);
    `off_rules`: a bit per rule (in `codes` order) that counts nothing."""
    assert _TALLY is not None and len(codes) == N_RULES and len(ranked_codes) == N_RANKED
    n = rows["loss"].size  # type: ignore[union-attr]
    keep = []  # the converted arrays, alive until the call returns
    arrays = {}
    for name, dtype in TALLY_INPUTS.items():
        arrays[name], converted = _address(rows[name], dtype)
        keep.append(converted)
    args = _TallyIn(n=n, num_classes=num_classes, top_k=top_k, kind=kind, off_rules=off_rules, **arrays, **limits)
    call = _TallyCall(n, num_classes if per_class else 0)
    _TALLY(ctypes.byref(args), ctypes.byref(call.out))
    return call.fields(codes, ranked_codes)


def binary_tally(z: npt.NDArray[np.float32], label: npt.NDArray, cut: float, top_k: int, *, codes: tuple[str, ...],
                 ranked_codes: tuple[str, ...], off_rules: int, **limits: float
                 ) -> tuple[dict[str, Any], npt.NDArray[np.float64], npt.NDArray[np.uint8]] | None:
    """xent_binary_tally_f32 in _ctally.c: a binary head's float32 logits [n] and 0/1 labels (integers
    or booleans of any width) scored and tallied in one pass. The fields of tally.ChunkTally (as
    `tally` gives them for binary_logits_f32's arrays, per-class sums included), the loss and the
    prediction (0/1) per row; None when a row is not plain (a score not finite or beyond the overflow
    limit, a label not 0 or 1): the general path takes the chunk."""
    assert _LIBRARY is not None and len(codes) == N_RULES and len(ranked_codes) == N_RANKED
    z = np.ascontiguousarray(z, np.float32)
    if label.dtype.kind not in "biu" or label.itemsize not in (1, 2, 4, 8):
        return None
    label = np.ascontiguousarray(label, label.dtype.newbyteorder("="))  # the C pass reads native bytes: '>i2' 256 is not 1
    n = z.size
    loss, pred = np.empty(n), np.empty(n, np.uint8)
    args = _TallyIn(n=n, num_classes=2, top_k=top_k, kind=0, off_rules=off_rules, **limits)
    call = _TallyCall(n, 2)
    done = _LIBRARY.xent_binary_tally_f32(z.ctypes.data, label.ctypes.data, label.itemsize, n, ctypes.c_float(cut),
                                          ctypes.byref(args), ctypes.byref(call.out), loss.ctypes.data, pred.ctypes.data)
    if done < 0:
        return None
    return call.fields(codes, ranked_codes), loss, pred


class _TallyCall:
    """The outputs of one C tally of n rows: the struct, its per-class arrays (`width` classes; 0:
    none) and the sketch keys, read back as the fields of tally.ChunkTally."""

    def __init__(self, n: int, width: int) -> None:
        self.width = width
        self.counts = np.zeros((3, width), np.int64)
        self.sums = np.zeros((2, width), np.float64)
        self.keys = np.empty(n, np.int32)
        pointers = {name: values.ctypes.data if width else None for name, values in (
            ("support", self.counts[0]), ("class_correct", self.counts[1]), ("predicted", self.counts[2]),
            ("class_loss", self.sums[0]), ("class_p_true", self.sums[1]))}
        self.out = _TallyOut(**pointers, key_out=self.keys.ctypes.data)

    def fields(self, codes: tuple[str, ...], ranked_codes: tuple[str, ...]) -> dict[str, Any]:
        out, counts, sums = self.out, self.counts, self.sums
        names = ("support", "class_correct", "predicted", "class_loss", "class_p_true")
        classes = dict(zip(names, (counts[0], counts[1], counts[2], sums[0], sums[1]))) if self.width else dict.fromkeys(names)
        return {
            "counted": out.counted, "correct": out.correct, "top_k_hits": out.top_k_hits,
            "loss_min": out.loss_min, "loss_max": out.loss_max, **classes, "keys": self.keys[: out.keys],
            "zeros": out.zeros, "negatives": out.negatives, "hits": dict(zip(codes, out.hits)),
            "ranked": {code: np.array(out.ranked_rows[r][: out.ranked_count[r]], dtype=np.int64)
                       for r, code in enumerate(ranked_codes)},
            "max_abs": out.max_abs, "int_labels": out.int_labels,
            "label_min": out.label_min if out.int_labels else 0, "label_max": out.label_max if out.int_labels else 0,
            "at_num_classes": out.at_num_classes,
        }


def has_bootstrap() -> bool:
    return _LIBRARY is not None


def bootstrap(replicates: int, seed: int, cell_ids: npt.NDArray, counts: npt.NDArray, slot_base: npt.NDArray,
              slot_candidate: npt.NDArray, cdf: npt.NDArray, small_mean: int, guide: npt.NDArray,
              hist_base: npt.NDArray, hist_candidate: npt.NDArray, first: int = 0, last: int | None = None) -> None:
    """xent_bootstrap in _ctally.c: adds every cell's weights of replicates first … last − 1 (first
    even; all by default) into the histograms given [slots, replicates] (int64, or int32 when the
    caller knows no count can exceed it)."""
    assert first % 2 == 0
    assert _LIBRARY is not None
    keep = [np.ascontiguousarray(cell_ids, np.uint64), np.ascontiguousarray(counts, np.int64),
            np.ascontiguousarray(slot_base, np.int64), np.ascontiguousarray(slot_candidate, np.int64),
            np.ascontiguousarray(cdf, np.float64), np.ascontiguousarray(guide, np.int32)]
    narrow = hist_base.dtype == np.int32
    for out in (hist_base, hist_candidate):
        assert out.dtype == (np.int32 if narrow else np.int64) and out.flags.c_contiguous
    wide_out = [None, None] if narrow else [hist_base.ctypes.data, hist_candidate.ctypes.data]
    narrow_out = [hist_base.ctypes.data, hist_candidate.ctypes.data] if narrow else [None, None]
    _LIBRARY.xent_bootstrap(
        keep[0].size, replicates, first, replicates if last is None else last, seed, keep[0].ctypes.data, keep[1].ctypes.data,
        keep[2].ctypes.data, keep[3].ctypes.data, keep[4].ctypes.data, keep[4].shape[1], small_mean, keep[5].ctypes.data, keep[5].shape[1],
        *wide_out, *narrow_out,
    )


def has_calibration() -> bool:
    return _LIBRARY is not None


def has_sigmoid() -> bool:
    return _LIBRARY is not None


def sigmoid_f32(z: npt.NDArray[np.float32], t: npt.NDArray[np.float32], cut: float) -> dict[str, npt.NDArray] | None:
    """xent_sigmoid_f32 in _ckernel.c on [n, K] float32 logits and targets: per row the summed loss,
    the labels right and the extremes; per label the positive targets, predictions, right ones, true
    positives and summed loss. None when a score is not finite or a target is outside [0, 1]."""
    assert _LIBRARY is not None
    z, t = np.ascontiguousarray(z, np.float32), np.ascontiguousarray(t, np.float32)
    n, k = z.shape
    row_loss, row_right = np.empty(n), np.empty(n, np.int64)
    lab = {name: np.zeros(k, np.int64) for name in ("positives", "predicted", "correct", "true_positives")}
    lab_loss, row_max, row_min = np.zeros(k), np.empty(n), np.empty(n)
    done = _LIBRARY.xent_sigmoid_f32(z.ctypes.data, t.ctypes.data, n, k, ctypes.c_float(cut), row_loss.ctypes.data, row_right.ctypes.data,
                                     lab["positives"].ctypes.data, lab["predicted"].ctypes.data, lab["correct"].ctypes.data,
                                     lab["true_positives"].ctypes.data, lab_loss.ctypes.data, row_max.ctypes.data, row_min.ctypes.data)
    if done < 0:
        return None
    return {"row_loss": row_loss, "row_right": row_right, "loss_sum": lab_loss, "row_max": row_max, "row_min": row_min, **lab}


def calibration_cells(confidence: npt.NDArray[np.float64], cells: int, use: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """xent_calibration_cells in _ctally.c: calibration.cells_of in one pass, on a grid of `cells`
    equal cells whose edges j/cells it computes as calibration.EDGES holds them."""
    assert _LIBRARY is not None
    confidence = np.ascontiguousarray(confidence, np.float64)
    mask = None if use is None else np.ascontiguousarray(use, np.bool_)
    out = np.empty(confidence.size, np.int64)
    _LIBRARY.xent_calibration_cells(confidence.ctypes.data, None if mask is None else mask.ctypes.data, confidence.size, cells,
                                    out.ctypes.data)
    return out


def calibration_sums(cells: npt.NDArray[np.int64], confidence: npt.NDArray[np.float64], right: npt.NDArray[np.bool_],
                     count: npt.NDArray[np.int64], conf: npt.NDArray[np.float64], conf2: npt.NDArray[np.float64],
                     correct: npt.NDArray[np.int64], conf_correct: npt.NDArray[np.float64],
                     brier: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None] | None = None,
                     certain: npt.NDArray[np.bool_] | None = None) -> tuple[float, int, int]:
    """xent_calibration_sums in _ctally.c: one chunk's grid sums, over the rows with a cell (≥ 0),
    added into the arrays given (Calibration.update); returns the Brier sum and rows (`brier` =
    (values, None) or (Σp², p_y)) and the certain mistakes."""
    assert _LIBRARY is not None
    for out, dtype in ((count, np.int64), (conf, np.float64), (conf2, np.float64), (correct, np.int64), (conf_correct, np.float64)):
        assert out.dtype == dtype and out.flags.c_contiguous
    keep = [np.ascontiguousarray(cells, np.int64), np.ascontiguousarray(confidence, np.float64), np.ascontiguousarray(right, np.bool_)]
    n = keep[0].size
    optional = [None if a is None else np.ascontiguousarray(a, dtype) for a, dtype in (
        (None if brier is None else brier[0], np.float64), (None if brier is None else brier[1], np.float64), (certain, np.bool_))]
    for a in optional:
        assert a is None or a.size == n
    scratch = np.zeros(3 * count.size)
    totals = np.zeros(3)
    _LIBRARY.xent_calibration_sums(keep[0].ctypes.data, keep[1].ctypes.data, keep[2].ctypes.data, n, count.size,
                                   count.ctypes.data, conf.ctypes.data, conf2.ctypes.data, correct.ctypes.data,
                                   conf_correct.ctypes.data, scratch.ctypes.data,
                                   *(None if a is None else a.ctypes.data for a in optional), totals.ctypes.data)
    return float(totals[0]), int(totals[1]), int(totals[2])


def group_sums(group: npt.NDArray[np.int64], k: int, loss: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_],
               correct: npt.NDArray[np.bool_], bins: tuple[npt.NDArray[np.int64], int, npt.NDArray, npt.NDArray, int] | None,
               offset: int = 0, compact: bool = False) -> tuple[Any, ...]:
    """xent_group_sums in _ctally.c: rows, counted, mean, M2, right per group (row i's group is
    group[i] − offset), and the [3, k, m] calibration bins (None without `bins` = (each row's
    calibration cell or −1, cells per bin, confidence, hit, m)). `compact`: the groups without rows
    left out, and their indices among the k appended (a seventh value)."""
    assert _LIBRARY is not None
    keep = [np.ascontiguousarray(group, np.int64), np.ascontiguousarray(loss, np.float64),
            np.ascontiguousarray(counted, np.bool_), np.ascontiguousarray(correct, np.bool_)]
    rows, count, right = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
    mean, m2 = np.zeros(k), np.zeros(k)
    present = np.empty(k, np.int64) if compact else None
    out_bins = None
    bin_args: list = [None, 1, 0, None, None, None, None]
    if bins is not None:
        cells, per, confidence, hit, m = bins
        extra = [np.ascontiguousarray(cells, np.int64), np.ascontiguousarray(confidence, np.float64), np.ascontiguousarray(hit, np.bool_)]
        keep += extra
        out_bins, scratch = np.empty(3 * k * m), np.empty(k * m * 3)
        keep += [scratch]
        bin_args = [extra[0].ctypes.data, per, m, extra[1].ctypes.data, extra[2].ctypes.data, scratch.ctypes.data, out_bins.ctypes.data]
    kept = _LIBRARY.xent_group_sums(keep[0].ctypes.data, keep[0].size, offset, k, keep[1].ctypes.data, keep[2].ctypes.data,
                                    keep[3].ctypes.data, rows.ctypes.data, count.ctypes.data, mean.ctypes.data, m2.ctypes.data,
                                    right.ctypes.data, *bin_args, None if present is None else present.ctypes.data)
    sums = (rows[:kept], count[:kept], mean[:kept], m2[:kept], right[:kept],
            None if out_bins is None else out_bins[:3 * kept * bins[4]].reshape(3, kept, bins[4]))
    return sums + (present[:kept],) if present is not None else sums


def group_merge(ids: npt.NDArray[np.int64], other: tuple[npt.NDArray, ...], totals: tuple[npt.NDArray, ...]) -> None:
    """xent_group_merge in _ctally.c: GroupTotals._add_ids without its dozen numpy passes. `other`
    and `totals` = (rows, counted, mean, m2, correct, bins or None), the totals' arrays updated in
    place (contiguous, of the dtypes GroupTotals keeps)."""
    assert _LIBRARY is not None
    ids = np.ascontiguousarray(ids, np.int64)
    dtypes = (np.int64, np.int64, np.float64, np.float64, np.int64, np.float64)
    keep = [None if a is None else np.ascontiguousarray(a, dtype) for a, dtype in zip(other, dtypes)]
    for a, dtype in zip(totals, dtypes):
        if a is not None and (a.dtype != dtype or not a.flags.c_contiguous):
            raise ValueError("group totals of another type")
    bins, out_bins = keep[5], totals[5]
    # checked, never assumed (python -O drops asserts): the C loop writes where these shapes say
    if (bins is None) != (out_bins is None) or (bins is not None and (bins.shape[:2] != (3, ids.size) or out_bins.shape[0] != 3
                                                                      or out_bins.shape[2] != bins.shape[2])):
        raise ValueError("calibration bins of another shape")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= totals[0].size) or any(a.size != ids.size for a in keep[:5]):
        raise ValueError("group numbers outside the totals")
    m = 0 if bins is None else bins.shape[2]
    assert _HELD is not None
    _HELD.xent_group_merge(ids.ctypes.data, ids.size, totals[0].size, *(a.ctypes.data for a in keep[:5]),
                              None if bins is None else bins.ctypes.data, m, *(a.ctypes.data for a in totals[:5]),
                              None if out_bins is None else out_bins.ctypes.data)


def row_hashes(offset: int, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """xent_row_hashes in _ctally.c: temperature.row_hashes(offset + positions) in one pass."""
    assert _LIBRARY is not None
    positions = np.ascontiguousarray(positions, np.int64)
    out = np.empty(positions.size, np.uint64)
    _LIBRARY.xent_row_hashes(offset, positions.ctypes.data, positions.size, out.ctypes.data)
    return out


def row_dots(values: npt.NDArray, vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """xent_row_dots in _ctally.c: values [n, C] (float32 or float64, any strides) @ vectors [C, k] in
    double, each row in an order set by C alone. None: not a dtype it takes (or no library)."""
    if _LIBRARY is None or values.dtype not in (np.float32, np.float64) or values.ndim != 2:
        return None
    if any(stride % values.itemsize for stride in values.strides):
        return None
    n, c = values.shape
    rows, cols = (stride // values.itemsize for stride in values.strides)
    w = np.ascontiguousarray(np.asarray(vectors, np.float64).T)
    out = np.empty((n, w.shape[0]))
    if n and c:
        _LIBRARY.xent_row_dots(values.ctypes.data, int(values.dtype == np.float32), n, c, rows, cols, w.ctypes.data, w.shape[0],
                               out.ctypes.data)
    else:
        out[:] = 0.0
    return out


def naive_lse(scores: npt.NDArray, labels: npt.NDArray[np.int64], z_max: npt.NDArray[np.float64],
              log_norm: npt.NDArray[np.float64], z_true: npt.NDArray[np.float64] | None = None
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]] | None:
    """xent_naive_lse in _ctally.c: kernels.naive_logsumexp_from's loss (NaN for a label outside
    [0, C)) and the rows whose logsumexp is not finite, left to the caller. `z_true`: each row's
    score of its label (where it is in [0, C)), from the kernel's pass, instead of a gather from the
    scores. None: scores neither float32 nor float64 (or no library)."""
    if _LIBRARY is None or scores.dtype not in (np.float32, np.float64) or scores.ndim != 2:
        return None
    scores = np.ascontiguousarray(scores)
    n, c = scores.shape
    labels, z_max, log_norm = (np.ascontiguousarray(a, t) for a, t in ((labels, np.int64), (z_max, np.float64), (log_norm, np.float64)))
    out, bad = np.empty(n), np.empty(n, np.int64)
    z_true = None if z_true is None else np.ascontiguousarray(z_true, np.float64)
    found = _LIBRARY.xent_naive_lse(scores.ctypes.data, int(scores.dtype == np.float32), n, c, labels.ctypes.data, z_max.ctypes.data,
                                    log_norm.ctypes.data, None if z_true is None else z_true.ctypes.data, out.ctypes.data,
                                    bad.ctypes.data) if n else 0
    return out, bad[:found]


def block_moments(values: npt.NDArray[np.float64], bounds: npt.NDArray[np.int64]) -> tuple[npt.NDArray, npt.NDArray, npt.NDArray]:
    """xent_block_moments in _ctally.c: each block's (values bounds[b] … bounds[b+1] − 1) sum, and
    its M2 and deviations' sum about its float mean, as accumulate.block_moments computes them with
    numpy, to the last bit."""
    assert _LIBRARY is not None
    values, bounds = np.ascontiguousarray(values, np.float64), np.ascontiguousarray(bounds, np.int64)
    if bounds.size < 1 or bounds[0] < 0 or bounds[-1] > values.size or (np.diff(bounds) < 0).any():
        raise ValueError("block bounds outside the values")
    sums, m2s, devs = np.empty(bounds.size - 1), np.empty(bounds.size - 1), np.empty(bounds.size - 1)
    _LIBRARY.xent_block_moments(values.ctypes.data, bounds.ctypes.data, bounds.size - 1, sums.ctypes.data, m2s.ctypes.data,
                                devs.ctypes.data)
    return sums, m2s, devs


def sketch_keys(values: npt.NDArray[np.float64], log_gamma: float) -> npt.NDArray[np.int64]:
    """xent_sketch_keys in _ctally.c: ceil(log(x) / log_gamma) with the tallies' log (sketch.log_positive's twin)."""
    assert _LIBRARY is not None
    values = np.ascontiguousarray(values, np.float64)
    out = np.empty(values.size, np.int64)
    _LIBRARY.xent_sketch_keys(values.ctypes.data, values.size, log_gamma, out.ctypes.data)
    return out


def key_counts(keys: npt.NDArray[np.int32]) -> tuple[int, npt.NDArray[np.int64]]:
    """xent_key_range and xent_key_counts in _ctally.c: the smallest of int32 keys (n > 0) and each
    key's count from it, as (keys.min(), np.bincount(keys - keys.min()))."""
    assert _LIBRARY is not None and keys.size
    keys = np.ascontiguousarray(keys, np.int32)
    extremes = np.empty(2, np.int64)
    _LIBRARY.xent_key_range(keys.ctypes.data, keys.size, extremes.ctypes.data)
    low, span = int(extremes[0]), int(extremes[1] - extremes[0]) + 1
    if span > 1 << 20:  # no loss spans this many keys (about 145,000 from 5e-324 to 1.8e308): numpy's one count, no partials
        return low, np.bincount(keys.astype(np.int64) - low)
    counts, scratch = np.empty(span, np.int64), np.zeros(4 * span, np.int64)
    _LIBRARY.xent_key_counts(keys.ctypes.data, keys.size, low, span, counts.ctypes.data, scratch.ctypes.data)
    return low, counts


def unique_counts(values: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """xent_unique_counts in _ctally.c: np.unique(values, return_counts=True) by a radix sort, in
    `values` itself (a contiguous int64 array is overwritten) and one scratch array; the results are
    views into those two."""
    assert _LIBRARY is not None
    values = np.ascontiguousarray(values, np.int64)
    scratch = np.empty_like(values)
    swapped = np.zeros(1, np.int64)
    k = _LIBRARY.xent_unique_counts(values.ctypes.data, values.size, scratch.ctypes.data, swapped.ctypes.data)
    if k < 0:
        raise MemoryError("xent_unique_counts")
    distinct, counts = (scratch, values) if swapped[0] else (values, scratch)
    return distinct[:k], counts[:k]


def binary_logits_f32(z: npt.NDArray[np.float32], label: npt.NDArray[np.int64], cut: float) -> dict[str, npt.NDArray] | None:
    """xent_binary_logits_f32 in _ckernel.c on a binary head's float32 logits [n] and 0/1 labels:
    loss, p_true, p_max, pred, rank, score and log_norm per row; None when a score is not finite or a
    label is not 0 or 1."""
    assert _LIBRARY is not None
    z, label = np.ascontiguousarray(z, np.float32), np.ascontiguousarray(label, np.int64)
    n = z.size
    loss, p_true, p_max, score, log_norm = np.empty((5, n))
    pred, rank = np.empty((2, n), np.int64)
    done = _LIBRARY.xent_binary_logits_f32(z.ctypes.data, label.ctypes.data, n, ctypes.c_float(cut), loss.ctypes.data,
                                           p_true.ctypes.data, p_max.ctypes.data, pred.ctypes.data, rank.ctypes.data,
                                           score.ctypes.data, log_norm.ctypes.data)
    if done < 0:
        return None
    return {"loss": loss, "p_true": p_true, "p_max": p_max, "pred": pred, "rank": rank, "score": score, "log_norm": log_norm}


def bus_folder(path: str, held: bool) -> None:
    """Name (held) or forget a folder of outputs in progress (a run's tasks' rows), for the bus error's
    handler to empty and remove; the files in it need no slot of bus_output."""
    if _LIBRARY is None:
        return
    with _bus_lock:
        folder = os.path.abspath(path)
        if held and _LIBRARY.xent_bus_folder(os.fsencode(folder)):
            _bus_folder[:] = [folder]
        elif not held and _bus_folder == [folder]:
            _LIBRARY.xent_bus_folder(b"")
            _bus_folder.clear()
