"""Partial files (`--save-partial FILE`, `xent merge`): a run's merged totals, as JSON, never pickle.

The document (README, "Partial files"):

    {"format": "xent-partial", "version": 3, "xent": "<version that wrote it>",
     "options": <what the numbers were computed under>, "input": <the input description>,
     "sha256": <hex digest of the "state" text>, "state": "<JSON text of the totals>"}

Values are JSON with tags for what JSON lacks: {"$f": "nan"|"inf"|"-inf"} a non-finite float,
{"$t": [...]} a tuple, {"$d": [[key, value], ...]} a dict (keys of any type), {"$a": dtype,
"shape": [...], "b64": ...} a numeric numpy array (little-endian bytes), {"$o": [...], "shape":
[...]} an array of plain values, {"$": "ClassName", "v": {attribute: value}} one of the few
classes of the totals. Reading builds those classes from their attributes only (no code runs), and
refuses any other tag, class, attribute set or dtype with one line.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
import math
import os
from typing import Any

import numpy as np

from xentcli import __version__
from xentcli.accumulate import (
    WORST_COLUMNS, ClusterRuns, KeyedClusters, LossMoments, LossSummary, PerClass, SequenceTotals, WeightedSums, WorstRows,
)
from xentcli.binary import LabelTotals
from xentcli.calibration import CELLS, Calibration
from xentcli.config import FRAMEWORKS, LossOptions, RunConfig, SourceConfig, unscaled_weight
from xentcli.plain import quoted
from xentcli.confusions import Confusions
from xentcli.diagnostics import Finding
from xentcli.errors import InputError
from xentcli.frameworks import FrameworkSummary
from xentcli.part import Part
from xentcli.sketch import Buckets, QuantileSketch
from xentcli.slices import WEIGHTED, GroupTotals
from xentcli.sources import InputDescription

FORMAT = "xent-partial"
VERSION = 7  # 2: the losses' sums in exact blocks (LossMoments); 3: the input's group_types; 4: accuracy_clusters, sequence_type; 5: the clusters' sums about a shift; 6: the worst rows as columns, the loss blocks' deviations; 7: LossMoments.m2 · 2^2148 (exact where a float M2 overflows or underflows)

CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    Part, LossSummary, PerClass, WorstRows, LossMoments, WeightedSums, ClusterRuns, KeyedClusters, SequenceTotals, QuantileSketch, Buckets,
    Calibration, Confusions, GroupTotals, LabelTotals, FrameworkSummary, Finding, InputDescription, RunConfig, LossOptions,
    SourceConfig,
)}
DTYPES = {np.dtype(name).str for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                                          "float32", "float64")}


def _attributes(cls: type) -> set[str]:
    """The attributes an instance of one of CLASSES has."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return set(vars(cls()))


class Malformed(ValueError):
    """What is wrong with a partial file, in one line."""


