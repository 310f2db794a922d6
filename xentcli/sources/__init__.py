"""Sources: detect an input's layout once, then yield row-aligned chunks of scores and targets.

Nothing downstream knows the file format: the engine sees `Source.description` and `Chunk`s.
"""

from __future__ import annotations

import glob
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli.config import WEIGHT_HINT, WEIGHT_RANGE, SourceConfig, unscaled_weight
from xentcli.errors import InputError, LayoutError, OptionError
from xentcli.sources import paths as paths_
from xentcli.sources.paths import FileStamp
from xentcli.sources.arrays import ArrayRoles, NpyArray, check_sequence_labels
from xentcli.sources.side import Roles, Side, value_kind
from xentcli.plain import quoted

EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".npy": "npy",
    ".npz": "npz",
}


@dataclass
class Chunk:
    """`offset` is the index of the chunk's first row in the whole input."""

    offset: int
    scores: npt.NDArray  # [n, C] float32 or float64
    labels: npt.NDArray | None  # [n] sparse labels as stored (int or float)
    targets: npt.NDArray | None  # [n, C] dense one-hot or soft targets
    ids: npt.NDArray | None
    weights: npt.NDArray | None = None  # [n] per-row sample weights
    sample: npt.NDArray | None = None  # sequences: the sequence of each row (index or group id)
    position: npt.NDArray | None = None  # and the row's position in it
    score_dtype: str = ""  # the stored dtype of this chunk's scores (shards may differ)
    groups: list[Any] | None = None  # --by: each group column's values (Arrow or numpy arrays)


@dataclass(frozen=True)
class InputDescription:
    """What was read and how it was understood; shown to the user before any number."""

    format: str
    path: str
    labels_path: str | None
    rows: int | None
    num_classes: int
    score_dtype: str
    scores: str
    input_kind: str
    input_kind_from: str
    targets: str
    target_kind: str
    ids: str | None
    weights: str | None = None
    samples: int | None = None  # sequences: how many (rows are then tokens)
    sequence_length: int | None = None  # fixed length T of [N, T, C] arrays
    sequences: str | None = None  # how the rows were grouped into sequences
    shards: int = 1  # files read as one dataset
    classes: tuple[str, ...] | None = None  # class names, when known
    label_names: bool = False  # the labels were class names, mapped to indices
    id_type: str | None = None  # the id column's type, as stored
    group_types: str | None = None  # --by: the kinds of values of the group columns (columns.value_kind), comma-joined
    sequence_type: str | None = None  # --group-col: the kind of its values
    notes: tuple[str, ...] = ()  # what xent decided for the user (skipped files, reordered columns)
    id_column: str | None = None  # the name ids carry in every output (the --id-col value)
    head: str = "softmax"  # softmax, or binary: one sigmoid score per row, read as two classes (binary.py)
    head_from: str = "default"  # the rule or option that decided the head

    def as_dict(self) -> dict[str, Any]:
        """The JSON `input` object (the id column's name is in `ids` already)."""
        return {key: value for key, value in self.__dict__.items() if key != "id_column"}

    @property
    def bytes_per_row(self) -> int:
        """Bytes of scores per row as computed: float64 stays 8 bytes, everything else becomes float32;
        a multi-label head's rows also hold a target and about ten float64 temporaries per label."""
        scores = self.num_classes * (8 if "float64" in self.score_dtype else 4)
        return scores + self.num_classes * 88 if self.head == "multilabel" else scores


def detect_format(path: str, override: str | None) -> str:
    if override:
        return override
    lowered = path.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lowered.endswith(ext):
            return EXTENSIONS[ext]
    raise InputError(
        "unknown file type",
        path=path,
        hint="use a .parquet, .arrow/.feather, .csv, .csv.gz, .npy or .npz file, or say which with --format",
    )


def _check_file(path: str) -> None:
    found = paths_.kind(path)
    if found == "missing":
        raise InputError("no such file", path=path)
    if found == "folder":
        raise InputError("is a folder, not a file", path=path, hint="name one file")
    if found != "file":
        raise InputError("is not a regular file (a pipe, socket or device)", path=path, hint="save the dump to a file first")
    if not paths_.is_url(path) and not os.access(path, os.R_OK):
        raise InputError("cannot be read (permission denied)", path=path)


