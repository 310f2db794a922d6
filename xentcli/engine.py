"""The engine: reads chunks, runs the kernels on a pool of threads, merges partials in input order.

Reading happens on the calling thread while workers compute (pyarrow and numpy release the GIL),
with at most `threads` chunks in flight, so memory is bounded by the chunk size. Partials merge
in chunk order, so the thread count never changes a result.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from xentcli.accumulate import BLOCK_ROWS, LossSummary, SequenceTotals, WorstBatches, WorstFloor, WorstRows
from xentcli.diagnostics import ChunkView, ExampleFloors, Finding, diagnose_chunk, finalize
from xentcli.config import DEFAULT_CHUNK_BYTES, KERAS_EPSILON, RunConfig
from xentcli.errors import InputError, OptionError
from xentcli.part import Part, chunk_part
from xentcli.binary import (
    BinaryRows, ElementRows, LabelTotals, binary_stats, element_chunk, element_columns, element_view, fast_stats, fractional,
    fused_stats, logit_cut32, positive_probability, sample_columns, two_class,
)
from xentcli.calibration import CELLS, Calibration, cells_of
from xentcli.histogram import log_histogram
from xentcli.temperature import Bound, TemperatureSample, capacity
from xentcli.confusions import Confusions
from xentcli.slices import GroupTotals
from xentcli.kernels import SampleStats, brier_scores, sample_stats
from xentcli.report import Report
from xentcli.frameworks import FrameworkSummary, framework_terms
from xentcli.frameworks_sigmoid import sigmoid_terms
from xentcli.loss import ChunkContext, RowTerms, truth, weighted_terms
from xentcli.sources import Chunk, InputDescription, Source
from xentcli.sketch import QuantileSketch
from xentcli.tally import ChunkTally, binary_logits_tally, tally


@dataclass
class ChunkResult:
    """One chunk's per-sample results (`stats.loss`: the true loss, NaN on ignored rows) and partials."""

    offset: int
    stats: SampleStats
    ids: npt.NDArray | None
    partial: LossSummary
    ignored: npt.NDArray[np.bool_]
    weights: npt.NDArray | None = None
    sample: npt.NDArray | None = None
    position: npt.NDArray | None = None
    sequences: SequenceTotals | None = None
    framework_values: dict[str, npt.NDArray] = field(default_factory=dict)
    frameworks: dict[str, FrameworkSummary] = field(default_factory=dict)
    findings: dict[str, Finding] = field(default_factory=dict)
    groups: list[Any] | None = None  # --by: the chunk's group columns (diff pairs them)
    binary: dict[str, npt.NDArray] | None = None  # a binary head's per-sample p, margin and target (binary.sample_columns)
    targets: npt.NDArray | None = None  # the targets as numbers when a label does not say them all: dense rows, sigmoid heads

    def part(self, config: RunConfig) -> Part:
        """What this chunk adds to the totals (sequence numbers are positional unless --group-col names them)."""
        positional = config.source.group_col is None and self.sample is not None and self.sample.dtype.kind in "iu"
        return chunk_part(self.partial, self.frameworks, self.sequences, self.findings, self.sample, positional, self.weights)


class SampleSink(Protocol):
    """Receives every chunk's per-sample results, in input order (see render/rows.py)."""

    def write(self, result: ChunkResult) -> None: ...


ProgressCallback = Callable[[int, float | None], None]  # rows done, share of the input read (render/progress.py)


# What a chunk holds per row besides its scores: labels, a dozen float64 per-sample values and the
# diagnostics' temporaries. With few classes this, not the scores, sizes the chunk's memory.
ROW_STATE_BYTES = 256
# The same for a binary head's chunk in one C pass (_fused_binary): the loss (8 bytes), the sketch
# key (4) and the prediction (1) — but 48, not 16: chunks sized by 16 bytes ran 5–9% faster and
# peaked 33–35 MB higher (60 → 93 MB; a soft-target dump, whose chunks the pass refuses, 93 → 128 MB).
FUSED_STATE_BYTES = 48