def encode(value: Any) -> Any:
    """A JSON-able tagged tree of a value of the totals."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"$f": str(value)}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            data = np.ascontiguousarray(value, value.dtype.newbyteorder("<"))
            return {"$a": data.dtype.str, "shape": list(value.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}
        return {"$o": [encode(item) for item in value.reshape(-1).tolist()], "shape": list(value.shape)}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, tuple):
        return {"$t": [encode(item) for item in value]}
    if isinstance(value, dict):
        return {"$d": [[encode(key), encode(item)] for key, item in value.items()]}
    name = type(value).__name__
    if CLASSES.get(name) is type(value):
        return {"$": name, "v": {key: encode(item) for key, item in vars(value).items()}}
    if hasattr(value, "isoformat"):  # a date in a group's key or an id: as the report shows it
        return value.isoformat()
    raise TypeError(f"a partial cannot hold a {name}")


def decode(tree: Any) -> Any:
    """The value of a tagged tree; Malformed on anything `encode` does not write."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(item) for item in tree]
    if not isinstance(tree, dict) or len(tree) not in (1, 2, 3):
        raise Malformed(f"unexpected {type(tree).__name__} in the state")
    if set(tree) == {"$f"} and tree["$f"] in ("nan", "inf", "-inf"):
        return float(tree["$f"])
    if set(tree) == {"$t"} and isinstance(tree["$t"], list):
        return tuple(decode(item) for item in tree["$t"])
    if set(tree) == {"$d"} and isinstance(tree["$d"], list):
        out = {}
        for pair in tree["$d"]:
            if not isinstance(pair, list) or len(pair) != 2:
                raise Malformed("a dict entry is not a [key, value] pair")
            key = decode(pair[0])
            if any(isinstance(k, float) and math.isnan(k) for k in (key if isinstance(key, tuple) else (key,))):
                raise Malformed("a dict key is NaN")  # xent never keys by NaN (it names no group); JSON cannot write it
            try:
                out[key] = decode(pair[1])
            except TypeError:
                raise Malformed("a dict key is not hashable") from None
        return out
    if set(tree) == {"$a", "shape", "b64"}:
        return _array(tree)
    if set(tree) == {"$o", "shape"} and isinstance(tree["$o"], list):
        values = [decode(item) for item in tree["$o"]]
        if any(isinstance(item, (list, dict, tuple)) or dataclasses.is_dataclass(item) for item in values):
            raise Malformed("an array of values holds a container")
        array = np.empty(len(values), object)
        array[:] = values
        return array.reshape(_shape(tree["shape"], len(values)))
    if set(tree) == {"$", "v"} and isinstance(tree["v"], dict):
        return _instance(tree["$"], tree["v"])
    raise Malformed(f"unknown tag {quoted(sorted(tree)[0])} in the state")


def _shape(shape: Any, size: int) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape) \
            or math.prod(shape) != size:
        raise Malformed("an array's shape does not fit its data")
    return tuple(shape)


def _array(tree: dict[str, Any]) -> np.ndarray:
    if tree["$a"] not in DTYPES or not isinstance(tree["b64"], str):
        raise Malformed(f"an array of dtype {quoted(str(tree['$a'])[:20])}")
    try:
        data = base64.b64decode(tree["b64"], validate=True)
    except ValueError:
        raise Malformed("an array's data is not base64") from None
    dtype = np.dtype(tree["$a"])
    if len(data) % dtype.itemsize:
        raise Malformed("an array's data does not fit its dtype")
    array = np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))  # a writable copy in native order
    return array.reshape(_shape(tree["shape"], array.size))


def _instance(name: Any, values: dict[str, Any]) -> Any:
    cls = CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise Malformed(f"unknown class {quoted(str(name)[:40])} in the state")
    if set(values) != _attributes(cls):
        raise Malformed(f"a {name} with attributes {', '.join(sorted(set(values) ^ _attributes(cls)))} unlike xent's")
    instance = object.__new__(cls)
    for key, item in values.items():
        object.__setattr__(instance, key, decode(item))  # frozen dataclasses too
    return instance


def comparable(config: RunConfig) -> RunConfig:
    """The options that shape the numbers: where the input lives, how it is split among threads and
    chunks, and whether per-sample rows are written do not."""
    source = dataclasses.replace(config.source, paths=(), labels_path=None, part=None,
                                 sample_weights_path="(a file)" if config.source.sample_weights_path else None,
                                 by_file=config.group_names[0] if config.source.by_file else None)
    return dataclasses.replace(config, source=source, threads=1, chunk_rows=None, per_sample=False)


def dumps(part: Part, config: RunConfig, info: InputDescription) -> str:
    """The partial file's text."""
    state = json.dumps(encode(part), separators=(",", ":"), allow_nan=False)
    return json.dumps({
        "format": FORMAT, "version": VERSION, "xent": __version__,
        "options": encode(comparable(config)), "input": encode(info),
        "sha256": hashlib.sha256(state.encode()).hexdigest(), "state": state,
    }, allow_nan=False) + "\n"


