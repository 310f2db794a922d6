"""The true loss of the stored numbers: per row −Σ t' log p, ignored rows left out, and the sums of
its weighted mean. Works on one chunk's per-sample statistics (kernels) and returns per-row values
plus additive sums, so every mean is a ratio of float64 sums that merge across chunks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from xentcli.config import WEIGHT_HINT, WEIGHT_RANGE, LossOptions, unscaled_weight
from xentcli.errors import OptionError
from xentcli.kernels import SampleStats

# A float64 of this magnitude or more rounds to ±inf in float32: 2^128 − 2^103 lies halfway between
# float32's largest finite value (2 − 2^−23)·2^127 and 2^128, and the tie rounds to the even 2^128.
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
FLOAT16_OVERFLOW = 2.0**16 - 2.0**4  # float16 rounds |x| at or beyond it to inf (its largest finite: 65504)


def beyond_float32(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_] | None:
    """The finite values that float32 rounds to ±inf (None when there is none: the usual chunk)."""
    if values.size and -FLOAT32_OVERFLOW < values.min() and values.max() < FLOAT32_OVERFLOW:  # the usual chunk, without temporaries (NaN fails it)
        return None
    with np.errstate(invalid="ignore"):
        big = np.abs(values) >= FLOAT32_OVERFLOW  # ±inf included, NaN not
    if not big.any():
        return None
    over = big & np.isfinite(values)
    return over if over.any() else None


@dataclass
class ChunkContext:
    """What the loss rules need to know about one chunk besides the kernel's statistics."""

    scores: npt.NDArray
    kind: str
    labels: npt.NDArray | None
    targets: npt.NDArray | None
    sample_weights: npt.NDArray | None
    options: LossOptions
    ignore_mask: npt.NDArray[np.bool_] | None = None  # rows to ignore that no label marks (a binary head's soft targets)
    stored_dtype: str | None = None  # the scores' dtype as stored (float16 arrives widened to float32)

    _beyond_float32: object = field(default=None, init=False, repr=False)  # loss_beyond_float32's, once computed
    _plain: tuple[float] | None = field(default=None, init=False, repr=False)  # plain_total's, once computed

    @property
    def num_classes(self) -> int:
        return self.scores.shape[1]

    def loss_beyond_float32(self, loss: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_] | None:
        """The rows whose finite loss float32 rounds to inf (None: none), computed once for every
        framework that computes in float32 (frameworks._overflow_as_float32)."""
        if self._beyond_float32 is None:
            found = beyond_float32(loss)
            self._beyond_float32 = (found,)
        return self._beyond_float32[0]  # type: ignore[index]

    def plain_total(self, stats: SampleStats) -> float | None:
        """The chunk's loss sum when the chunk is plain — logits, integer labels every one in range,
        no weights, class weights, label smoothing or ignore mask, scores not stored as float16, and
        every loss finite and within float32's range — else None (frameworks._plain_terms). Once
        for every framework."""
        if self._plain is None:
            options = self.options
            plain = (self.kind == "logits" and self.targets is None and self.sample_weights is None and not options.class_weights
                     and not options.label_smoothing and self.ignore_mask is None and self.stored_dtype != "float16"
                     and bool(stats.label_ok.all()))
            total = row_sum(stats.loss) if plain else math.nan
            plain = plain and math.isfinite(total) and self.loss_beyond_float32(stats.loss) is None
            self._plain = (total if plain else math.nan,)
        return None if math.isnan(self._plain[0]) else self._plain[0]

    def class_weights(self) -> npt.NDArray[np.float64] | None:
        w = self.options.class_weights
        return None if w is None else np.asarray(w, dtype=np.float64)

    def class_vectors(self) -> npt.NDArray[np.float64] | None:
        """V = [1, w]: Σ_c log p_c for smoothing and Σ_c w_c log p_c for weights."""
        w = self.class_weights()
        needed = self.options.label_smoothing > 0 or w is not None
        if not needed:
            return None
        ones = np.ones(self.num_classes)
        return np.stack([ones, ones if w is None else w], axis=1)