def chunk_rows(config: RunConfig, bytes_per_row: int) -> int:
    """Rows per chunk: as asked, else about DEFAULT_CHUNK_BYTES of scores and per-row state
    (`bytes_per_row`, row_bytes: both)."""
    if config.chunk_rows:
        return config.chunk_rows
    rows = max(1, DEFAULT_CHUNK_BYTES // bytes_per_row)
    if rows >= BLOCK_ROWS // 2:  # whole loss blocks (accumulate.RowBlocks): none waits for the next chunk, nothing is copied
        rows = max(1, round(rows / BLOCK_ROWS)) * BLOCK_ROWS  # (half a block rounds to even: 0)
    return rows


def row_bytes(config: RunConfig, info: InputDescription) -> int:
    """Bytes a row takes while it is scored, its scores and state. A multi-label head of float32
    logits without per-element output, weights or smoothing is sized for the C path
    (binary._element_chunk_native, float32 targets): ~24 bytes a label instead of the numpy path's
    ~90, which scores such a chunk in blocks of rows when it takes it (other targets, a non-finite
    score), so its temporaries stay bounded. A binary head in the plain pass is sized for its one C
    pass; a chunk that pass refuses is scored in chunks of the general size (_results). A Parquet
    chunk's scores count twice: pyarrow's decoded batch and its decoder's buffers stand beside them
    (Parquet 250,000 × 1000 in 16 MiB chunks: 299 MiB peak with two row groups decoded side
    by side, 210 MiB in chunks of half the rows, which also ran 15% faster)."""
    options = config.loss
    if info.format == "parquet" and info.head == "softmax":
        return 2 * info.bytes_per_row + ROW_STATE_BYTES
    if (info.head == "multilabel" and info.input_kind == "logits" and "float64" not in info.score_dtype and not options.label_smoothing
            and options.pos_weight is None and options.class_weights is None
            and not (config.per_sample or config.calibration or config.temperature_scan)):
        return info.num_classes * 24 + ROW_STATE_BYTES
    if _plain_binary(config, info):
        return info.bytes_per_row + FUSED_STATE_BYTES
    return info.bytes_per_row + ROW_STATE_BYTES


def _plain_binary(config: RunConfig, info: InputDescription) -> bool:
    """A binary head of float32 logits in the plain pass (no per-sample output, sample weights,
    smoothing, frameworks, calibration, confusions, slices or sequences): what _fused_binary can
    take, labels permitting (soft targets are refused chunk by chunk)."""
    options, source = config.loss, config.source
    return (info.head == "binary" and info.input_kind == "logits" and info.score_dtype == "float32"
            and options.ignore_for(None) not in (0, 1) and not options.label_smoothing and options.class_weights is None
            and options.pos_weight is None and not options.frameworks and not config.per_sample and not config.calibration
            and not config.temperature_scan and not config.confusions and not config.per_sequence
            and source.weight_col is None and source.sample_weights_path is None and source.group_col is None
            and not ((source.by or source.by_file) and config.slices))


@dataclass
class _Sizing:
    """The general chunk size, and whether the binary one pass has refused a chunk sized for it:
    from then on the chunks read are cut to the general size before they are scored (a run of soft
    targets is refused chunk after chunk; pieces held together would cost ~50% more memory)."""

    general: int
    refused: bool = False


def _results(chunk: Chunk, info: InputDescription, config: RunConfig, top_k: int, bound: Bound | None, sizing: _Sizing,
             floor: WorstFloor | None = None, examples: ExampleFloors | None = None) -> list[ChunkResult]:
    """One chunk's results: one, or for a chunk sized for the binary head's one C pass that the pass
    refuses, one per piece of the general size (so that the general path's memory stays bounded)."""
    if config.widen_scores and chunk.scores.dtype.kind == "f" and chunk.scores.dtype.itemsize < 8:  # (its score_dtype, which the
        chunk = replace(chunk, scores=chunk.scores.astype(np.float64))  # diagnostics' limits follow, stays the stored one)
    if len(chunk.scores) <= sizing.general or not _plain_binary(config, info):  # only the one pass's chunks are larger
        return [_compute(chunk, info, config, top_k, bound, floor=floor, examples=examples)]
    fused = _fused_binary(chunk, info, config, top_k, QuantileSketch())
    if fused is not None:
        return [_compute(chunk, info, config, top_k, bound, fused, floor, examples)]
    sizing.refused = True
    return [_compute(piece, info, config, top_k, bound, floor=floor, examples=examples) for piece in _pieces(chunk, sizing.general)]


def _cut(chunks: Iterator[Chunk], sizing: _Sizing) -> Iterator[Chunk]:
    """The chunks as read, each cut to the general size once the one pass has refused one."""
    for chunk in chunks:
        if sizing.refused and len(chunk.scores) > sizing.general:
            yield from _pieces(chunk, sizing.general)
        else:
            yield chunk


def _pieces(chunk: Chunk, rows: int) -> Iterator[Chunk]:
    return (_rows_of(chunk, start, start + rows) for start in range(0, len(chunk.scores), rows))


def _rows_of(chunk: Chunk, start: int, stop: int) -> Chunk:
    """Rows start … stop − 1 of a chunk, as a chunk."""
    def part(values: Any) -> Any:
        return None if values is None else values[start:stop]

    return Chunk(chunk.offset + start, chunk.scores[start:stop], part(chunk.labels), part(chunk.targets), part(chunk.ids),
                 part(chunk.weights), part(chunk.sample), part(chunk.position), chunk.score_dtype,
                 None if chunk.groups is None else [part(g) for g in chunk.groups])


def _compute(chunk: Chunk, info: InputDescription, config: RunConfig, top_k: int, bound: Bound | None = None,
             fused: tuple[SampleStats, ChunkTally, BinaryRows] | None = None, floor: WorstFloor | None = None,
             examples: ExampleFloors | None = None) -> ChunkResult:
    options = config.loss
    kind = info.input_kind
    binary = ignore_mask = elements = counts = None
    partial = LossSummary(info.num_classes, top_k, config.worst, keyed_clusters=config.source.group_col is not None)
    if info.head == "multilabel" or (info.head == "binary" and (options.pos_weight or options.class_weights)):
        # element by element (binary.element_chunk): K labels, or a binary head's weights
        targets = chunk.targets if chunk.targets is not None else chunk.labels
        assert targets is not None
        base, ignored, binary, elements = element_chunk(
            chunk.scores, kind, targets, options.ignore_for(None), options.label_smoothing,
            None if options.pos_weight is None else np.asarray(options.pos_weight),
            None if options.class_weights is None else np.asarray(options.class_weights), config.threshold,
            config.per_sample or config.calibration or config.temperature_scan, options.epsilon)
        stats = base
        counted = stats.counted & ~ignored
        with np.errstate(invalid="ignore"):  # 0·inf on a row of weight 0 and infinite loss
            terms = RowTerms(stats.loss) if chunk.weights is None else weighted_terms(stats.loss, stats.loss * chunk.weights, chunk.weights,
                                                                                      counted)
        chunk = replace(chunk, labels=np.zeros(len(stats.loss), np.int64), targets=None)
        ctx = ChunkContext(chunk.scores, kind, chunk.labels, None, chunk.weights, options)
    elif fused is not None or (fused := _fused_binary(chunk, info, config, top_k, partial.sketch)) is not None:  # the plain pass over a binary head: one C pass
        stats, counts, binary = fused
        base, ignored, terms = stats, np.zeros(stats.loss.size, bool), RowTerms(stats.loss)
    else:
        if info.head == "binary":  # scored as two classes (binary.py)
            chunk, kind, binary, ignore_mask = two_class(chunk, kind, options.ignore_for(None), options.epsilon)
        ctx = ChunkContext(chunk.scores, kind, chunk.labels, chunk.targets, chunk.weights, options, ignore_mask,
                           chunk.score_dtype or info.score_dtype)
        # a binary head of float32 logits and 0/1 labels: the two-class kernel and binary_stats in one C pass
        fast = None if binary is None or config.per_sample or ctx.class_vectors() is not None else fast_stats(
            binary, chunk.labels, config.threshold)
        base = fast if fast is not None else sample_stats(
            chunk.scores, kind, labels=chunk.labels, targets=chunk.targets,  # type: ignore[arg-type]
            detail=config.per_sample, class_vectors=ctx.class_vectors(), clip=options.epsilon if kind == "probs" else None,
            clip_first=chunk.targets is None,  # --epsilon clips as Keras (TensorFlow) does: see frameworks._keras
            extremes=config.extremes, squares=config.calibration and binary is None,
            true_scores="optax" in options.frameworks and binary is None,
        )
        if binary is not None and chunk.targets is not None:
            base = _whole_targets_as_labels(base, chunk.scores, binary, kind, config, ctx.class_vectors())
        ignored, terms = truth(base, ctx)
        stats = replace(base, loss=terms.values)
        if binary is not None and fast is None:
            stats = binary_stats(stats, binary, config.threshold)
    weighted = terms.rows if terms.num else None
    view = ChunkView(
        chunk.offset, chunk.scores, chunk.targets, chunk.ids, stats, ignored, kind, info.num_classes,
        chunk.score_dtype or info.score_dtype, info.label_names, binary,
    )
    if counts is None:
        counts = tally(view, top_k, partial.sketch, rules=config.diagnostics)
    partial.update(stats, counts, chunk.offset, chunk.ids, ignored, weighted, chunk.weights, chunk.sample, config.first_row, floor,
                   chunk.position)
    reliability = Reliability.of(stats, ignored, binary, elements if info.head == "multilabel" else None) if config.calibration else None
    if reliability is not None:
        partial.calibration = calibration_of(chunk, stats, reliability, kind, binary)
    if config.temperature_scan and elements is not None:  # a sigmoid head scored by element: its elements as two classes
        assert binary is not None and elements.scored is not None
        positions, rows, row_kind, labels, targets = element_view(binary.raw, binary.kind, binary.targets, elements.scored)
        partial.temperature = TemperatureSample(capacity(2), bound=bound)
        partial.temperature.offer(chunk.offset * binary.raw.shape[1], np.arange(positions.size), rows, row_kind, labels, targets,
                                  numbers=positions)  # rows holds the scored elements only: numbered by element
    elif config.temperature_scan:
        partial.temperature = TemperatureSample(capacity(info.num_classes), bound=bound)
        partial.temperature.offer(chunk.offset, np.flatnonzero(stats.counted & ~ignored), chunk.scores, kind,
                                  None if chunk.targets is not None else stats.label, chunk.targets)
    if chunk.groups is not None and config.slices:
        partial.groups = groups_of(chunk, stats, ignored, config, reliability, weighted)
    if config.confusions:
        partial.confusions = Confusions(info.num_classes)
        partial.confusions.update_rows(stats.label, stats.pred, stats.counted & ~ignored)
    result = ChunkResult(chunk.offset, stats, chunk.ids, partial, ignored, chunk.weights, chunk.sample, chunk.position,
                         groups=chunk.groups, targets=binary.targets if binary is not None else chunk.targets)
    if elements is not None and info.head == "multilabel":
        partial.labels = LabelTotals.of(elements)
        if config.per_sample:
            result.binary = element_columns(elements, binary.targets)  # type: ignore[union-attr]
    elif binary is not None and config.per_sample:
        result.binary = sample_columns(binary, config.threshold)
    if config.per_sequence and chunk.sample is not None:
        result.sequences = SequenceTotals()
        result.sequences.update(stats, chunk.sample)
    if config.diagnostics:
        result.findings = diagnose_chunk(view, counts, examples)
    for framework in options.frameworks:
        if binary is not None:  # a sigmoid head: the frameworks' binary cross-entropy, on the scores as stored
            fw_terms = sigmoid_terms(framework, binary.raw, binary.kind, binary.targets, options, chunk.weights,
                                     chunk.score_dtype or info.score_dtype)
        else:
            fw_terms = framework_terms(framework, base, ctx)
        result.framework_values[framework] = fw_terms.values
        result.frameworks[framework] = FrameworkSummary(framework, sigmoid=binary is not None)
        result.frameworks[framework].update(fw_terms)
    return result


def _whole_targets_as_labels(base: SampleStats, scores: npt.NDArray, binary: BinaryRows, kind: str, config: RunConfig,
                             class_vectors: npt.NDArray | None) -> SampleStats:
    """A binary head's chunk that holds a soft target is scored as dense rows [1 − t, t] (two_class);
    its other rows — a whole target (0, 1, or a label out of range), a missing one, the ignore index —
    are scored again as labels, as a chunk without a soft target scores them, so that no row's
    numbers depend on the rows read with it (the two kernels agree only to their last digits, and an
    ignored row's label would read 0)."""
    t = binary.targets
    rows = np.flatnonzero(~fractional(t))
    if rows.size == 0:
        return base
    if kind == "logits":  # the rows [0, z] as labels score them (two_class rewrites a +inf logit's row for the dense kernel)
        raw = binary.raw[rows]
        scores = np.stack([np.zeros_like(raw), raw], axis=1)
    else:
        scores = scores[rows]
    again = sample_stats(scores, kind, labels=t[rows], detail=config.per_sample, class_vectors=class_vectors, extremes=config.extremes)
    return base.with_rows(rows, again)


def _fused_binary(chunk: Chunk, info: InputDescription, config: RunConfig, top_k: int, sketch: QuantileSketch
                  ) -> tuple[SampleStats, ChunkTally, BinaryRows] | None:
    """A binary head's chunk of float32 logits with 0/1 labels in the plain pass (no per-sample
    output, weights, smoothing, frameworks, calibration, slices or sequences) scored and tallied in
    one C pass (tally.binary_logits_tally): no two-class view and no per-row statistics beyond the
    loss and the prediction. None: the general path takes the chunk, with the same numbers."""
    labels = chunk.labels
    if (not _plain_binary(config, info) or chunk.scores.dtype != np.float32 or labels is None or labels.dtype.kind not in "biuf"
            or chunk.targets is not None or chunk.weights is not None or chunk.sample is not None
            or (chunk.score_dtype or info.score_dtype) != "float32" or (chunk.groups is not None and config.slices)):
        return None
    if labels.dtype.kind == "f":  # 0.0/1.0 labels (BCE dumps often store them so) are the 0/1 labels; soft targets are not
        positive = labels == 1
        if not bool((positive | (labels == 0)).all()):
            return None
        labels = positive
    raw = chunk.scores[:, 0]
    fused = binary_logits_tally(raw, labels, float(logit_cut32(config.threshold)), top_k, sketch, "float32")
    if fused is None:
        return None
    counts, loss, pred = fused
    outside = np.broadcast_to(False, raw.shape)  # logits have no domain to leave
    return fused_stats(raw, labels, loss, pred, config.threshold), counts, BinaryRows(raw, "logits", labels, False, outside)


@dataclass
class Reliability:
    """What calibration bins, once per chunk for the whole dump and its groups alike: the top-label
    confidence and whether the prediction is right — for a binary head P(y = 1) and whether the
    target is positive (t ≥ 0.5), as scikit-learn's calibration_curve does — the rows that count (a
    usable label, not ignored, a finite confidence: infinite losses included) and each row's cell."""

    confidence: npt.NDArray[np.float64]
    right: npt.NDArray[np.bool_]
    rows: npt.NDArray[np.bool_]
    cells: npt.NDArray[np.int64]

    @classmethod
    def of(cls, stats: SampleStats, ignored: npt.NDArray[np.bool_], binary: BinaryRows | None,
           elements: ElementRows | None = None) -> Reliability:
        """Rows; for a multi-label head its elements (n·K, every label a binary problem)."""
        if elements is not None:
            assert elements.scored is not None
            confidence, right = elements.p.reshape(-1), elements.positive.reshape(-1)
            rows = elements.scored.reshape(-1) & np.isfinite(confidence)
        else:
            confidence, right = (stats.p_max, stats.correct) if binary is None else (positive_probability(binary).reshape(-1), stats.label == 1)
            rows = stats.label_ok & ~ignored & np.isfinite(confidence)
        return cls(confidence, right, rows, cells_of(confidence, rows))


def calibration_of(chunk: Chunk, stats: SampleStats, r: Reliability, kind: str, binary: BinaryRows | None = None) -> Calibration:
    """One chunk's calibration partial (its rows: those with a cell). A binary head's Brier score is
    (p − t)², scikit-learn's brier_score_loss, and its certain mistakes p = 1 on a negative target
    or p = 0 on a positive one."""
    confidence, right = r.confidence, r.right
    partial = Calibration()
    if binary is not None:
        t = binary.targets.reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):  # the rows without a cell are not read
            brier = (confidence - t) ** 2
        partial.update(confidence, right, brier, ((confidence == 1) & ~right) | ((confidence == 0) & right), cells=r.cells)
        return partial
    if stats.p_squares is not None and chunk.targets is None:  # Σp² from the kernel's own pass: Σp² − 2·p_y + 1
        partial.update(confidence, right, stats.p_squares, cells=r.cells, p_true=stats.p_true)
        return partial
    rows = r.rows
    every = bool(rows.all())  # the usual chunk: views, no copies

    def pick(values: npt.NDArray) -> npt.NDArray:
        return values if every else values[rows]

    brier = None if stats.log_norm is None else brier_scores(
        pick(chunk.scores), kind, pick(stats.log_norm), pick(stats.p_true), None if chunk.targets is None else pick(chunk.targets))
    if brier is not None and not every:  # one value a row again (the rows without a cell are not read)
        spread = np.zeros(rows.size)
        spread[rows] = brier
        brier = spread
    partial.update(confidence, right, brier, cells=r.cells)
    return partial