def loads(text: str, path: str) -> tuple[Part, RunConfig, InputDescription]:
    """A partial file's totals, options and input; InputError (one line) when it is not one."""
    try:
        document = json.loads(text, parse_constant=_no_constant)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise Malformed("it is not a xent partial file (no \"format\": \"xent-partial\")")
        if document.get("version") != VERSION:
            raise Malformed(f"it has version {str(document.get('version'))[:20]}; this xent reads version {VERSION}")
        state = document.get("state")
        if not isinstance(state, str) or hashlib.sha256(state.encode()).hexdigest() != document.get("sha256"):
            raise Malformed("its state does not match its sha256 (the file was changed or cut short)")
        part = decode(json.loads(state, parse_constant=_no_constant))
        config, info = decode(document.get("options")), decode(document.get("input"))
        if not (isinstance(part, Part) and isinstance(config, RunConfig) and isinstance(info, InputDescription)):
            raise Malformed("it lacks the totals, the options or the input description")
        _typed(config, "the options")
        _typed(info, "the input description")
        _check_options(config, info)
        _check(part, config, info)
    except (Malformed, json.JSONDecodeError, RecursionError, TypeError, ValueError, AttributeError, KeyError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"is not a usable partial file: {detail}", path=path,
                         hint="write it with xent score --save-partial (of this version)") from None
    return part, config, info


def _fits(value: Any, hint: Any) -> bool:
    """`value` is of the annotated type `hint` (the few forms the option and input classes use)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(item, args[0]) for item in value)
        return len(args) == len(value) and all(_fits(item, arg) for item, arg in zip(value, args))
    if origin is not None:  # list[...], dict[...]: the container's type
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, float)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
    return True  # a form these classes do not use: left to the checks below


def _typed(value: Any, where: str) -> None:
    """Every field of an options or input dataclass holds a value of its annotated type (and the
    nested option classes likewise): an edited file's `"path": 5` is refused here, not met later."""
    import typing

    for name, hint in typing.get_type_hints(type(value)).items():
        item = getattr(value, name)
        if not _fits(item, hint):
            raise Malformed(f"{where}: {name} is not what xent keeps there")
        if dataclasses.is_dataclass(item):
            _typed(item, where)


def _check_options(config: RunConfig, info: InputDescription) -> None:
    """The options' values within the ranges the command line allows (the run's own checks,
    engine.check_options and check_confidence, then the ranges Typer enforces), and an input of rows."""
    from xentcli.config import check_confidence
    from xentcli.engine import check_options
    from xentcli.errors import OptionError

    try:
        check_confidence(config.confidence)
        check_options(config, info)
    except OptionError as exc:
        raise Malformed(f"its options: {exc}") from None
    loss = config.loss
    if (config.top_k < 1 or config.worst < 0 or config.min_group < 1 or config.max_groups < 1 or config.confusions < 0
            or not 1 <= config.bins <= CELLS or (config.chunk_rows is not None and config.chunk_rows < 1) or config.first_row < 0
            or any(not math.isfinite(w) or w < 0 or unscaled_weight(w) for w in (*(loss.class_weights or ()), *(loss.pos_weight or ())))
            or (loss.like is not None and loss.like not in FRAMEWORKS)):
        raise Malformed("its options lie outside the ranges xent accepts")
    if info.num_classes < 1 or (info.rows is not None and info.rows < 0) or (info.samples is not None and info.samples < 0):
        raise Malformed("its input description counts rows or classes below 0")
    if info.classes is not None and len(info.classes) != (1 if info.head == "binary" else info.num_classes) and \
            len(info.classes) != info.num_classes:
        raise Malformed(f"its class names ({len(info.classes)}) do not name its {info.num_classes} classes")