# One adapter per format: module and function (imported when a file of that format is opened,
# so NPY runs never import pyarrow). A new format is a module and a line here.
ADAPTERS = {
    "parquet": ("xentcli.sources.columnar", "columnar_side"),
    "arrow": ("xentcli.sources.columnar", "columnar_side"),
    "csv": ("xentcli.sources.columnar", "columnar_side"),
    "npy": ("xentcli.sources.arrays", "array_side"),
    "npz": ("xentcli.sources.arrays", "array_side"),
}


def _open_side(
    path: str,
    cfg: SourceConfig,
    want_scores: bool,
    fmt_override: str | None,
    seq: tuple[int | None, int] = (None, 2),
    classes: tuple[str, ...] | None = None,
    first: tuple[str, tuple[str, ...]] | None = None,
) -> tuple[Side, str]:
    _check_file(path)
    fmt = detect_format(path, fmt_override)
    module, function = ADAPTERS[fmt]
    adapter = getattr(importlib.import_module(module), function)
    return adapter(path, fmt, cfg, want_scores, seq, classes, first), fmt


def _refuse_table_options(cfg: SourceConfig, path: str, fmt: str, labels_fmt: str | None) -> None:
    """Options that name a table's columns given for arrays (NPY, NPZ), which they would not
    change: refused rather than left unused (a --label-col gold would score against another array,
    a --group-col's clustering would be lost and the intervals too narrow)."""
    arrays = ("npy", "npz")
    target_fmt = labels_fmt or fmt
    given = [(cfg.group_option, cfg.group_col, fmt), ("--score-col", cfg.score_col, fmt), ("--score-prefix", cfg.score_prefix, fmt),
             ("--label-col", cfg.label_col, target_fmt), ("--target-prefix", cfg.target_prefix, target_fmt)]
    for option, value, applies_to in given:
        if value is not None and applies_to in arrays:
            hint = ("an NPY/NPZ dump's sequences are [N, T, C] arrays; rows grouped by an id column need Parquet, Arrow or CSV"
                    if option == cfg.group_option else "name NPZ arrays with --score-key and --label-key")
            raise OptionError(f"{option} names a table's column, but {'the labels are' if applies_to != fmt else 'the dump is'} "
                              f"{applies_to.upper()} arrays", path=cfg.labels_path if applies_to != fmt else path, hint=hint)
    if cfg.id_col is not None and fmt == "npy":  # an .npy holds one array: there is nothing the ids could be
        raise OptionError("--id-col names an array or column, but an .npy file holds the scores alone", path=path,
                          hint="store the ids in an NPZ beside the scores, or in a table")
    for option, value, applies_to in (("--score-key", cfg.score_key, fmt), ("--label-key", cfg.label_key, target_fmt)):
        if value is not None and applies_to != "npz":
            raise OptionError(f"{option} names an NPZ array, but {'the labels are' if applies_to != fmt else 'the dump is'} "
                              f"{applies_to.upper()}", path=cfg.labels_path if applies_to != fmt else path,
                              hint="name a table's columns with --score-col and --label-col")


