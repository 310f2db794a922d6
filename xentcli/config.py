"""The options of one run, parsed once into frozen dataclasses that flow down the pipeline."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Literal

from xentcli.errors import OptionError

InputKind = Literal["logits", "probs", "log-probs"]
TargetKind = Literal["auto", "sparse", "dense"]
FileFormat = Literal["parquet", "arrow", "csv", "npy", "npz"]

DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
DEFAULT_THREADS = os.cpu_count() or 1

FRAMEWORKS = ("torch", "keras", "keras-jax", "keras-torch", "tf", "optax", "sklearn")  # --like choices
COMPARED = ("torch", "keras", "tf", "optax")  # --compare-frameworks
KERAS_EPSILON = 1e-7  # keras.config.epsilon(): probabilities are clipped to [1e-7, 1 − 1e-7]
KERAS_BACKENDS = {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}  # each --like keras preset's backend


@dataclass(frozen=True)
class SourceConfig:
    """Where the scores and targets are and how to read them."""

    paths: tuple[str, ...]
    format: FileFormat | None = None
    labels_path: str | None = None
    score_col: str | None = None
    score_prefix: str | None = None
    label_col: str | None = None
    target_prefix: str | None = None
    score_key: str | None = None
    label_key: str | None = None
    id_col: str | None = None
    weight_col: str | None = None
    sample_weights_path: str | None = None
    input_kind: InputKind | None = None  # None: from the column names, else logits
    target_kind: TargetKind = "auto"
    class_axis: int = -1  # for [N, T, C] sequences; 1 reads PyTorch's [N, C, T]
    group_col: str | None = None  # one row per token: the column naming each row's sequence
    group_option: str = "--group-col"  # the option that named group_col, for the messages (diff's is --cluster)
    classes: tuple[str, ...] | None = None  # class names, in class order, for string labels
    by: tuple[str, ...] = ()  # --by: columns (or NPZ arrays) whose values slice the rows into groups
    by_file: str | None = None  # --by-file: an .npy of each row's group (NPY/NPZ dumps)
    head: str = "auto"  # --head: softmax, sigmoid, or auto (one score per row: a binary sigmoid head)
    part: tuple[int, int] | None = None  # a Dask task's rows (sequences, for [N, T, C] arrays) of its one file (distributed.py)


@dataclass(frozen=True)
class LossOptions:
    """The loss as the user asked for it; `ignore_explicit` says --ignore-index was given."""

    ignore_index: int | None = -100
    ignore_explicit: bool = False
    class_weights: tuple[float, ...] | None = None
    pos_weight: tuple[float, ...] | None = None  # sigmoid heads: PyTorch's pos_weight, one value or one per label
    label_smoothing: float = 0.0
    epsilon: float | None = None
    like: str | None = None
    compare: bool = False

    @property
    def frameworks(self) -> tuple[str, ...]:
        if self.compare:
            return COMPARED if self.like in (None, *COMPARED) else (*COMPARED, self.like)
        return (self.like,) if self.like else ()

    def ignore_for(self, framework: str | None) -> int | None:
        """torch (and the truth) ignore -100 by default; the others only when asked; tf.nn never."""
        if framework == "tf":
            return None
        if framework in (None, "torch") or self.ignore_explicit:
            return self.ignore_index
        return None


@dataclass(frozen=True)
class RunConfig:
    """How to compute and what to keep: everything `score` needs beyond the source."""

    source: SourceConfig
    loss: LossOptions = field(default_factory=LossOptions)
    top_k: int = 5
    worst: int = 0
    per_class: bool = False
    per_sequence: bool = False
    diagnostics: bool = True
    select: tuple[str, ...] | None = None  # diagnostic codes or prefixes to keep (None: all)
    ignore_codes: tuple[str, ...] = ()  # and to drop
    chunk_rows: int | None = None  # None: sized by DEFAULT_CHUNK_BYTES of scores
    first_row: int = 0  # the input's number of the first row read (a Dask task's, when the plan knows it): the loss blocks' edges
    threads: int = DEFAULT_THREADS
    per_sample: bool = False  # the per-sample rows are written (-o): the kernels add margin and entropy
    confidence: float = 0.95  # of the summary's intervals
    calibration: bool = False  # top-label calibration (calibration.py)
    bins: int = 15  # its bins: equal-width (a divisor of 3600), or equal-mass with adaptive_bins
    adaptive_bins: bool = False
    temperature_scan: bool = False  # --temperature-scan: T* on a hash sample (temperature.py)
    confusions: int = 0  # --confusions K: the K most frequent (label, pred) errors
    min_group: int = 30  # --by: groups with fewer counted rows are listed after the others, marked small
    max_groups: int = 1000  # --by: the groups with the most counted rows; the rest merge into "(other)"
    slices: bool = True  # --by: the per-group partials; diff reads the group columns but slices the pairs itself
    threshold: float = 0.5  # binary heads: a row predicts the positive class when P(y = 1) ≥ threshold
    widen_scores: bool = False  # scores scored in float64 whatever their stored type (`xent diff` of two sides stored unlike)
    paired: bool = False  # a side of `xent diff`: whether --threshold is used is judged once both heads are known (run_diff)

    @property
    def group_names(self) -> tuple[str, ...]:
        """The names of the --by keys (the --by-file's stem for an array of groups)."""
        if self.source.by_file:
            return (os.path.basename(self.source.by_file).split(".")[0],)
        return self.source.by

    @property
    def extremes(self) -> bool:
        """The kernels keep each row's smallest score: the diagnostics need it, nothing else does."""
        return self.diagnostics


@dataclass(frozen=True)
class OutputOptions:
    """Where the results go: the per-sample file (-o) and how the report is printed."""

    path: str | None = None
    force: bool = False
    as_json: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class Gates:
    """`xent check`'s limits; None: not checked."""

    fail_on: str = "error"  # error | warning | never
    gate_on: str = "point"  # point | upper: the estimate, or its interval's pessimistic bound
    max_loss: float | None = None
    max_nonfinite: int | None = 0
    min_accuracy: float | None = None
    max_loss_p99: float | None = None
    max_ece: float | None = None
    max_group_gap: float | None = None

    def validate(self) -> None:
        """A gate that cannot fail is refused: NaN/inf limits, negative losses, accuracies outside [0, 1]."""
        if self.max_ece is not None and not 0 <= self.max_ece <= 1:
            raise OptionError(f"--max-ece must lie in [0, 1], not {self.max_ece}")
        for option, value in (("--max-loss", self.max_loss), ("--max-loss-p99", self.max_loss_p99), ("--max-group-gap", self.max_group_gap)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise OptionError(f"{option} must be a finite loss ≥ 0, not {value}")
        if self.min_accuracy is not None and not (0 <= self.min_accuracy <= 1):
            hint = f"accuracy is a fraction: --min-accuracy {self.min_accuracy / 100:g} for {self.min_accuracy:g}%" if 1 < self.min_accuracy <= 100 else None
            raise OptionError(f"--min-accuracy must lie in [0, 1], not {self.min_accuracy}", hint=hint)
        if self.gate_on == "upper" and self.max_loss is None and self.min_accuracy is None:  # it would bound nothing
            raise OptionError("--gate-on upper bounds the gates of --max-loss and --min-accuracy, and neither is given",
                              hint="add one of them, or drop --gate-on")


# The bootstrap's interval of a quantile needs this many replicates beyond each end: with fewer in a
# tail its ends are the extreme replicates (compare._percentiles gives none, and the table says why).
TAIL_REPLICATES = 5


def replicates_needed(confidence: float) -> int:
    """The fewest --bootstrap replicates that leave TAIL_REPLICATES in each tail of the interval."""
    return math.ceil(TAIL_REPLICATES / ((1 - confidence) / 2) - 1e-9)


@dataclass(frozen=True)
class DiffOptions:
    """How `xent diff` pairs and compares: by a key column or by row order, the confidence of the
    intervals, the bootstrap's replicates and seed, how many regressed/improved rows to keep."""

    key: str | None = None
    allow_unpaired: bool = False
    confidence: float = 0.95
    bootstrap: int = 1000
    seed: int = 0
    top: int = 10
    min_group: int = 30  # --by: groups with fewer usable pairs are listed, marked small, and not gated
    max_groups: int = 1000  # --by: the groups with the most usable pairs; the rest pooled as "(other)"

    def validate(self) -> None:
        check_confidence(self.confidence)
        if not 0 <= self.bootstrap <= 100_000:
            raise OptionError(f"--bootstrap must lie in [0, 100000], not {self.bootstrap}", hint="0 turns it off")
        if self.seed and not self.bootstrap:
            raise OptionError("--seed does nothing here: it seeds the bootstrap, which --bootstrap 0 turns off", hint="drop --seed")
        if not 0 <= self.seed < 2**63:
            raise OptionError(f"--seed must lie in [0, 2^63), not {self.seed}")


@dataclass(frozen=True)
class DiffGates:
    """`xent diff`'s gates on the paired intervals; None: not checked."""

    fail_on: str = "error"  # diagnostics of either side: error | warning | never (the CLI's default too)
    fail_on_regression: float | None = None  # fail when the loss-delta interval lies above this margin
    require_noninferior: float | None = None  # fail unless the loss-delta interval lies below this margin
    max_accuracy_drop: float | None = None  # fail when the accuracy-delta interval lies below −this

    def validate(self) -> None:
        for option, value in (("--fail-on-regression", self.fail_on_regression), ("--require-noninferior", self.require_noninferior)):
            if value is not None and not math.isfinite(value):  # negative: demand an improvement
                raise OptionError(f"{option} must be a finite loss margin, not {value}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 1:  # NaN fails too
            raise OptionError(f"--max-accuracy-drop is a fraction of rows in [0, 1], not {self.max_accuracy_drop}")


def check_confidence(confidence: float) -> None:
    """--confidence: in (0, 1), and far enough from 1 that the two-sided level (1 + c)/2 is not 1.0
    in float64 (0.9999999999999999 is refused)."""
    if not 0 < confidence < 1:  # NaN fails too
        raise OptionError(f"--confidence must lie in (0, 1), not {confidence!r}", hint="0.95 for 95% intervals")
    if not (1 + confidence) / 2 < 1:
        raise OptionError(f"--confidence {confidence!r} is too close to 1: its two-sided level (1 + c)/2 rounds to 1 in float64",
                          hint="0.999999999 is as close as an interval can be asked")


def kernel_choice() -> str:
    """XENT_KERNEL=numpy forces the numpy kernels (read here, once, when native.py loads)."""
    return os.environ.get("XENT_KERNEL", "").lower()


def parse_ignore_index(text: str | None) -> tuple[int | None, bool]:
    """`--ignore-index N|none` → (index, given explicitly); absent: PyTorch's -100, not explicit."""
    if text is None:
        return -100, False
    if text.strip().lower() == "none":
        return None, True
    try:
        index = int(text)
    except ValueError:
        raise OptionError(f"--ignore-index takes an integer or 'none', not '{text}'") from None
    if abs(index) >= 2**62:
        raise OptionError(f"--ignore-index {index} is beyond any label", hint="labels beyond ±2^62 are out of range anyway")
    return index, True


# --classes and --class-weights files are read whole: a file larger than this is not a class list.
OPTION_FILE_LIMIT = 64 << 20


def read_option_file(text: str, option: str) -> str | None:
    """The text of the file an option names (None when `text` names no file: then it is the value
    itself). Folders, devices, unreadable, oversized and non-UTF-8 files are refused with one line."""
    if not os.path.exists(text):
        return None
    if os.path.isdir(text):
        raise OptionError(f"{option} names a folder", path=text, hint="name a file, or give the values as a comma list")
    if not os.path.isfile(text):
        raise OptionError(f"{option} names something that is not a regular file", path=text)
    try:
        with open(text, "rb") as handle:
            raw = handle.read(OPTION_FILE_LIMIT + 1)
    except OSError as exc:
        raise OptionError(f"{option}: cannot read the file ({exc.strerror})", path=text) from None
    if len(raw) > OPTION_FILE_LIMIT:
        raise OptionError(f"{option}: the file is larger than {OPTION_FILE_LIMIT >> 20} MiB", path=text)
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is not part of the first value
    except UnicodeDecodeError as exc:
        raise OptionError(f"{option}: the file is not UTF-8 text (byte {exc.start})", path=text) from None


def parse_class_weights(text: str | None, option: str = "--class-weights") -> tuple[float, ...] | None:
    """`--class-weights 1,2.5,0.5` (or `--pos-weight`), or a file: one weight per line, or a JSON list."""
    if text is None:
        return None
    content = read_option_file(text, option)
    source = text
    if content is not None:
        source = content
        stripped = source.strip()
        if stripped.startswith("["):
            try:
                values = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise OptionError(f"not a JSON list of numbers: {exc}", path=text) from None
            if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise OptionError("not a JSON list of numbers", path=text, hint="e.g. [1, 2.5, 0.5]")  # true and "1" are no weights
            return _weights(values, text, option)
        return _weights([part for line in stripped.splitlines() for part in line.split(",") if part.strip()], text, option)
    return _weights([part for part in source.split(",") if part.strip()], None, option)


def _weights(values: list, path: str | None, option: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        hint = "a file holds one weight per line, a comma list, or a JSON list of numbers" if path else "give a comma list like 1,2.5,0.5"
        raise OptionError(f"{option} must be numbers", path=path, hint=hint) from None
    if not weights:
        raise OptionError(f"{option} names no weight", path=path, hint="give one weight per class, like 1,2.5,0.5")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise OptionError(f"{option} must be finite and non-negative", path=path)
    for w in weights:
        if unscaled_weight(w):  # pos_weight too: 1e308 made the positive rows' losses inf, 1e-300 their spread underflow
            raise OptionError(f"{option}: {w!r} {unscaled_weight(w)}", path=path,
                              hint="rescale the weights (a softmax's weighted mean depends only on their ratios: divide them by "
                                   "the largest; a sigmoid head's class weights scale its losses)" if option == "--class-weights" else
                              "pos_weight multiplies the positive targets' losses; beyond 2^±300 they leave float64's range")
    return weights


# Weights whose mean is a ratio Σ w·ℓ / Σ w (class and sample weights) only matter by their ratios;
# beyond 2^±300 their products with a loss, and their squares (the error bars), leave float64's
# normal range (5e-324 made every w·ℓ 0 and the mean 0; 1e308 made them inf), so such weights are
# refused rather than summed wrongly.
WEIGHT_RANGE = (2.0**-300, 2.0**300)
WEIGHT_HINT = "rescale the weights (of a weighted mean only their ratios matter: divide them by the largest)"


def unscaled_weight(w: float) -> str:
    """Why a weight cannot be used as it is ('' when it can: 0 or within WEIGHT_RANGE)."""
    if w == 0 or WEIGHT_RANGE[0] <= w <= WEIGHT_RANGE[1]:
        return ""
    return f"lies outside [{WEIGHT_RANGE[0]:.3g}, {WEIGHT_RANGE[1]:.3g}]"


def parse_classes(text: str | None) -> tuple[str, ...] | None:
    """`--classes cat,dog,bird`, or a file with one class name per line."""
    if text is None:
        return None
    content = read_option_file(text, "--classes")
    if content is not None:
        names = [line.strip() for line in content.splitlines() if line.strip()]
    else:
        names = [part.strip() for part in text.split(",") if part.strip()]
    if len(set(names)) != len(names):
        raise OptionError("--classes names a class twice", path=text if content is not None else None)
    if not names:
        raise OptionError("--classes names no class")
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # bytes of another encoding on the command line (Python keeps them as surrogates)
            raise OptionError("--classes holds a name that is not UTF-8 text", hint="give the class names in UTF-8") from None
    return tuple(names)


def parse_codes(values: list[str] | None, known: tuple[str, ...]) -> tuple[str, ...] | None:
    """`--select XE1,XE201 --select XE4` → ('XE1', 'XE201', 'XE4'); each must prefix a `known` code."""
    if not values:
        return None
    codes = tuple(code.strip().upper() for value in values for code in value.split(",") if code.strip())
    if not codes:  # --select "" (an unset shell variable): no code at all, not "no diagnostic"
        raise OptionError("--select/--ignore names no code", hint="name codes or prefixes like XE1,XE401; --no-diagnostics turns them off")
    for code in codes:
        if not any(rule.startswith(code) for rule in known):
            raise OptionError(f"no diagnostic code starts with '{code}'", hint="run 'xent explain' for the list")
    return codes