def groups_of(chunk: Chunk, stats: SampleStats, ignored: npt.NDArray[np.bool_], config: RunConfig,
              r: Reliability | None = None, weighted: tuple[npt.NDArray, npt.NDArray, npt.NDArray[np.bool_]] | None = None) -> GroupTotals:
    """One chunk's per-group partials (--by), with each calibrated row's bin when --calibration;
    `weighted` = (y, x, counted) as the summary takes them, with weights."""
    counted = stats.counted & ~ignored
    calibration = None
    if r is not None:
        calibration = (r.cells, CELLS // config.bins, r.confidence, r.right, config.bins)
    return GroupTotals.of_chunk(chunk.groups or [], stats.loss, counted, stats.correct, calibration,
                                weighted=None if weighted is None else (weighted[0], weighted[1]))


MAX_CHUNK_ROWS = 1 << 40  # a chunk is a block of memory: more rows than any machine holds is a mistyped number


UNUSED_THRESHOLD = "it decides a sigmoid head's predictions; a softmax predicts its largest score"


def unused_option(option: str, why: str) -> OptionError:
    """The refusal of an option given a value it would not use here."""
    return OptionError(f"{option} does nothing here: {why}", hint=f"drop {option}")


def _refuse_unused_options(config: RunConfig, info: InputDescription) -> None:
    """Options given a value they would not use here (found in review: each was accepted and
    ignored). Their defaults cannot be told from a value given, so only other values are refused."""
    defaults = RunConfig(config.source)
    unused = [("--bins", (config.bins, config.adaptive_bins) != (defaults.bins, defaults.adaptive_bins) and not config.calibration,
               "it bins the confidences of --calibration"),
              ("--threshold", config.threshold != defaults.threshold and info.head == "softmax" and not config.paired, UNUSED_THRESHOLD),
              ("--min-group", config.min_group != defaults.min_group and not (config.source.by or config.source.by_file), "it applies with --by"),
              ("--max-groups", config.max_groups != defaults.max_groups and not (config.source.by or config.source.by_file), "it applies with --by")]
    for option, given, why in unused:
        if given:
            raise unused_option(option, why)


def check_options(config: RunConfig, info: InputDescription) -> None:
    """Options that only the data can refute: class weight count, --epsilon without probabilities."""
    options = config.loss
    if not 0 <= options.label_smoothing <= 1:  # NaN fails too
        raise OptionError(f"--label-smoothing must lie in [0, 1], not {options.label_smoothing}")
    if config.calibration and (not 1 <= config.bins <= CELLS or (CELLS % config.bins and not config.adaptive_bins)):
        divisors = ", ".join(str(k) for k in (5, 10, 12, 15, 20, 25, 30, 40, 50, 60, 100))
        raise OptionError(f"--bins must divide {CELLS}, not {config.bins}", hint=f"e.g. {divisors}")
    if not 1 <= config.threads <= 1024:
        raise OptionError(f"--threads must lie in [1, 1024], not {config.threads}")
    if config.chunk_rows is not None and not 1 <= config.chunk_rows <= MAX_CHUNK_ROWS:
        raise OptionError(f"--chunk-rows must lie in [1, {MAX_CHUNK_ROWS:,}], not {config.chunk_rows}")
    if not 0 <= config.threshold <= 1:  # NaN fails too
        raise OptionError(f"--threshold must lie in [0, 1], not {config.threshold}")
    _refuse_unused_options(config, info)
    if info.head != "softmax":
        elementwise = info.head == "multilabel" or options.pos_weight is not None or options.class_weights is not None
        asked = (("--by with --calibration", config.calibration and info.head == "multilabel" and bool(config.source.by or config.source.by_file)),
                 ("--confusions", config.confusions and info.head == "multilabel"))
        unsupported = [name for name, given in asked if given not in (None, False, 0)]
        if unsupported:
            head = "a binary (sigmoid) head" + (" with weights" if elementwise else "") if info.head == "binary" else "a multi-label head"
            raise OptionError(f"{', '.join(unsupported)} with {head} is not supported yet",
                              hint="score without it (the loss is binary cross-entropy, unclipped)")
    if config.source.by or config.source.by_file:
        if info.sequences is not None:
            raise OptionError("--by with clustered rows (a sequence dump, --group-col, diff's --cluster) is not supported yet: "
                              "the groups' intervals would not be clustered", hint="score each group's sequences as a dump of their own")
    labels = 1 if info.head == "binary" else info.num_classes  # the weights' count: classes, or a sigmoid head's labels
    if options.class_weights is not None and len(options.class_weights) != labels:
        raise OptionError(
            f"--class-weights has {len(options.class_weights)} entries but the scores have {labels} "
            + ("classes" if info.head == "softmax" else "labels" if labels > 1 else "label (a binary head)"),
            hint="give exactly one weight per class" if info.head == "softmax" else "give one weight per label",
        )
    if options.class_weights is not None and info.head != "softmax" and not any(options.class_weights):
        raise OptionError("every --class-weights entry is 0: a sigmoid head's every loss would be 0, whatever the model",
                          hint="give each label a weight above 0 (a label of weight 0 drops out of the loss)")
    if options.pos_weight is not None:
        if info.head == "softmax":
            raise OptionError("--pos-weight weighs the positive targets of a sigmoid head; these scores are a softmax",
                              hint="use --class-weights for a softmax")
        if len(options.pos_weight) not in (1, labels):
            raise OptionError(f"--pos-weight has {len(options.pos_weight)} entries; give one, or one per label ({labels})")
    if options.epsilon is not None and not 0 < options.epsilon < 0.5:
        raise OptionError(f"--epsilon must lie in (0, 0.5), not {options.epsilon}", hint=f"Keras uses {KERAS_EPSILON:g}")
    if options.epsilon is not None and info.input_kind != "probs":
        raise OptionError(
            f"--epsilon clips probabilities, but the scores are {info.input_kind}",
            hint="drop --epsilon, or say --input probs if they are probabilities",
        )


class Pass:
    """One pass over a source: ChunkResults in input order (computed on a pool of threads, merged
    into the totals as they come), then the Report. `run` drives one; `xent diff` drives two in
    lockstep."""

    def __init__(self, config: RunConfig, source: Source | None = None, keep_totals: bool = True, background: bool = False) -> None:
        """`keep_totals=False`: the chunks' results only (a Dask task returns each chunk's part).
        `background`: chunks are computed on worker threads even with one thread (a diff's two sides
        run side by side, each on its share of the threads)."""
        self.config = config
        self.keep_totals = keep_totals
        self.background = background
        self.source = source or Source(config.source)
        self.info = info = self.source.description
        check_options(config, info)
        if config.per_sequence and info.sequences is None:
            raise OptionError(
                "--per-sequence needs sequences", hint="give [N, T, C] arrays, nested list columns, or --group-col"
            )
        self.top_k = max(1, min(config.top_k, info.num_classes))
        self.part = empty_part(config, info)
        # --worst: the chunks' worst rows merged k at a time, into the totals (or, for a task's chunks,
        # into one of the task's own, which run_task hands on with its last part)
        self.worst = WorstBatches(self.total.worst if keep_totals else WorstRows(config.worst)) if config.worst else None
        # the ranked rules' last examples so far, shared alike (a chunk that cannot add one makes no records)
        self.examples = ExampleFloors() if keep_totals else None

    @property
    def total(self) -> LossSummary:
        return self.part.summary

    def _merge(self, result: ChunkResult) -> None:
        if self.worst is not None:
            self.worst.add(result.partial)
        if self.keep_totals:
            self.part.merge(result.part(self.config))
            if self.examples is not None and result.findings:
                self.examples.follow(self.part.findings)

    def _merge_worst(self) -> None:
        if self.worst is not None:
            self.worst.flush()

    def results(self) -> Iterator[ChunkResult]:
        """Every chunk's results, in input order, each merged into the totals before it is yielded."""
        info, config = self.info, self.config
        # the temperature sample's threshold, shared with the chunks in flight (they copy only rows that can enter)
        bound = Bound() if config.temperature_scan and self.keep_totals else None
        sizing = _Sizing(chunk_rows(config, info.bytes_per_row + ROW_STATE_BYTES))
        # the worst rows' k-th so far, shared alike (the chunks make details only for rows that can enter)
        args = (info, config, self.top_k, bound, sizing, None if self.worst is None else self.worst.floor, self.examples)
        chunks = _cut(self.source.chunks(chunk_rows(config, row_bytes(config, info))), sizing)
        # A row larger than a whole chunk (a vocabulary of 2^27): one chunk in memory at a time, so the
        # run needs about one row of scores beside the kernel's, not threads + 1 of them.
        threads = config.threads if info.bytes_per_row <= DEFAULT_CHUNK_BYTES else 1
        if threads <= 1 and not (self.background and info.bytes_per_row <= DEFAULT_CHUNK_BYTES):
            for chunk in chunks:
                for result in _results(chunk, *args):
                    self._merge(result)
                    yield result
            self._merge_worst()
            self.source.verify()
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="xent") as pool:
            in_flight: deque[Future[list[ChunkResult]]] = deque()
            try:
                for chunk in chunks:
                    in_flight.append(pool.submit(_results, chunk, *args))
                    while len(in_flight) > threads:
                        for result in in_flight.popleft().result():
                            self._merge(result)
                            yield result
                while in_flight:
                    for result in in_flight.popleft().result():
                        self._merge(result)
                        yield result
                self._merge_worst()
                self.source.verify()
            finally:
                for future in in_flight:
                    future.cancel()

    def report(self) -> Report:
        """The Report of everything merged so far (the whole input once `results` is exhausted)."""
        self._merge_worst()
        return report_of(self.config, self.info, self.part)