class FileSource:
    """One opened input file (with its labels and weights files): description and chunks."""

    def __init__(self, cfg: SourceConfig, first: tuple[str, tuple[str, ...]] | None = None) -> None:
        """`first`: the first shard's path and class names, when this file is a later shard."""
        path = cfg.paths[0]
        # each file as found before it is opened: verify checks that it stays so
        found = (FileStamp.of(p) for p in (path, cfg.labels_path, cfg.sample_weights_path, cfg.by_file) if p)
        self.stamps = [stamp for stamp in found if stamp is not None]
        _refuse_table_options(cfg, path, detect_format(path, cfg.format),
                              None if cfg.labels_path is None else detect_format(cfg.labels_path, None))
        main, fmt = _open_side(path, cfg, True, cfg.format, first=first)
        labels = None
        if cfg.labels_path is not None:
            labels, _ = _open_side(cfg.labels_path, cfg, False, None, (main.seq_len, main.class_axis), main.classes or cfg.classes)
        extras: list[tuple[Roles, str]] = []
        if labels is not None:
            extras.append((labels.roles, "targets"))
        weights_from = main.weights
        group_types = main.group_types
        if cfg.sample_weights_path is not None:
            _check_file(cfg.sample_weights_path)
            weights = NpyArray(cfg.sample_weights_path, os.path.basename(cfg.sample_weights_path))
            fits = len(weights.shape) == 1 or (len(weights.shape) == 2 and weights.shape[1] in (1, main.seq_len or 1))
            if not fits:
                expected = "[rows] or [rows, 1]" if main.seq_len is None else f"[N], [N, 1] or [N, {main.seq_len}]"
                raise LayoutError(f"sample weights have shape {list(weights.shape)}; expected {expected}", path=cfg.sample_weights_path)
            extras.append((ArrayRoles({"weights": weights}, cfg.sample_weights_path, main.seq_len, main.class_axis), "weights"))
            weights_from = f"array of shape {list(weights.shape)} in {cfg.sample_weights_path}"
        if cfg.by_file is not None:
            if cfg.by:
                raise OptionError("--by and --by-file both name the groups", hint="use one of them")
            _check_file(cfg.by_file)
            groups = NpyArray(cfg.by_file, os.path.basename(cfg.by_file), kinds="biufUSMm")
            if len(groups.shape) != 1:
                raise LayoutError(f"groups have shape {list(groups.shape)}; expected [rows]", path=cfg.by_file)
            extras.append((ArrayRoles({"by0": groups}, cfg.by_file, main.seq_len, main.class_axis), "by0"))
            group_types = value_kind(groups.dtype)
        for extra, _ in extras:
            if main.roles.rows is not None and extra.rows is not None and main.roles.rows != extra.rows:
                raise LayoutError(
                    f"holds {extra.rows} rows but {path} holds {main.roles.rows}",
                    path=extra.path,
                    hint="it must hold one entry per row of scores, in the same order",
                    code="XE302",
                )
        self.cfg = cfg
        self._first_row = cfg.part[0] if cfg.part is not None else 0  # a part's first row: errors name rows as the file does
        if cfg.part is not None:
            for roles in (main.roles, *(extra for extra, _ in extras)):
                roles.restrict(*cfg.part)  # type: ignore[attr-defined]
        target_side = labels or main
        num_classes = main.num_classes
        check_sequence_labels(main, target_side, cfg.class_axis)
        if main.roles.rows == 0 or getattr(main.roles, "empty", False):
            raise InputError("holds no rows", path=path, hint="there is nothing to score; check the step that wrote it", code="XE304")
        if num_classes < 1:
            raise LayoutError("the scores have no classes (empty rows)", path=path, hint="each row needs one score per class")
        head, head_from = _head(cfg, num_classes)
        if head == "softmax" and num_classes == 1 and target_side.target_kind == "sparse" and cfg.target_kind == "auto":
            # a softmax over one score: its targets, of the scores' shape, are dense, as PyTorch reads them
            # (and the loss is 0 whatever they hold: XE112 says so)
            target_side.target_kind, target_side.target_width = "dense", 1
        if head == "binary":
            if main.seq_len is not None:
                raise OptionError("a sigmoid head over sequences ([N, T] scores) is not supported yet", path=path,
                                  hint="flatten the tokens into rows, one score each")
            if target_side.target_kind == "dense":
                raise LayoutError("a binary head takes one target per row (0/1 or a probability in [0, 1])",
                                  path=target_side.roles.path, hint="store the targets as one column or a [rows] array")
            num_classes = 2  # scored as two classes: P(y = 1) = σ(z) (binary.py)
        if head == "multilabel":
            if main.seq_len is not None:
                raise OptionError("a sigmoid head over sequences is not supported yet", path=path)
            if target_side.target_kind != "dense":
                raise LayoutError(f"a multi-label head needs one target per label: rows of {num_classes} entries in [0, 1]",
                                  path=target_side.roles.path,
                                  hint="store multi-hot rows (a list column, wide label_0… columns or a [rows, labels] array)")
        if target_side.target_kind == "dense" and target_side.target_width != num_classes:
            raise LayoutError(
                f"dense targets have {target_side.target_width} classes but the scores have {num_classes}",
                path=target_side.roles.path,
                hint="targets and scores must have one column per class",
                code="XE303",
            )
        classes = main.classes or cfg.classes
        if classes is not None and head == "binary" and len(classes) == 2:
            pass  # --classes neg,pos names a binary head's two outcomes
        elif classes is not None and len(classes) != num_classes:
            raise OptionError(
                f"--classes names {len(classes)} {'class' if len(classes) == 1 else 'classes'} but the scores have {num_classes}",
                hint="name every class, in the order of the score columns",
            )
        if cfg.input_kind:
            kind, kind_from = cfg.input_kind, "--input"
        elif main.kind_hint:
            kind, kind_from = main.kind_hint, main.kind_hint_from
        else:
            kind, kind_from = "logits", "default"
        self._main = main.roles
        self._extras = extras
        self._weights_from = cfg.sample_weights_path or f"{path} (column '{cfg.weight_col}')"
        self.description = InputDescription(
            format=fmt,
            path=path,
            labels_path=cfg.labels_path,
            rows=main.roles.rows,
            num_classes=num_classes,
            score_dtype=main.score_dtype,
            scores=main.scores,
            input_kind=kind,
            input_kind_from=kind_from,
            targets=target_side.targets,
            target_kind=target_side.target_kind,
            ids=main.ids,
            weights=weights_from,
            samples=main.samples,
            sequence_length=main.seq_len,
            sequences=main.sequences,
            classes=classes,
            label_names=target_side.label_names,
            id_type=main.id_type,
            group_types=group_types,
            sequence_type=main.sequence_type,
            notes=tuple(main.notes),
            id_column=cfg.id_col,
            head=head,
            head_from=head_from,
        )
        self._rows_done = 0

    def _checked_weights(self, weights: npt.NDArray[np.float64], offset: int) -> npt.NDArray[np.float64]:
        """Sample weights must be finite and ≥ 0, as --class-weights must: a negative weight makes
        the weighted mean leave [min, max] of the losses, a NaN one makes it undefined."""
        with np.errstate(invalid="ignore"):
            bad = ~(weights >= 0) | (weights == np.inf)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"the sample weight of row {offset + row} is {weights[row]}; weights must be finite and ≥ 0",
                path=self._weights_from, hint="fix the weights (0 leaves a row out of the weighted mean)",
            )
        odd = (weights != 0) & ((weights < WEIGHT_RANGE[0]) | (weights > WEIGHT_RANGE[1]))
        if odd.any():
            row = int(np.flatnonzero(odd)[0])
            raise InputError(f"the sample weight of row {offset + row} is {float(weights[row])!r}, which {unscaled_weight(float(weights[row]))}",
                             path=self._weights_from, hint=WEIGHT_HINT)
        return weights

    def progress(self) -> float | None:
        """Fraction of the input read so far, when it can be known."""
        if self.description.rows:
            return self._rows_done / self.description.rows
        return self._main.progress()

    def verify(self) -> None:
        """Once every chunk is scored (and every output written): each file is still the one read (FileStamp)."""
        for stamp in self.stamps:
            stamp.verify()

    def sequence_count(self) -> int | None:
        """How many positional sequences ([N, T, C] arrays, nested lists) this file's rows hold —
        empty ones too, which no token shows — for the next shard's or task's numbering; None for
        rows that are no such sequences (flat rows, --group-col keys) or a count not known."""
        if self.description.samples is None or self.cfg.group_col is not None:
            return None
        if self.cfg.part is not None:  # a task's rows of the file: sequences, for both layouts
            return self.cfg.part[1] - self.cfg.part[0]
        return self.description.samples

    def chunks(self, rows: int) -> Iterator[Chunk]:
        batches = rechunk(self._main.batches(rows), rows)
        for extra, role in self._extras:
            batches = _paired(batches, rechunk(extra.batches(rows), rows), extra.path, role)
        dense = self.description.target_kind == "dense"
        offset = 0
        for batch in batches:
            targets = batch["targets"]
            scores = _compute_dtype(batch["scores"])
            n = len(scores)
            scores = scores.reshape(n, -1)  # one score per row ([N]) as [N, 1]
            weights = batch.get("weights")
            if weights is not None:
                weights = self._checked_weights(weights.reshape(n).astype(np.float64), self._first_row + offset)
            sample, position = batch.get("sample"), batch.get("position")
            if dense:
                chunk = Chunk(offset, scores, None, _compute_dtype(targets).reshape(n, -1), batch.get("ids"), weights, sample, position)
            else:
                chunk = Chunk(offset, scores, targets.reshape(n), None, batch.get("ids"), weights, sample, position)
            chunk.score_dtype = self.description.score_dtype
            chunk.groups = [batch[key] for key in sorted((k for k in batch if k.startswith("by")), key=lambda k: int(k[2:]))] or None
            yield chunk
            offset += n
            self._rows_done = offset