def _no_constant(name: str) -> Any:
    raise Malformed(f"the JSON holds {name}, which JSON does not allow")


# What the attributes that are None in the totals of no rows may hold, and a fresh instance of each class to check it by.
OPTIONAL: dict[str, tuple[type, ...]] = {
    "calibration": (Calibration,), "groups": (GroupTotals,), "wsums": (dict,), "confusions": (Confusions,), "labels": (LabelTotals,),
    "clusters": (ClusterRuns, KeyedClusters), "accuracy_clusters": (ClusterRuns, KeyedClusters), "weighted_sums": (WeightedSums,), "temperature": (), "weight_total": (float,), "rank_by": (str,), "first": (list,),
    "last": (list,), "classes": (np.ndarray,), "bins": (np.ndarray,), "int_values": (np.ndarray,), "_sorted_ids": (np.ndarray,),
}
NULLABLE_ARRAYS = ("_sorted_ids",)  # GroupTotals: None once a group is no single integer
FRESH = {WeightedSums: WeightedSums, Calibration: Calibration, GroupTotals: GroupTotals, ClusterRuns: ClusterRuns, KeyedClusters: KeyedClusters,
         Confusions: lambda: Confusions(0), LabelTotals: lambda: LabelTotals(*[np.zeros(0, np.int64)] * 5, np.zeros(0))}


