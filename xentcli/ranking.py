"""The top-k rows by a key, ties to the lower row: the worst rows and the ranked diagnostics' examples."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def top_rows(rows: npt.NDArray[np.bool_], key: npt.NDArray, k: int) -> npt.NDArray[np.int64]:
    """The (up to) `k` rows with the largest `key` among `rows`, ties going to the lower row, in no
    particular order: O(n), and the same rows whatever the chunking (the C tally keeps the same)."""
    candidates = np.flatnonzero(rows)
    if candidates.size > k:
        values = key[candidates]
        cut = np.partition(values, candidates.size - k)[candidates.size - k]
        above = candidates[values > cut]
        at_cut = candidates[values == cut][: k - above.size]
        candidates = np.concatenate([above, at_cut])
    return candidates