def expand_paths(paths: tuple[str, ...], fmt: str | None = None) -> tuple[list[str], list[str]]:
    """Files named, matched by a glob, or found (recursively) in a folder, in a stable order; and
    notes on what a folder or glob held that was left out. Within a folder or glob, non-regular
    files (pipes, sockets) are skipped, and one format is read: the only one there, or `fmt`."""
    files: list[str] = []
    notes: list[str] = []
    for path in paths:
        if paths_.is_url(path):
            if any(char in path for char in "*?["):
                raise InputError("a URL cannot be a glob", path=path, hint="name a file or a folder")
            if paths_.kind(path) != "folder":
                files.append(path)
                continue
            every = [name[len(path.rstrip("/")) + 1:] for name in paths_.folder_files(path)]
            found = [path.rstrip("/") + "/" + name for name in _dump_files(every, notes, path, "/", fmt)]
            if not found:
                raise InputError("holds no .parquet, .arrow, .csv, .npy or .npz files", path=path)
        elif os.path.isdir(path):
            every = [os.path.relpath(os.path.join(root, name), path) for root, _, names in os.walk(path) for name in names]
            found = sorted(os.path.join(path, name) for name in _dump_files(every, notes, path, os.sep, fmt))
            if not found:
                raise InputError("holds no .parquet, .arrow, .csv, .npy or .npz files", path=path,
                                 hint="shards without an extension (part-00000) are read with --format")
        elif any(char in path for char in "*?[") and not os.path.exists(path):
            found = sorted(name for name in glob.glob(path, recursive=True) if not os.path.isdir(name))
            if not found:
                raise InputError("matches no file", path=path, hint="check the pattern (quote it so the shell leaves it to xent)")
        else:
            files.append(path)
            continue
        files += _one_format(path, found, fmt, notes)
    _refuse_repeats(files)
    return files, notes