def _like(template: Any, value: Any, where: str) -> None:
    """`value` has the types of `template` (the totals of no rows, built for the same options):
    the same classes, numpy arrays of the same kind and dimensions, ints, floats and bools where
    they are; optional parts (None in the template) are checked against their class's own fresh
    instance when it has one."""
    if template is None:
        if value is None:
            return
        name = where.rsplit(".", 1)[-1]
        allowed = OPTIONAL.get(name, (np.ndarray, str, float, int))
        if type(value) not in allowed or isinstance(value, bool):
            raise Malformed(f"{where} is not what xent keeps there")
        fresh = FRESH.get(type(value))
        if fresh is not None:
            _like(fresh(), value, where)
        return
    if isinstance(template, np.ndarray):
        if value is None and where.rsplit(".", 1)[-1] in NULLABLE_ARRAYS:
            return
        if not isinstance(value, np.ndarray) or value.ndim != template.ndim or (value.dtype.kind != template.dtype.kind and
                                                                                  template.dtype.kind != "O"):
            raise Malformed(f"{where} is not an array like xent's")
        return
    if isinstance(template, bool) or isinstance(template, str):
        if type(value) is not type(template):
            raise Malformed(f"{where} is not a {type(template).__name__}")
        return
    if isinstance(template, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise Malformed(f"{where} is not a whole number")
        return
    if isinstance(template, float):
        if not isinstance(value, float):
            raise Malformed(f"{where} is not a number")
        return
    if type(template) in CLASSES.values():
        if type(value) is not type(template):
            raise Malformed(f"{where} is not a {type(template).__name__}")
        for key, item in vars(template).items():
            _like(item, getattr(value, key), f"{where}.{key}")
    elif isinstance(template, (list, dict, tuple)) and not isinstance(value, type(template)):
        raise Malformed(f"{where} is not a {type(template).__name__}")


def _check(part: Part, config: RunConfig, info: InputDescription) -> None:
    """What the report relies on: the types of the totals of this run, counts that are integers ≥ 0
    and add up, arrays with one entry per class."""
    from xentcli.engine import empty_part

    _like(empty_part(config, info), part, "the totals")
    for name, framework in part.frameworks.items():
        _like(FrameworkSummary(name), framework, f"the {str(name)[:20]} sums")
    s = part.summary
    findings = part.findings.values() if isinstance(part.findings, dict) else []
    counts = (s.rows, s.counted, s.ignored, s.correct, s.top_k_hits, s.zero_weight_rows, s.sketch.count, s.moments.n, s.worst_k,
              *(f.rows for f in findings if isinstance(f, Finding)))
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts) or s.top_k < 1:
        raise Malformed("a count is not a whole number ≥ 0")
    if (s.counted + s.ignored > s.rows or s.sketch.count > s.counted or s.correct > s.counted or s.top_k_hits > s.counted
            or (info.rows is not None and s.rows != info.rows) or any(f.rows > s.rows for f in findings if isinstance(f, Finding))):
        raise Malformed("its counts do not add up")
    if s.counted and not (math.isfinite(s.loss_min) and math.isfinite(s.loss_max) and s.loss_min <= s.loss_max):
        raise Malformed("its smallest and largest losses are not those of counted rows")
    if s.num_classes != info.num_classes or (s.per_class.classes is None and s.per_class.support.shape != (info.num_classes,)):
        raise Malformed("its per-class sums do not have one entry per class")
    if (s.worst.rows.dtype != np.int64 or s.worst.loss.dtype != np.float64 or s.worst.rows.ndim != 1
            or len(s.worst.rows) != len(s.worst.loss) or len(s.worst.rows) > s.worst.k):  # int8 rows wrapped when renumbered
        raise Malformed("its worst rows do not add up")
    if not isinstance(part.findings, dict) or not all(isinstance(f, Finding) for f in part.findings.values()):
        raise Malformed("its diagnostics are not findings")
    if not all(isinstance(item, dict) and isinstance(item.get("row", 0), int) and all(isinstance(k, str) for k in item)
               for f in part.findings.values() for item in f.examples):
        raise Malformed("a diagnostic's example is not a row")
    if not _worst_columns(s.worst.columns, len(s.worst.rows), sequences=s.clusters is not None):
        raise Malformed("a worst row is not one (its id, label, prediction and probability)")
    if s.worst.k != config.worst or s.worst_k != config.worst or not _worst_order(s.worst.rows, s.worst.loss, s.rows):
        raise Malformed("its worst rows are not the worst rows of its rows (their count, numbers or order)")
    if not all(isinstance(getattr(s, name), float) for name in ("loss_min", "loss_max")):
        raise Malformed("a sum is not a number")
    _check_moments(s.moments, s.counted)
    if s.weighted_sums is not None:
        w = s.weighted_sums
        if not (len(w.sums) == 8 and len(w.specials) == 5 and all(isinstance(x, int) and not isinstance(x, bool) for x in w.sums)
                and all(_special(x) for x in w.specials) and min(w.sums[1], w.sums[2], w.sums[4], w.sums[7]) >= 0):
            raise Malformed("its weighted sums are not eight whole numbers")
        _check_pending(w, 2)
    if s.weighed < 0 or s.weighed > s.counted:
        raise Malformed("its weighted rows do not add up")
    source = config.source
    weights = bool(source.sample_weights_path or source.weight_col) or (bool(config.loss.class_weights) and info.head == "softmax")
    if s.counted and s.weighted != weights:  # a sigmoid head's class weights scale its losses: no weighted mean
        raise Malformed("its weighted sums do not match its options' weights")
    _check_shapes(s, info, config.bins)


def _worst_order(rows: np.ndarray, loss: np.ndarray, total: int) -> bool:
    """Worst rows as WorstRows keeps them: rows of the run, each once, with finite losses, loss
    descending and ties by row."""
    if not rows.size:
        return True
    if rows.min() < 0 or rows.max() >= total or np.unique(rows).size != rows.size or not np.isfinite(loss).all():
        return False
    return bool(np.all((loss[:-1] > loss[1:]) | ((loss[:-1] == loss[1:]) & (rows[:-1] < rows[1:]))))