def empty_part(config: RunConfig, info: InputDescription) -> Part:
    """The totals of no rows, for these options and this input."""
    top_k = max(1, min(config.top_k, info.num_classes))
    summary = LossSummary(info.num_classes, top_k, config.worst, keyed_clusters=config.source.group_col is not None)
    return Part(summary, {name: FrameworkSummary(name, sigmoid=info.head != "softmax") for name in config.loss.frameworks})


def report_of(config: RunConfig, info: InputDescription, part: Part) -> Report:
    """The Report of a run's merged totals (a local run, a Dask run, merged partial files)."""
    total, findings = part.summary, part.findings
    if part.weight_total == 0.0:
        raise InputError("every sample weight is 0: the weighted mean is undefined", path=info.weights,
                         hint="check the weights column or file")

    summary = total.summary(config.confidence)
    if info.head == "multilabel":  # accuracy is the exact match; per label, the rates and the Hamming accuracy
        summary.update(threshold=config.threshold, labels=info.num_classes, exact_match=summary["accuracy"],
                       top_k_accuracy=math.nan, **(total.labels.summary() if total.labels is not None else {}))
    if info.head == "binary":  # the rates of the positive class among the counted rows
        n = summary["counted"]
        summary.update(threshold=config.threshold,
                       positive_rate=float(total.per_class.support[1]) / n if n else math.nan,
                       predicted_positive_rate=float(total.per_class.predicted[1]) / n if n else math.nan)
    groups, merged = [], 0
    if total.groups is not None:
        # the groups' means are weighted as the summary's when weights apply (NaN when nothing counts)
        overall = summary["loss_mean"] if total.weighted else total.moments.closed().results()[2]
        groups, merged = total.groups.report(config.group_names, overall, summary["counted"], config.confidence,
                                             config.min_group, config.max_groups)
    calibration = None
    if config.calibration:
        calibration = (total.calibration or Calibration()).report(config.bins, config.confidence, config.adaptive_bins)
        calibration["temperature"] = total.temperature.report(config.threads) if total.temperature is not None else None
    documents = {name: fw.document() for name, fw in part.frameworks.items()}
    like = config.loss.like
    return Report(
        input=replace(info, rows=total.rows),  # what was read, whatever a file's footer claims
        summary=summary, histogram=log_histogram(total.sketch),
        per_class=([] if not config.per_class else total.labels.rows(info.classes) if info.head == "multilabel" and total.labels is not None
                   else total.per_class_rows(info.classes)),
        # a multi-label row has no one label, prediction or target probability: its row, id and loss
        worst=([{k: v for k, v in row.items() if k not in ("label", "pred", "p_true")} for row in total.worst.details]
               if info.head == "multilabel" else total.worst.details),
        id_column=info.id_column,
        like=documents.get(like) if like else None,
        compare=list(documents.values()) if config.loss.compare else [],
        loss=config.loss,
        zero_weight_rows=total.zero_weight_rows,
        per_sequence=part.sequences.rows(part.samples if config.source.group_col is None else 0) if config.per_sequence else [],
        calibration=calibration,
        groups=groups,
        confusions=total.confusions.top(config.confusions) if total.confusions is not None else [],
        confusions_exact=total.confusions.exact if total.confusions is not None else True,
        diagnostics=finalize(findings, summary, total.per_class, info, config.select, config.ignore_codes,
                             groups_merged=merged,
                             calibration=None if calibration is None else {
                                 **calibration, "certain_wrong": total.calibration.certain_wrong if total.calibration else 0})
        if config.diagnostics else [],
    )


