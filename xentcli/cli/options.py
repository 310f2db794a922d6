"""The command line's options, declared once as `Annotated` aliases that every command reuses, and
turned into the frozen config objects (config.py) that flow down. No I/O and no math here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from xentcli.config import (
    DEFAULT_THREADS, FRAMEWORKS, Gates, LossOptions, OutputOptions, RunConfig, SourceConfig, check_confidence, parse_class_weights,
    parse_classes, parse_codes, parse_ignore_index,
)
from xentcli.diagnostics import RULES
from xentcli.errors import OptionError


class FormatChoice(str, Enum):
    parquet = "parquet"
    arrow = "arrow"
    csv = "csv"
    npy = "npy"
    npz = "npz"


class InputChoice(str, Enum):
    logits = "logits"
    probs = "probs"
    log_probs = "log-probs"


LikeChoice = Enum("LikeChoice", {name.replace("-", "_"): name for name in FRAMEWORKS}, type=str)  # type: ignore[misc]


class TargetChoice(str, Enum):
    auto = "auto"
    sparse = "sparse"
    dense = "dense"


class OutputFormatChoice(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    gitlab = "gitlab"
    junit = "junit"
    markdown = "markdown"


class HeadChoice(str, Enum):
    auto = "auto"
    softmax = "softmax"
    sigmoid = "sigmoid"


class GateOnChoice(str, Enum):
    point = "point"
    upper = "upper"


class EngineChoice(str, Enum):
    local = "local"
    dask = "dask"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    never = "never"


def _option(*names: str, panel: str, help: str, **extra: object) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=panel, **extra)  # type: ignore[arg-type]


# ---- input ------------------------------------------------------------------------------------
Paths = Annotated[list[str], typer.Argument(help="Eval dump: .parquet, .arrow/.feather, .csv(.gz), .npy or .npz; several files, a quoted glob or a folder are read as shards of one dump.", show_default=False, metavar="PATH...")]
Labels = Annotated[Optional[str], _option("--labels", panel="Input", help="Targets in a separate file (NPY, Parquet, CSV…), row by row.")]
Format = Annotated[Optional[FormatChoice], _option("--format", panel="Input", help="Read PATH as this format (default: from the extension; in a folder of several formats, the one to read).")]
Input = Annotated[Optional[InputChoice], _option("--input", panel="Input", help="What the scores are (default: logits, or as the column names say).")]
Target = Annotated[TargetChoice, _option("--target", panel="Input", help="Integer labels (sparse) or one-hot/soft rows (dense).")]
Head = Annotated[HeadChoice, _option("--head", panel="Input", help="softmax, or sigmoid: independent labels (multi-label, K scores a row) or a binary head; auto: one score per row is a binary sigmoid head, K ≥ 2 a softmax.")]
Threshold = Annotated[float, _option("--threshold", panel="Input", help="Binary heads: a row predicts the positive class when P(y = 1) ≥ this.", min=0.0, max=1.0)]
ClassAxis = Annotated[int, _option("--class-axis", panel="Sequences", help="Axis of the classes in [N, T, C] arrays: -1 (default) or 1 for PyTorch's [N, C, T].")]
GroupCol = Annotated[Optional[str], _option("--group-col", panel="Sequences", help="One row per token: the column naming each row's sequence.")]
PerSequence = Annotated[bool, _option("--per-sequence", panel="Sequences", help="Add per-sequence sums, means, token counts and perplexities.")]
Classes = Annotated[Optional[str], _option("--classes", panel="Columns", help="Class names in class order (comma list or a file, one per line), for string labels.")]
ScoreCol = Annotated[Optional[str], _option("--score-col", panel="Columns", help="List column holding the scores.")]
ScorePrefix = Annotated[Optional[str], _option("--score-prefix", panel="Columns", help="Prefix of wide score columns (P0, P1, …); \"\" for columns 0, 1, ….")]
LabelCol = Annotated[Optional[str], _option("--label-col", panel="Columns", help="Column holding the labels or target rows.")]
TargetPrefix = Annotated[Optional[str], _option("--target-prefix", panel="Columns", help="Prefix of wide target columns.")]
ScoreKey = Annotated[Optional[str], _option("--score-key", panel="Columns", help="NPZ array holding the scores.")]
LabelKey = Annotated[Optional[str], _option("--label-key", panel="Columns", help="NPZ array holding the labels.")]
IdCol = Annotated[Optional[str], _option("--id-col", panel="Columns", help="Column (or NPZ array) identifying each row in every output.")]
# ---- loss -------------------------------------------------------------------------------------
IgnoreIndex = Annotated[Optional[str], _option("--ignore-index", panel="Loss", help="Label of rows to leave out (default -100, PyTorch's); 'none' to turn it off.")]
ClassWeights = Annotated[Optional[str], _option("--class-weights", panel="Loss", help="One weight per class: a comma list, or a file (one per line, or a JSON list).")]
PosWeight = Annotated[Optional[str], _option("--pos-weight", panel="Loss", help="Sigmoid heads: PyTorch's pos_weight, one value or one per label (a comma list or a file).")]
WeightCol = Annotated[Optional[str], _option("--weight-col", panel="Loss", help="Column (or NPZ array) of per-row sample weights.")]
SampleWeights = Annotated[Optional[str], _option("--sample-weights", panel="Loss", help="Per-row sample weights in an .npy file.")]
LabelSmoothing = Annotated[float, _option("--label-smoothing", panel="Loss", help="Targets become (1-ε)·t + ε/C.", min=0.0, max=1.0)]
Epsilon = Annotated[Optional[float], _option("--epsilon", panel="Loss", help="Clip probabilities to [E, 1-E] as Keras (TensorFlow backend) does: integer labels clip, then renormalise; one-hot/soft rows normalise, then clip. --like keras then uses E too. Keras' default: 1e-7. Default: no clipping.")]
Like = Annotated[Optional[LikeChoice], _option("--like", panel="Loss", help="Also report what this framework computes on the dump (and write its per-sample values with -o).")]
Compare = Annotated[bool, _option("--compare-frameworks", panel="Loss", help="Show the true loss beside what PyTorch, Keras, tf.nn and optax report, with the rule behind each difference.")]
# ---- output and run ---------------------------------------------------------------------------
TopK = Annotated[int, _option("--top-k", panel="Output", help="k of top-k accuracy (capped at the number of classes).", min=1)]
Worst = Annotated[int, _option("--worst", panel="Output", help="Show the K rows with the highest loss.", min=0)]
PerClass = Annotated[bool, _option("--per-class", panel="Output", help="Add a per-class table.")]
Json = Annotated[bool, _option("--json", panel="Output", help="Print one JSON document and nothing else.")]
HtmlReport = Annotated[Optional[Path], _option("--report", panel="Output", help="Also write one self-contained HTML page (inline SVG charts, no script): FILE.html.")]
Png = Annotated[Optional[Path], _option("--png", panel="Output", help="Also write the charts as PNG files into FOLDER (needs pip install 'xentcli\\[png]').")]
Plot = Annotated[bool, _option("--plot", panel="Output", help="Draw the loss histogram (and the reliability chart with --calibration) as text.")]
DiffPlot = Annotated[bool, _option("--plot", panel="Output", help="Draw the histogram of the per-pair loss deltas as text.")]
Ascii = Annotated[bool, _option("--ascii", panel="Output", help="With --plot: plain '#' bars.")]
OutputFormat = Annotated[OutputFormatChoice, _option("--output-format", panel="Output", help="text, json (as --json), or for CI: github (workflow annotations), gitlab (Code Quality), junit (XML), markdown.")]
Output = Annotated[Optional[Path], _option("-o", "--output", panel="Output", help="Write per-sample rows to FILE.parquet or FILE.csv.")]
Force = Annotated[bool, _option("--force", panel="Output", help="Replace an existing output file (-o, --report, --png, --save-partial).")]
DiffForce = Annotated[bool, _option("--force", panel="Output", help="Replace an existing output file (-o, --report, --png).")]
MergeForce = Annotated[bool, _option("--force", panel="Output", help="Replace an existing output file (--report, --png).")]
ChunkRows = Annotated[Optional[int], _option("--chunk-rows", panel="Run", help="Rows per chunk (default: ~16 MiB of scores).", min=1)]
Threads = Annotated[int, _option("--threads", panel="Run", help="Worker threads (default: the number of cores).", min=1, show_default=False)]
Quiet = Annotated[bool, _option("--quiet", "-q", panel="Run", help="No progress bar.")]
Debug = Annotated[bool, _option("--debug", panel="Run", help="Show the traceback of an error.")]
EngineOpt = Annotated[EngineChoice, _option("--engine", panel="Run", help="local, or dask: the chunks read and computed on Dask workers (pip install 'xentcli\\[dask]').")]
Scheduler = Annotated[Optional[str], _option("--scheduler", panel="Run", help="With --engine dask: an existing cluster's scheduler (tcp://host:8786; default: $DASK_SCHEDULER_ADDRESS, else a local cluster).")]
Workers = Annotated[Optional[int], _option("--workers", panel="Run", help="With --engine dask and no scheduler: worker processes of the local cluster (default: the cores, at most 4).", min=1, max=256)]
TaskRows = Annotated[Optional[int], _option("--task-rows", panel="Run", help="With --engine dask: rows per task, in whole chunks (default: ~64 MiB of scores; Parquet tasks hold whole row groups).", min=1)]
SavePartial = Annotated[Optional[Path], _option("--save-partial", panel="Output", help="Also write the run's mergeable totals to FILE (JSON), for xent merge.")]
# ---- diagnostics and gates --------------------------------------------------------------------
NoDiagnostics = Annotated[bool, _option("--no-diagnostics", panel="Diagnostics", help="Skip the diagnostics (a little faster).")]
Select = Annotated[Optional[list[str]], _option("--select", panel="Diagnostics", help="Only these diagnostic codes or prefixes (XE2, XE401); repeatable, comma lists too.")]
Ignore = Annotated[Optional[list[str]], _option("--ignore", panel="Diagnostics", help="Leave out these diagnostic codes or prefixes.")]
FailOnOpt = Annotated[FailOn, _option("--fail-on", panel="Gates", help="Fail on diagnostics of this severity or worse.")]
MaxLoss = Annotated[Optional[float], _option("--max-loss", panel="Gates", help="Fail when the mean loss is above X.")]
MaxNonfinite = Annotated[int, _option("--max-nonfinite", panel="Gates", help="Fail when more rows have a NaN/inf loss.", min=0)]
MinAccuracy = Annotated[Optional[float], _option("--min-accuracy", panel="Gates", help="Fail when accuracy is below A (a fraction).")]
MaxLossP99 = Annotated[Optional[float], _option("--max-loss-p99", panel="Gates", help="Fail when the 99th percentile loss is above X.")]
GateOn = Annotated[GateOnChoice, _option("--gate-on", panel="Gates", help="point: gate the mean loss and accuracy on their estimates; upper: on their intervals' pessimistic bound (the loss's upper, the accuracy's lower).")]
Confidence = Annotated[float, _option("--confidence", panel="Output", help="Confidence of the intervals (loss, accuracy, perplexity).")]
CalibrationOpt = Annotated[bool, _option("--calibration", panel="Output", help="Top-label calibration: ECE, MCE, RMSCE, Brier scores and the reliability table.")]
Bins = Annotated[str, _option("--bins", panel="Output", help="Calibration bins: a divisor of 3600 (10, 15, 20 …) for equal-width bins, or 'adaptive' for 15 equal-mass bins.")]
Confusions = Annotated[int, _option("--confusions", panel="Output", help="List the K most frequent (label, pred) errors.", min=0)]
By = Annotated[Optional[list[str]], _option("--by", panel="Slices", help="Slice the rows by this column (or NPZ array); repeatable: several give their combinations.")]
ByFile = Annotated[Optional[str], _option("--by-file", panel="Slices", help="Each row's group in an .npy file (NPY/NPZ dumps).")]
MinGroup = Annotated[int, _option("--min-group", panel="Slices", help="Groups with fewer counted rows are listed last, marked small.", min=1)]
MaxGroups = Annotated[int, _option("--max-groups", panel="Slices", help="Keep the groups with the most counted rows; the rest merge into '(other)'.", min=1)]
MaxGroupGap = Annotated[Optional[float], _option("--max-group-gap", panel="Gates", help="Fail when a group's mean loss exceeds the overall mean by more than G, shown at the interval's confidence (Holm-corrected across groups).")]
TemperatureScan = Annotated[bool, _option("--temperature-scan", panel="Output", help="The temperature T that minimises the loss of logits/T, and the share of the loss it removes (turns --calibration on).")]
MaxEce = Annotated[Optional[float], _option("--max-ece", panel="Gates", help="Fail when the expected calibration error is above X (turns --calibration on).")]
MergeMaxEce = Annotated[Optional[float], _option("--max-ece", panel="Gates", help="Fail when the expected calibration error is above X (the partials must hold calibration: --calibration when saved).")]


def refuse_empty_name(option: str, name: str | None) -> None:
    """An empty column name given to `option`: refused (ScoreOptions._refuse_empty_names)."""
    if name == "":
        raise OptionError(f"{option} names no column: the name is empty",
                          hint="give the column a name (pandas: df.to_csv(path, index_label='weight'))")


@dataclass(frozen=True)
class ScoreOptions:
    """What `score` (and `check`) were given, typed as the command line gives it; `run_config` and
    `output` parse it into the config objects, once."""

    paths: list[str]
    labels: str | None = None  # str, not Path: a URL (s3://…) must keep its two slashes
    file_format: FormatChoice | None = None
    input_kind: InputChoice | None = None
    target: TargetChoice = TargetChoice.auto
    head: HeadChoice = HeadChoice.auto
    threshold: float = 0.5
    pos_weight: str | None = None
    class_axis: int = -1
    group_col: str | None = None
    per_sequence: bool = False
    classes: str | None = None
    score_col: str | None = None
    score_prefix: str | None = None
    label_col: str | None = None
    target_prefix: str | None = None
    score_key: str | None = None
    label_key: str | None = None
    id_col: str | None = None
    ignore_index: str | None = None
    class_weights: str | None = None
    weight_col: str | None = None
    sample_weights: str | None = None
    label_smoothing: float = 0.0
    epsilon: float | None = None
    like: Enum | None = None
    compare: bool = False
    top_k: int = 5
    worst: int = 0
    per_class: bool = False
    as_json: bool = False
    output_format: str = "text"  # text, json, or a CI format (render/ci.py)
    plot: bool = False  # --plot: text charts after the tables
    report_path: Path | None = None  # --report FILE.html
    png_folder: Path | None = None  # --png FOLDER
    ascii: bool = False
    output: Path | None = None
    force: bool = False
    chunk_rows: int | None = None
    threads: int = DEFAULT_THREADS
    quiet: bool = False
    no_diagnostics: bool = False
    select: list[str] | None = None
    ignore_codes: list[str] | None = None
    confidence: float = 0.95
    calibration: bool = False
    temperature_scan: bool = False
    bins: str = "15"
    by: list[str] | None = None
    confusions: int = 0
    by_file: str | None = None
    min_group: int = 30
    max_groups: int = 1000
    engine: EngineChoice = EngineChoice.local
    scheduler: str | None = None
    workers: int | None = None
    task_rows: int | None = None
    save_partial: Path | None = None

    def _refuse_empty_names(self) -> None:
        """An empty column or array name is refused: the run dropped it as if not given, so
        `--weight-col ''` (pandas' to_csv names its index '') scored the unweighted mean, and a gate
        passed on it (found in review, 2026-12-03)."""
        named = [("--score-col", self.score_col), ("--label-col", self.label_col), ("--id-col", self.id_col),
                 ("--weight-col", self.weight_col), ("--group-col", self.group_col), ("--score-key", self.score_key),
                 ("--label-key", self.label_key), *(("--by", name) for name in self.by or ())]
        for option, name in named:
            refuse_empty_name(option, name)

    def run_config(self) -> RunConfig:
        check_confidence(self.confidence)
        self._refuse_empty_names()
        ignore, ignore_explicit = parse_ignore_index(self.ignore_index)
        return RunConfig(
            source=SourceConfig(
                paths=tuple(self.paths),
                format=self.file_format.value if self.file_format else None,
                labels_path=str(self.labels) if self.labels else None,
                score_col=self.score_col,
                score_prefix=self.score_prefix,
                label_col=self.label_col,
                target_prefix=self.target_prefix,
                score_key=self.score_key,
                label_key=self.label_key,
                id_col=self.id_col,
                weight_col=self.weight_col,
                sample_weights_path=str(self.sample_weights) if self.sample_weights else None,
                input_kind=self.input_kind.value if self.input_kind else None,  # type: ignore[arg-type]
                target_kind=self.target.value,  # type: ignore[arg-type]
                class_axis=self.class_axis,
                group_col=self.group_col,
                classes=parse_classes(self.classes),
                by=tuple(self.by or ()),
                by_file=str(self.by_file) if self.by_file else None,
                head=self.head.value,
            ),
            loss=LossOptions(
                ignore_index=ignore,
                ignore_explicit=ignore_explicit,
                class_weights=parse_class_weights(self.class_weights),
                pos_weight=parse_class_weights(self.pos_weight, "--pos-weight"),
                label_smoothing=self.label_smoothing,
                epsilon=self.epsilon,
                like=self.like.value if self.like else None,
                compare=self.compare,
            ),
            top_k=self.top_k,
            worst=self.worst,
            per_class=self.per_class,
            per_sequence=self.per_sequence,
            chunk_rows=self.chunk_rows,
            threads=self.threads,
            diagnostics=not self.no_diagnostics,
            select=parse_codes(self.select, tuple(RULES)),
            ignore_codes=parse_codes(self.ignore_codes, tuple(RULES)) or (),
            per_sample=self.output is not None,
            confidence=self.confidence,
            calibration=self.calibration,
            bins=15 if self.bins.strip().lower() == "adaptive" else _bins(self.bins),
            adaptive_bins=self.bins.strip().lower() == "adaptive",
            temperature_scan=self.temperature_scan,
            threshold=self.threshold,
            confusions=self.confusions,
            min_group=self.min_group,
            max_groups=self.max_groups,
        )

    @property
    def output_options(self) -> OutputOptions:
        return OutputOptions(str(self.output) if self.output else None, self.force, self.as_json, self.quiet)

    @property
    def dask(self) -> Any:
        """--engine dask's settings (distributed.Engine), or None for a local run."""
        given = [name for name, value in (("--scheduler", self.scheduler), ("--workers", self.workers), ("--task-rows", self.task_rows))
                 if value is not None]
        if self.engine != EngineChoice.dask:
            if given:
                raise OptionError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine dask")
            return None
        from xentcli.distributed import Engine

        return Engine(self.scheduler, self.workers, self.task_rows)

    @property
    def option_files(self) -> list[str]:
        """--classes, --class-weights and --pos-weight when they name files: inputs, never to be written over."""
        # os.path.isfile, not Path.is_file: a long comma list is no file name, and Path.is_file raises on it (ENAMETOOLONG)
        return [value for value in (self.classes, self.class_weights, self.pos_weight) if value and os.path.isfile(value)]


def _bins(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"--bins takes a number of bins or 'adaptive', not '{text}'") from None


def gates(fail_on: FailOn, max_loss: float | None, max_nonfinite: int, min_accuracy: float | None,
          max_loss_p99: float | None, gate_on: GateOnChoice = None, max_ece: float | None = None,  # type: ignore[assignment]
          max_group_gap: float | None = None) -> Gates:
    return Gates(fail_on=fail_on.value, gate_on=(gate_on or GateOnChoice.point).value, max_loss=max_loss,
                 max_nonfinite=max_nonfinite, min_accuracy=min_accuracy, max_loss_p99=max_loss_p99, max_ece=max_ece,
                 max_group_gap=max_group_gap)