def _worst_columns(columns: Any, n: int, sequences: bool) -> bool:
    """The worst rows' columns as WorstRows keeps them, for n rows (none kept for none), with a
    sequence dump's sample and position exactly where the totals have sequences (a partial without
    them had merged, its rows showing no sequence)."""
    if not isinstance(columns, dict) or not all(isinstance(c, np.ndarray) and c.shape == (n,) for c in columns.values()):
        return False
    if not columns:
        return n == 0
    if set(columns) != ({*WORST_COLUMNS, "sample", "position"} if sequences else set(WORST_COLUMNS)):
        return False
    scalar = lambda x: x is None or isinstance(x, (int, float, str))  # noqa: E731 — ids and --group-col keys as JSON holds them
    whole = lambda x: x is None or (isinstance(x, int) and not isinstance(x, bool))  # noqa: E731
    return (columns["label"].dtype == np.int64 and columns["pred"].dtype == np.int64 and columns["p_true"].dtype == np.float64
            and all(columns[key].dtype == object for key in ("id", "sample", "position") if key in columns)
            and all(map(scalar, columns["id"].tolist())) and all(map(scalar, columns.get("sample", np.empty(0)).tolist()))
            and all(map(whole, columns.get("position", np.empty(0)).tolist())))


def _check_moments(m: LossMoments, counted: int) -> None:
    """The exact sums: whole numbers (M2's and the squares' ≥ 0), floats for the non-finite ones,
    and pending blocks as pieces [first row, stop row, float64 losses] inside their block, no more
    losses than rows; with the closed blocks, one loss a counted row."""
    numbers = (m.n, m.total, m.m2, m.means, m.squares, m.deviations, m.cross)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in numbers) or min(m.n, m.m2, m.squares) < 0 \
            or not all(_special(x) for x in (m.special, m.m2_special)):
        raise Malformed("its loss sums are not whole numbers")
    if m.n + _check_pending(m, 1) != counted:
        raise Malformed("its loss sums do not add up")


def _special(value: Any) -> bool:
    """A sum of non-finite block sums: 0.0 (none), ±inf or NaN."""
    return isinstance(value, float) and (value == 0.0 or not math.isfinite(value))


def _check_pending(blocks: Any, width: int) -> int:
    """Pending blocks as pieces [first row, stop row, float64 values [width, m]] inside their block,
    no more values than rows; returns how many values they hold."""
    from xentcli.accumulate import BLOCK_ROWS

    pending = 0
    for block, pieces in blocks.pending.items():
        for piece in pieces if isinstance(pieces, list) else [None]:
            if not (isinstance(block, int) and not isinstance(block, bool) and 0 <= block < 1 << 50 and isinstance(piece, list)
                    and len(piece) == 3
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in piece[:2])
                    and block * BLOCK_ROWS <= piece[0] < piece[1] <= (block + 1) * BLOCK_ROWS
                    and isinstance(piece[2], np.ndarray) and piece[2].dtype == np.float64 and piece[2].ndim == 2
                    and piece[2].shape[0] == width and piece[2].shape[1] <= piece[1] - piece[0]):
                raise Malformed("its pending blocks are not row ranges with their values")
            pending += piece[2].shape[1]
    if set(blocks.covered) != set(blocks.pending) or any(
            blocks.covered[block] != sum(piece[1] - piece[0] for piece in pieces) for block, pieces in blocks.pending.items()):
        raise Malformed("its pending blocks' row counts do not add up")
    return pending


def _same_length(where: str, *arrays: Any, length: int | None = None) -> None:
    sizes = {len(a) for a in arrays if a is not None}
    if len(sizes) > 1 or (length is not None and sizes and sizes != {length}):
        raise Malformed(f"the arrays of {where} do not have one length" + ("" if length is None else f" ({length})"))