@dataclass
class RowTerms:
    """One chunk's per-row results under one set of rules.

    `values` is the per-sample output (NaN where the rules give no value); `num` and `den`
    hold, per reduction, the additive numerator and denominator (den None: a plain sum).
    `errors` are the messages the framework would raise, with `error_rows` the rows left out.
    """

    values: npt.NDArray[np.float64]
    num: dict[str, float] = field(default_factory=dict)
    den: dict[str, float | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_rows: int = 0
    notes: list[str] = field(default_factory=list)
    rows: tuple[npt.NDArray, npt.NDArray, npt.NDArray[np.bool_]] | None = None  # truth with weights: each row's y and x, and which count
    float32: bool = False  # a framework that computes and sums in float32
    float16: bool = False  # in float16


def class_of(stats: SampleStats) -> npt.NDArray[np.int64]:
    return np.where(stats.label_ok, stats.label, 0)


def ignored_rows(stats: SampleStats, ctx: ChunkContext, ignore: int | None) -> npt.NDArray[np.bool_]:
    if ctx.ignore_mask is not None:
        return ctx.ignore_mask
    if ignore is None or ctx.targets is not None:
        return np.zeros(stats.loss.size, dtype=bool)
    return stats.label_is_int & (stats.label == ignore)


def smoothed_loss(stats: SampleStats, epsilon: float, num_classes: int) -> npt.NDArray[np.float64]:
    """−Σ_c t'_c log p_c with t' = (1 − ε) t + ε / C (t one-hot for sparse labels)."""
    if epsilon == 0:
        return stats.loss
    assert stats.lp_dot is not None
    with np.errstate(invalid="ignore"):  # inf − inf: a −inf log-probability under a negative target
        return (1 - epsilon) * stats.loss - (epsilon / num_classes) * stats.lp_dot[:, 0]


def weighted_smoothed(stats: SampleStats, ctx: ChunkContext, epsilon: float) -> npt.NDArray[np.float64]:
    """PyTorch's weighted loss: −Σ_c w_c t'_c log p_c (ATen LossNLL.cpp, cross_entropy_loss_*)."""
    w = ctx.class_weights()
    if w is None:
        return smoothed_loss(stats, epsilon, ctx.num_classes)
    assert stats.lp_dot is not None
    if ctx.targets is None:
        with np.errstate(invalid="ignore"):  # 0·inf: a class weight of 0 on an infinite loss
            target_part = w[class_of(stats)] * stats.loss
    else:
        assert stats.target_lp_dot is not None
        target_part = -stats.target_lp_dot[:, 1]
    if not epsilon:  # no smoothing term: 0·Σ_c w_c log p_c would be NaN where a class has p = 0 (a −inf log-probability)
        return target_part
    with np.errstate(invalid="ignore"):
        return (1 - epsilon) * target_part - (epsilon / ctx.num_classes) * stats.lp_dot[:, 1]


def log1mexp(lp: npt.NDArray) -> npt.NDArray:
    """log(1 − e^lp) for log-probabilities lp ≤ 0, accurate at both ends (Mächler 2012): log(−expm1(lp))
    above −log 2, log1p(−exp(lp)) below — log(−expm1(lp)) alone rounds 1 − e^lp to 1 below −37 and
    gave 0 for a loss of 1.9e-22 (lp = −50). NaN for lp > 0, −inf at 0; the input's dtype."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lp > -math.log(2), np.log(-np.expm1(lp)), np.log1p(-np.exp(lp)))


def row_sum(values: npt.NDArray, rows: npt.NDArray[np.bool_] | None = None) -> float:
    """Σ values over `rows` (all of them when None or all true: no copy, the same sum)."""
    return float(values.sum() if rows is None or rows.all() else values[rows].sum())


def truth(stats: SampleStats, ctx: ChunkContext) -> tuple[npt.NDArray[np.float64], RowTerms]:
    """The true loss: per row −Σ t' log p (no clipping unless --epsilon), ignored rows left out.
    With class or sample weights, `num`/`den` hold the sums of the weighted mean
    Σ s·ℓ_w / Σ s·w[y] over counted rows (ℓ_w weighted as PyTorch does); without, they are empty."""
    options = ctx.options
    ignored = ignored_rows(stats, ctx, options.ignore_for(None))
    loss = smoothed_loss(stats, options.label_smoothing, ctx.num_classes)
    if ignored.any():  # a new array: `stats.loss` stays the frameworks' (which may score ignored rows)
        loss = loss.copy()
        loss[ignored] = np.nan
    w = ctx.class_weights()
    if w is None and ctx.sample_weights is None:
        return ignored, RowTerms(loss)
    counted = stats.label_ok & ~ignored & np.isfinite(loss)
    weighted = weighted_smoothed(stats, ctx, options.label_smoothing)
    if w is None:
        weight = np.ones(loss.size)
    elif ctx.targets is None:
        weight = w[class_of(stats)]
    else:
        weight = ctx.targets @ w
    if ctx.sample_weights is not None:
        with np.errstate(invalid="ignore"):  # 0·inf on a row of weight 0 and infinite loss: not counted either way
            weighted = weighted * ctx.sample_weights
        weight = weight * ctx.sample_weights
        odd = (weight != 0) & ((weight < WEIGHT_RANGE[0]) | (weight > WEIGHT_RANGE[1]))
        if odd.any():  # each factor within the range, their product not: its square, the error bars', underflows
            value = float(weight[np.flatnonzero(odd)[0]])
            raise OptionError(f"a row's weight, its class weight times its sample weight, is {value!r}, which {unscaled_weight(value)}",
                              hint=WEIGHT_HINT)
    return ignored, weighted_terms(loss, weighted, weight, counted)


def weighted_terms(loss: npt.NDArray[np.float64], weighted: npt.NDArray[np.float64], weight: npt.NDArray[np.float64],
                   counted: npt.NDArray[np.bool_]) -> RowTerms:
    """The weighted mean's sums Σ y / Σ x over counted rows (y the weighted loss, x the weight), and
    the rows themselves (accumulate.WeightedSums sums them, and the ratio estimator's moments, by blocks)."""
    terms = RowTerms(loss, {"mean": row_sum(weighted, counted)}, {"mean": row_sum(weight, counted)})
    terms.rows = (weighted, weight, counted)
    return terms


# ---- the frameworks -------------------------------------------------------------------------