def _refuse_repeats(files: list[str]) -> None:
    """One file named twice — the same name twice, a folder and a file in it, a symlink beside its
    target — would count its rows twice (found in review: 80 rows read as 160): refused, naming both."""
    seen: dict[tuple[int, int], str] = {}
    for name in files:
        if paths_.is_url(name):
            continue
        try:
            stat = os.stat(name)
        except OSError:
            continue  # the reader says why
        key = (stat.st_dev, stat.st_ino)
        if not stat.st_ino:  # a file system without inode numbers: no identity to compare
            continue
        if key not in seen:
            seen[key] = name
        else:
            first = seen[key]
            same = "is named twice" if first == name else f"is the same file as {quoted(first)}"
            raise InputError(f"{same}: its rows would count twice", path=name, hint="name each shard once")


def _shard_name(name: str) -> bool:
    """A shard's name without an extension: Hadoop's and Spark's part-00000, part-r-00000 (not a
    README or LICENSE, found in review: read as data with --format csv)."""
    base = name.lower().rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]
    return "." not in base and base.startswith("part-")


def _known(name: str, fmt: str | None) -> bool:
    """A file a folder or glob reads: a dump's extension, or a shard's name without one when --format
    says what it is."""
    base = name.lower().rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]
    return any(base.endswith(ext) for ext in EXTENSIONS) or (fmt is not None and _shard_name(base))