def _check_shapes(s: LossSummary, info: InputDescription, bins: int) -> None:
    """Arrays that merge entry by entry have the lengths xent gives them; the sketch is xent's."""
    from xentcli.calibration import CELLS
    from xentcli.sketch import RELATIVE_ACCURACY

    pc = s.per_class
    _same_length("the per-class sums", *(getattr(pc, name) for name in ("support", "loss_sum", "correct", "p_true_sum", "predicted")),
                 pc.classes, length=info.num_classes if pc.classes is None else None)
    if pc.classes is not None and (pc.classes.size and (pc.classes.min() < 0 or pc.classes.max() >= info.num_classes
                                                        or np.any(np.diff(pc.classes) <= 0))):
        raise Malformed("the per-class classes are not ascending classes")
    _same_length("the worst rows", s.worst.rows, s.worst.loss)
    sketch = s.sketch
    if sketch.relative_accuracy != RELATIVE_ACCURACY or sketch.gamma != QuantileSketch().gamma or sketch.log_gamma != QuantileSketch().log_gamma:
        raise Malformed("its quantile sketch has another accuracy than xent's")
    for buckets in (sketch.positive, sketch.negative):
        if buckets.counts.ndim != 1 or abs(buckets.low) > 1 << 40 or (buckets.counts.size and buckets.counts.min() < 0):
            raise Malformed("its quantile sketch's buckets are not xent's")
    if int(sketch.positive.counts.sum()) + int(sketch.negative.counts.sum()) + sketch.zeros != sketch.count:
        raise Malformed("its quantile sketch's counts do not add up")
    if s.calibration is not None:
        c = s.calibration
        _same_length("the calibration grid", c.count, c.conf, c.conf2, c.correct, c.conf_correct, length=CELLS)
    if s.confusions is not None:
        _same_length("the confusions", s.confusions.codes, s.confusions.counts)
        if s.confusions.num_classes != info.num_classes:
            raise Malformed("its confusions count another number of classes")
    if s.labels is not None:
        t = s.labels
        _same_length("the per-label sums", t.counted, t.positives, t.predicted, t.correct, t.true_positives, t.loss_sum,
                     length=info.num_classes)
    if s.groups is not None:
        g = s.groups
        _same_length("the groups", g.keys, g.rows, g.counted, g.mean, g.m2, g.correct, *g.extra.values(),
                     length=None if g.int_values is None else len(g.int_values))
        if g.bins is not None and (g.bins.ndim != 3 or g.bins.shape != (3, len(g.rows), bins)):
            raise Malformed("the groups' calibration bins do not fit the groups and the bin count")
        if g.wsums is not None:
            if set(g.wsums) != set(WEIGHTED) or not all(isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f"
                                                        for v in g.wsums.values()):
                raise Malformed("the groups' weighted sums are not xent's")
            _same_length("the groups", g.rows, *g.wsums.values())
        if (g.wsums is not None) != bool(s.weighted) and len(g.rows):
            raise Malformed("the groups' weighted sums do not match its options' weights")


# What must agree between the inputs of merged partials, as between the shards of one dump (sources.Source).
SAME_INPUT = ("head", "num_classes", "input_kind", "target_kind", "sequence_length", "id_type", "group_types", "sequence_type", "classes",
              "label_names", "id_column")


def _check_regular(path: str) -> None:
    """A partial is a regular file: a pipe or a device (/dev/zero) would be read forever (found in
    review, 2026-12-03: `xent merge` hung on a FIFO)."""
    if os.path.isdir(path):
        raise InputError("is a folder, not a partial file", path=path)
    if not os.path.exists(path):
        raise InputError("no such file", path=path)
    if not os.path.isfile(path):
        raise InputError("is not a regular file (a pipe, socket or device)", path=path, hint="merge partial files written by --save-partial")


