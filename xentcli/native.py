"""The fused C kernel for logits with integer labels (xentcli/_ckernel.c), loaded through ctypes.

The extension is optional: built by `pip install` where a C compiler exists. Without it (or with
XENT_KERNEL=numpy in the environment) every chunk goes through the numpy kernels in kernels.py,
which give the same results within the float32 guarantee. ctypes releases the GIL during the call,
so the engine's worker threads run the kernel in parallel.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import numpy.typing as npt

KERNEL_VERSION = 1  # XENT_KERNEL_VERSION in _ckernel.c: a stale build is not used


def _load() -> dict[np.dtype, ctypes._CFuncPtr] | None:
    if os.environ.get("XENT_KERNEL", "").lower() == "numpy":
        return None
    try:
        from xentcli import _ckernel  # type: ignore[attr-defined]

        library = ctypes.CDLL(_ckernel.__file__)
    except (ImportError, OSError):
        return None
    library.xent_kernel_version.restype = ctypes.c_int64
    if library.xent_kernel_version() != KERNEL_VERSION:
        return None
    pointer, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    functions = {}
    for dtype, name in ((np.dtype(np.float32), "xent_sparse_logits_f32"), (np.dtype(np.float64), "xent_sparse_logits_f64")):
        function = getattr(library, name)
        function.restype = i64
        function.argtypes = [pointer, i64, i64, i64, pointer, i32] + [pointer] * 11
        functions[dtype] = function
    return functions


_FUNCTIONS = _load()


def name() -> str:
    """Which kernel scores logits with integer labels: "c" or "numpy"."""
    return "c" if _FUNCTIONS is not None else "numpy"


def supports(scores: npt.NDArray) -> bool:
    return _FUNCTIONS is not None and scores.dtype in _FUNCTIONS and scores.ndim == 2 and scores.shape[1] > 0


def sparse_logits(scores: npt.NDArray, y: npt.NDArray[np.int64], detail: bool) -> tuple[npt.NDArray, ...]:
    """loss, p_true, p_max, entropy, margin, rank, pred, z_max, z_min, log_norm and the `special`
    mask for a [n, C] block of logits and labels y in [0, C). Rows flagged special (a NaN, or a
    ±inf maximum) hold garbage and must be recomputed by the numpy kernel. entropy and margin are
    filled only with `detail`."""
    assert _FUNCTIONS is not None
    if scores.strides[1] != scores.itemsize or scores.strides[0] % scores.itemsize:
        scores = np.ascontiguousarray(scores)
    y = np.ascontiguousarray(y, dtype=np.int64)
    n, num_classes = scores.shape
    loss, p_true, p_max, entropy, margin, z_max, z_min, log_norm = np.empty((8, n))
    rank, pred = np.empty((2, n), dtype=np.int64)
    special = np.empty(n, dtype=np.uint8)
    _FUNCTIONS[scores.dtype](
        scores.ctypes.data, n, num_classes, scores.strides[0] // scores.itemsize, y.ctypes.data, int(detail),
        loss.ctypes.data, p_true.ctypes.data, p_max.ctypes.data, entropy.ctypes.data, margin.ctypes.data,
        rank.ctypes.data, pred.ctypes.data, z_max.ctypes.data, z_min.ctypes.data, log_norm.ctypes.data,
        special.ctypes.data,
    )
    return loss, p_true, p_max, entropy, margin, rank, pred, z_max, z_min, log_norm, special.view(bool)