def _dump_files(relative: list[str], notes: list[str], folder: str, sep: str = "/", fmt: str | None = None) -> list[str]:
    """The files of a folder (paths relative to it) that hold a dump's shards: a dump's extension,
    and no part of the path beginning with "." or "_" — hidden files and folders (an editor's or
    Jupyter's .ipynb_checkpoints, whose stale copies would count twice) and a writer's temporary or
    metadata ones (Spark's _temporary, _SUCCESS), as pyarrow.dataset leaves them out. A note says
    how many such files were left out."""
    dumps = [name for name in relative if _known(name, fmt)]
    kept = [name for name in dumps if not any(part.startswith((".", "_")) for part in name.split(sep))]
    if len(kept) < len(dumps):
        skipped = len(dumps) - len(kept)
        notes.append(f"{folder}: left out {skipped:,} {'file' if skipped == 1 else 'files'} under names beginning with '.' or '_' "
                     "(hidden, temporary or metadata files and folders)")
    others = [name for name in relative if name not in set(dumps) and _shard_name(name)
              and not any(part.startswith((".", "_")) for part in name.split(sep))]
    if others:  # found in review: Hadoop's part-00001 (no extension) was dropped without a word
        shown = ", ".join(map(quoted, others[:3])) + (f" and {len(others) - 3:,} more" if len(others) > 3 else "")
        notes.append(f"{folder}: left out {len(others):,} {'shard' if len(others) == 1 else 'shards'} without an extension "
                     f"({shown}); --format reads them")
    return kept


def _one_format(path: str, found: list[str], fmt: str | None, notes: list[str]) -> list[str]:
    """The regular files of one format among those a folder or glob found."""
    regular = [name for name in found if paths_.is_url(name) or os.path.isfile(name)]
    if len(regular) < len(found):
        notes.append(f"{path}: skipped {len(found) - len(regular)} entries that are not regular files (pipes, sockets, devices)")
    if not regular:
        raise InputError("holds no regular files to read", path=path)
    if fmt is not None:
        kept = [name for name in regular if _known(name, None) and detect_format(name, None) == fmt
                or not _known(name, None) and _shard_name(name)]
        if len(kept) < len(regular):
            notes.append(f"{path}: --format {fmt}: skipped {len(regular) - len(kept)} files of other formats")
        if not kept:
            raise InputError(f"holds no {fmt} files", path=path)
        return kept
    formats = sorted({detect_format(name, None) for name in regular})
    if len(formats) > 1:
        raise InputError(
            f"holds files of several formats ({', '.join(formats)}): one dump is one format",
            path=path, hint=f"say which to read with --format {formats[0]} (the others are skipped)",
        )
    return regular


def input_files(cfg: SourceConfig, files: list[str] | None = None) -> list[str]:
    """Every file a run reads (the dump's files as expanded — `files` where they already are — its
    labels, weights and groups files): what no output may write over."""
    dump = expand_paths(cfg.paths, cfg.format)[0] if files is None else files
    return dump + [p for p in (cfg.labels_path, cfg.sample_weights_path, cfg.by_file) if p]