def read(path: str) -> tuple[Part, RunConfig, InputDescription]:
    """One partial file (InputError, one line, when it cannot be read or is not one)."""
    _check_regular(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except IsADirectoryError:
        raise InputError("is a folder, not a partial file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("is not a usable partial file: it is not UTF-8 text", path=path,
                         hint="write it with xent score --save-partial (of this version)") from None
    return loads(text, path)


def _refuse_repeats(paths: list[str]) -> None:
    """A partial merged twice counts its rows twice (found in review: `merge a.xpart a.xpart` doubled
    them silently): the same file, or a copy of it (the same bytes), is refused. Hashed, not parsed."""
    seen: dict[str, str] = {}  # the bytes' hash: the same file named twice has them too
    for path in paths:
        _check_regular(path)
        hashed = hashlib.sha256()
        try:
            with open(path, "rb") as f:  # hashlib.file_digest is 3.11's: xent runs on 3.10
                for block in iter(lambda: f.read(1 << 20), b""):
                    hashed.update(block)
        except OSError:
            continue  # read() says why
        digest = hashed.hexdigest()
        if digest not in seen:
            seen[digest] = path
        else:
            first = seen[digest]
            raise InputError(f"{'is named twice' if first == path else f'is a copy of {quoted(first)}'}: its rows would count twice",
                             path=path, hint="merge each partial once")


def merge_files(paths: list[str]) -> tuple[RunConfig, InputDescription, Part]:
    """Partial files merged in the order given, as one run over their inputs in that order would
    have merged them: the options and the layouts must agree (OptionError / LayoutError naming the
    first difference)."""
    from xentcli.errors import LayoutError, OptionError

    _refuse_repeats(paths)
    part, config, info = read(paths[0])
    infos = [info]
    for path in paths[1:]:
        other, other_config, other_info = read(path)
        differences = _differences(comparable(config), comparable(other_config))
        if differences:
            raise OptionError(f"was computed under other options than {paths[0]}: {'; '.join(differences[:3])}", path=path,
                              hint="merge partials written with the same options")
        for name in SAME_INPUT:
            if getattr(other_info, name) != getattr(info, name):
                raise LayoutError(f"{name.replace('_', ' ')} is {getattr(other_info, name)}, but {paths[0]} has {getattr(info, name)}",
                                  path=path, hint="merge partials of the same kind of dump")
        if (other_info.weights is None) != (info.weights is None):
            raise LayoutError(f"{'has' if other_info.weights else 'has no'} sample weights, unlike {paths[0]}", path=path,
                              hint="merge partials of the same kind of dump")
        try:
            part.then(other)
        except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:  # a crafted file
            raise InputError(f"does not merge with the partials before it: {type(exc).__name__}", path=path,
                             hint="write it again with xent score --save-partial") from None
        infos.append(other_info)
    dtypes = sorted({dtype for i in infos for dtype in i.score_dtype.split("+")})
    samples = [i.samples for i in infos]

    def described(name: str) -> Any:
        """A description the inputs share, else each input's (they were different files)."""
        values = list(dict.fromkeys(getattr(i, name) for i in infos))
        return values[0] if len(values) == 1 else "; ".join(str(v) for v in values[:3]) + (f"; … ({len(values)} in all)" if len(values) > 3 else "")

    joined = dataclasses.replace(
        info, path=" ".join(i.path for i in infos), rows=part.summary.rows, shards=sum(i.shards for i in infos),
        scores=described("scores"), targets=described("targets"), weights=described("weights"), sequences=described("sequences"),
        ids=described("ids"), format=described("format"),
        samples=None if None in samples else sum(samples),  # type: ignore[arg-type]
        score_dtype="+".join(dtypes), notes=tuple(note for i in infos for note in i.notes),
        labels_path=" ".join(i.labels_path for i in infos if i.labels_path) or None)
    return config, joined, part


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The options that differ, as 'name: A vs B'."""
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x) and dataclasses.is_dataclass(y):
            out += _differences(x, y, prefix)
        elif x != y and not (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
            out.append(f"{prefix}{f.name.replace('_', '-')} {_option_value(x)} vs {_option_value(y)}")
    return out


def _option_value(value: Any) -> str:
    """An option's value as a user writes it (found in review: "by ('region',) vs ()", "True vs False")."""
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(_option_value(v) for v in value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)