def run_part(
    config: RunConfig,
    source: Source | None = None,
    sink: SampleSink | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[Part, InputDescription]:
    """One pass over the input: its merged part (every aggregate of `score`), and the per-sample rows to `sink`."""
    if sink is not None and not config.per_sample:
        raise ValueError("a per-sample sink needs RunConfig(per_sample=True): the kernels then keep margin and entropy")
    source = source or Source(config.source)
    if source.has_parquet:
        from xentcli import distributed  # only then: its import is ~7 ms of a run

        if distributed.local_tasks(config, source) is not None:  # the row groups, decoded side by side
            return distributed.run_local(config, source, sink, on_progress)
    one = Pass(config, source)
    for result in one.results():
        if sink is not None:
            sink.write(result)
        if on_progress is not None:
            on_progress(one.total.rows, one.source.progress())
    sequences = one.source.sequence_count()
    if sequences:  # a merged partial's sequences follow all of these, the empty last ones too (as a Dask task's do)
        one.part.samples = max(one.part.samples, sequences)
    return one.part, replace(one.info, rows=one.total.rows)


def run(
    config: RunConfig,
    source: Source | None = None,
    sink: SampleSink | None = None,
    on_progress: ProgressCallback | None = None,
) -> Report:
    """One pass over the input: the Report of `score`, and the per-sample rows to `sink`."""
    part, info = run_part(config, source, sink, on_progress)
    return report_of(config, info, part)