class Source:
    """The input: one file, or several shards read one after another as one dataset.

    Shards must agree on the number of classes, their names and order (class-named columns in
    another order are read in the first shard's order), what the scores and targets are, and the
    id type; rows are numbered across the shards in order (sorted names within a folder or glob).
    Each later shard is opened to check it and closed again, and opened anew when its turn comes
    to be read: a dump of thousands of shards holds at most two open (the first, and one more)."""

    def __init__(self, cfg: SourceConfig) -> None:
        files, notes = expand_paths(cfg.paths, cfg.format)
        if len(files) > 1 and (cfg.labels_path or cfg.sample_weights_path or cfg.by_file):
            raise OptionError(
                "--labels, --sample-weights and --by-file pair with a single scores file",
                hint="keep the labels in the shards themselves, or score one file at a time",
            )
        self.files = input_files(cfg, files)  # (the folder listed once)
        self._configs = [replace(cfg, paths=(name,)) for name in files]
        # the first shard stays open (a single-file dump is opened once); later shards are opened to
        # check them and again when read
        self._opened: FileSource | None = FileSource(self._configs[0])
        first = self._opened.description
        self._first_classes = (first.path, first.classes) if first.classes else None
        descriptions = [first]
        self._stamps = list(self._opened.stamps)  # every shard's files as first found (verify)
        for shard in self._configs[1:]:
            checked = FileSource(shard, self._first_classes)  # closed again at once (the next replaces it)
            descriptions.append(checked.description)
            self._stamps += checked.stamps
        for info in descriptions[1:]:
            for field_name in ("head", "num_classes", "input_kind", "target_kind", "sequence_length", "id_type", "group_types",
                               "sequence_type"):
                if getattr(info, field_name) != getattr(first, field_name):
                    raise LayoutError(
                        f"{field_name.replace('_', ' ')} is {getattr(info, field_name)}, but {first.path} has {getattr(first, field_name)}",
                        path=info.path,
                        hint="all shards of a dump must have the same layout",
                    )
            if (info.sequences is None) != (first.sequences is None):  # a row is a sample in one, a sequence in the other
                def rows_of(d: InputDescription) -> str:
                    return "flat rows" if d.sequences is None else f"sequences ({d.sequences})"

                raise LayoutError(f"its rows are {rows_of(info)}, but {first.path} has {rows_of(first)}", path=info.path,
                                  hint="all shards of a dump must have the same layout")
        self.shard_rows = [info.rows for info in descriptions]  # rows a shard scores (tokens of sequences); None: known once read
        dtypes = sorted({info.score_dtype for info in descriptions})
        if len(dtypes) > 1:
            notes.append(f"shards store their scores in different dtypes ({', '.join(dtypes)}); each is read as stored")
        notes += [note for info in descriptions for note in info.notes]
        if len(descriptions) == 1:
            self.description = replace(first, notes=tuple(notes))
        else:
            rows = [info.rows for info in descriptions]
            samples = [info.samples for info in descriptions]
            self.description = replace(
                first,
                path=" ".join(cfg.paths),
                rows=None if None in rows else sum(rows),  # type: ignore[arg-type]
                samples=None if None in samples else sum(samples),  # type: ignore[arg-type]
                shards=len(descriptions),
                format=first.format,
                score_dtype="+".join(dtypes),
                notes=tuple(notes),
            )
        self._current = 0
        self._shard: FileSource | None = None

    def sequence_count(self) -> int | None:
        """How many positional sequences the shards hold together, empty ones too (FileSource's)."""
        if self.description.samples is None or self._configs[0].group_col is not None:
            return None
        return self.description.samples

    def verify(self) -> None:
        """Once every chunk is scored (and every output written): each file of every shard is still
        the one read, as the shard's first opening found it (FileStamp)."""
        for stamp in self._stamps:
            stamp.verify()

    @property
    def shard_configs(self) -> list[SourceConfig]:
        """One source config per shard, in reading order."""
        return list(self._configs)

    @property
    def has_parquet(self) -> bool:
        """Whether a shard is a Parquet file (a local run then runs its row groups as tasks: distributed.local_tasks)."""
        return any(detect_format(shard.paths[0], shard.format) == "parquet" for shard in self._configs)

    @property
    def first_classes(self) -> tuple[str, tuple[str, ...]] | None:
        """The first shard's path and class names, when it names its classes (a later shard is read in their order)."""
        return self._first_classes

    def progress(self) -> float | None:
        done = self._shard.progress() if self._shard is not None else 0.0
        if done is None:
            return None
        return (self._current + done) / len(self._configs)

    def chunks(self, rows: int) -> Iterator[Chunk]:
        offset = 0
        sample_offset = 0
        for index, shard_cfg in enumerate(self._configs):
            self._current = index
            self._shard = self._opened if index == 0 and self._opened is not None else FileSource(shard_cfg, self._first_classes if index else None)
            self._opened = None
            last = None
            tail = offset
            for chunk in self._shard.chunks(rows):
                chunk.offset += offset
                # positional sequence numbers ([N, T, C] arrays, nested lists) restart in each shard and are
                # shifted past the last shard's; --group-col values name the sequence and stay as they are
                if chunk.sample is not None and chunk.sample.dtype.kind in "iu" and shard_cfg.group_col is None:
                    chunk.sample = chunk.sample + sample_offset
                    last = chunk.sample[-1] if chunk.sample.size else last
                yield chunk
                tail = chunk.offset + len(chunk.scores)
            sequences = self._shard.sequence_count()
            self._shard = None  # closes its files
            offset = tail
            if sequences is not None:  # its empty sequences too, the last ones included
                sample_offset += sequences
            elif last is not None:
                sample_offset = int(last) + 1


def _head(cfg: SourceConfig, width: int) -> tuple[str, str]:
    """Which head the scores come from, and what decided it: one score per row is a binary
    sigmoid head unless --head softmax; K ≥ 2 scores are a softmax unless --head sigmoid
    (multi-label: K independent labels)."""
    if cfg.head == "softmax":
        return "softmax", "--head softmax"
    if width == 1:
        return "binary", "--head sigmoid" if cfg.head == "sigmoid" else "one score per row"
    if cfg.head == "sigmoid":
        return "multilabel", "--head sigmoid"
    return "softmax", "default"


def _compute_dtype(values: npt.NDArray) -> npt.NDArray:
    """float32 and float64 stay as stored; float16 widens to float32 (exact), integers to float64."""
    if values.dtype == np.float32 or values.dtype == np.float64:
        return values
    if values.dtype == np.float16:
        return values.astype(np.float32)
    return values.astype(np.float64)


def rechunk(batches: Iterator[dict[str, npt.NDArray]], rows: int) -> Iterator[dict[str, npt.NDArray]]:
    """Re-cut row-aligned batches of any sizes into batches of exactly `rows` rows (the last may be short)."""
    pending: list[dict[str, npt.NDArray]] = []
    have = 0
    for batch in batches:
        n = len(next(iter(batch.values())))
        if not pending and n == rows:
            yield batch
            continue
        pending.append(batch)
        have += n
        if have < rows:
            continue
        joined = pending[0] if len(pending) == 1 else {key: _join([p[key] for p in pending]) for key in batch}
        start = 0
        while have - start >= rows:
            yield {key: value[start : start + rows] for key, value in joined.items()}
            start += rows
        have -= start
        pending = [{key: value[start:] for key, value in joined.items()}] if have else []
    if have:
        yield pending[0] if len(pending) == 1 else {key: _join([p[key] for p in pending]) for key in pending[0]}


def _join(parts: list[Any]) -> Any:
    """Row-aligned pieces of one role joined: numpy arrays, or Arrow arrays (ids keep their type)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import pyarrow as pa

    return pa.concat_arrays(parts)


def _paired(
    main: Iterator[dict[str, npt.NDArray]], other: Iterator[dict[str, npt.NDArray]], other_path: str, role: str
) -> Iterator[dict[str, npt.NDArray]]:
    """Join row-aligned batches of the scores with those of a second file holding `role`."""
    hint = "it must hold one entry per row of scores, in the same order"
    seen = 0
    for left in main:
        right = next(other, None)
        n = len(left["scores"])
        if right is None or len(right[role]) < n:
            got = seen + (0 if right is None else len(right[role]))
            raise LayoutError(f"ends after {got} rows, before the scores do", path=other_path, hint=hint, code="XE302")
        if len(right[role]) > n:  # the scores' batch was the shorter: they ended first (found in review: called the reverse)
            raise LayoutError(f"holds more rows than the {seen + n} rows of scores", path=other_path, hint=hint, code="XE302")
        seen += n
        yield {**left, **right}
    if next(other, None) is not None:
        raise LayoutError(f"holds more rows than the {seen} rows of scores", path=other_path, hint=hint, code="XE302")
