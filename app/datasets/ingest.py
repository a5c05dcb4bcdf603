"""An uploaded file (CSV, Parquet or NumPy .npz) made into the rows the engine trains on.

`ingest(source, options, limits, digest)` is a pure function of the file's bytes and the
options (no database, no store, no settings): it reads the file, checks it, and returns the
arrays and description that `scarcity.datasets.uploaded.write` stores. Every refusal is an
`IngestError(field, message)`, a 422 naming the form field and, in the message, the column
and the row (rows count from 1, the header not counted).

The rules (README, "Your own data"):

- The format is recognised by the content: Parquet by its `PAR1` magic, .npz as a ZIP archive,
  anything else is read as UTF-8 CSV with a header line (separator `,`, `;` or tab, whichever
  the header holds most of; pandas' defaults for missing cells: empty, `NA`, `NaN`, `null`, …).
- A table's `label` column holds the labels, the optional `client_column` each row's natural
  client; every other column is a feature and must hold numbers or booleans, with no missing
  or infinite value. In an .npz, array `x` holds the features ([rows, …], trailing axes
  flattened), `label` names the label array (usually `y`) and `client_column` the client-id
  array (e.g. `client_ids`); other arrays are ignored.
- Labels: text, booleans and integers are classes; floating-point numbers are a regression
  target when any of them is not a whole number, classes otherwise. `task` overrides that
  (`regression` for integer targets such as counts, `classification` for float codes).
  Classes are numbered 0..C-1 in sorted order (numbers by value, text by character codes),
  their names kept as text. Regression targets are kept as they are.
- Natural clients are numbered 0..K-1 in the order each first appears, their names kept.
- `test_fraction` f holds out round(n·f) rows of every class (of every natural client, when
  there are clients; a regression target: of every client, or of all rows), at most n − 1 of
  each, drawn with a generator seeded from the upload's digest, so the same upload always
  holds out the same rows. They become the data set's own test split.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from dataclasses import asdict, dataclass
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from scarcity.datasets.base import Arrays
from scarcity.datasets.uploaded import INGEST_VERSION

Format = Literal["csv", "parquet", "npz"]
Task = Literal["classification", "regression"]

#: Fewer rows cannot be split into training rows, test rows and clients meaningfully.
MIN_ROWS = 10
#: Column or array names listed in a message (the rest are counted).
NAMES_SHOWN = 20
#: How much of a CSV's first line is read to find its separator.
HEADER_BYTES = 1 << 16
#: A name (class, client, feature) as shown and stored is cut to this many characters.
NAME_CHARACTERS = 200
# What neither database stores in text: NUL, and lone surrogates (an .npz's text may hold them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class IngestError(Exception):
    """A file or option the ingest refuses: `field` is the form field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Options:
    """What shapes the rows besides the bytes: part of the upload's id."""

    label: str
    client_column: str | None = None
    test_fraction: float | None = None
    task: Task | None = None

    def canonical(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    rows: int
    #: Feature columns (the label and client columns aside).
    columns: int
    classes: int
    #: Rows × features: what the rows take in memory, 8 bytes each.
    cells: int
    #: Natural clients.
    clients: int


@dataclass(frozen=True)
class Ingested:
    arrays: Arrays
    description: dict[str, Any]


@dataclass(frozen=True)
class _Columns:
    """A file read and its features checked: what every format comes to."""

    x: np.ndarray
    feature_names: list[str]
    labels: np.ndarray
    clients: np.ndarray | None


def detect_format(head: bytes) -> Format:
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a ZIP archive (empty or not)
        return "npz"
    return "csv"


def ingest(source: IO[bytes], options: Options, limits: Limits, digest: str) -> Ingested:
    """The rows and description of the file in `source` (seekable), or an IngestError."""
    source.seek(0)
    fmt = detect_format(source.read(8))
    source.seek(0)
    if fmt == "npz":
        columns = _read_npz(source, options, limits)
    else:
        frame = (
            _read_parquet(source, options, limits)
            if fmt == "parquet"
            else _read_csv(source, options, limits)
        )
        columns = _from_frame(frame, options, limits)
    return _assemble(columns, options, limits, digest, fmt)


# --- names, sizes -------------------------------------------------------------------------------


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _check_header(columns: list[str], options: Options, limits: Limits, what: str) -> list[str]:
    """The feature columns of a table with these columns, the label and client column checked."""
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise IngestError("file", f"column {repeated[0]!r} appears more than once")
    if options.label not in columns:
        raise IngestError(
            "label", f"no {what} {options.label!r} in the file; it has {_listed(columns)}"
        )
    if options.client_column is not None:
        if options.client_column == options.label:
            raise IngestError("client_column", "is the label column; name another column")
        if options.client_column not in columns:
            raise IngestError(
                "client_column",
                f"no {what} {options.client_column!r} in the file; it has {_listed(columns)}",
            )
    unnamed = [
        i for i, name in enumerate(columns) if not name.strip() or name.startswith("Unnamed: ")
    ]
    if unnamed:
        raise IngestError(
            "file",
            f"column {unnamed[0] + 1} has no name (a written row index?): name it or drop it",
        )
    features = [c for c in columns if c not in (options.label, options.client_column)]
    if not features:
        raise IngestError(
            "file", "no feature column: every column but the label and client column is a feature"
        )
    if len(features) > limits.columns:
        raise IngestError(
            "file",
            f"{len(features):,} feature columns: at most {limits.columns:,} "
            "(SCARCITY_MAX_UPLOAD_COLUMNS)",
        )
    return features


def _check_rows(rows: int, features: int, limits: Limits) -> None:
    if rows > limits.rows:
        raise IngestError("file", f"more than {limits.rows:,} rows (SCARCITY_MAX_UPLOAD_ROWS)")
    if rows < MIN_ROWS:
        raise IngestError("file", f"{rows} rows: at least {MIN_ROWS} are needed")
    if rows * features > limits.cells:
        raise IngestError(
            "file",
            f"{rows:,} rows × {features:,} features = {rows * features:,} values: at most "
            f"{limits.cells:,} (SCARCITY_MAX_UPLOAD_CELLS)",
        )


# --- tables: CSV and Parquet --------------------------------------------------------------------


def _read_csv(source: IO[bytes], options: Options, limits: Limits) -> pd.DataFrame:
    first = source.readline(HEADER_BYTES)
    source.seek(0)
    try:  # incremental: a first line cut at HEADER_BYTES may end inside a character
        header = codecs.getincrementaldecoder("utf-8-sig")().decode(first, final=False)
    except UnicodeDecodeError:
        raise IngestError(
            "file",
            "not a file this service reads: not Parquet, not .npz, and its first line is not "
            "UTF-8 text (a CSV must be UTF-8)",
        ) from None
    separator = max((",", ";", "\t"), key=header.count)
    read = {"sep": separator, "encoding": "utf-8-sig"}
    try:
        columns = [str(c) for c in pd.read_csv(source, nrows=0, **read).columns]  # type: ignore[call-overload]
    except pd.errors.EmptyDataError:
        raise IngestError("file", "empty file: a CSV needs a header line and rows") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise IngestError("file", f"malformed CSV: {_first_line(error)}") from None
    features = _check_header(columns, options, limits, "column")
    source.seek(0)
    try:
        # round_trip: the exact double of each number written (pandas' default fast parser can
        # be one unit in the last place off)
        frame = pd.read_csv(
            source, nrows=limits.rows + 1, low_memory=False, float_precision="round_trip", **read
        )  # type: ignore[call-overload]
    except UnicodeDecodeError as error:
        raise IngestError(
            "file", f"not UTF-8 text at byte {error.start} (a CSV must be UTF-8)"
        ) from None
    except (ValueError, pd.errors.ParserError) as error:  # pandas: "… in line 7, saw 4"
        raise IngestError("file", f"malformed CSV: {_first_line(error)}") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the extra fields an index
        raise IngestError(
            "file", "the rows have more fields than the header line: every column needs a name"
        )
    _check_rows(len(frame), len(features), limits)
    return frame


def _read_parquet(source: IO[bytes], options: Options, limits: Limits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
        index = {
            name
            for name in (schema.pandas_metadata or {}).get("index_columns", [])
            if isinstance(name, str)  # a RangeIndex is described, not stored
        }
        rows = parquet.metadata.num_rows
    except Exception as error:  # pyarrow raises several kinds for a damaged file
        raise IngestError("file", f"malformed Parquet file: {_first_line(error)}") from None
    columns = [name for name in schema.names if name not in index]
    features = _check_header(columns, options, limits, "column")
    _check_rows(rows, len(features), limits)
    try:
        return parquet.read(columns=columns).to_pandas()
    except Exception as error:
        raise IngestError("file", f"unreadable Parquet file: {_first_line(error)}") from None


def _from_frame(frame: pd.DataFrame, options: Options, limits: Limits) -> _Columns:
    frame.columns = [str(c) for c in frame.columns]
    names = [c for c in frame.columns if c not in (options.label, options.client_column)]
    x = np.empty((len(frame), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        x[:, j] = _feature(frame[name], name)
    clients = None if options.client_column is None else frame[options.client_column].to_numpy()
    stored = [_storable(n) for n in names]
    return _Columns(x, stored, frame[options.label].to_numpy(), clients)


def _feature(column: pd.Series, name: str) -> np.ndarray:
    missing = column.isna().to_numpy()
    if missing.any():
        raise IngestError("file", _missing(f"feature column {name!r}", missing))
    kind = column.dtype.kind
    if kind in "biuf":
        values = column.to_numpy(dtype=np.float64)
    else:
        numbers = None
        if kind == "O" or isinstance(column.dtype, pd.CategoricalDtype | pd.StringDtype):
            try:
                numbers = pd.to_numeric(column.astype(object), errors="coerce").to_numpy(
                    dtype=np.float64
                )
            except (TypeError, ValueError):
                numbers = None
        if numbers is None or np.isnan(numbers).any():
            row = 0 if numbers is None else int(np.flatnonzero(np.isnan(numbers))[0])
            raise IngestError(
                "file",
                f"feature column {name!r} is not numeric: row {row + 1} holds "
                f"{_shown(column.iloc[row])} (every column but the label and client column is "
                "a feature: numbers or true/false)",
            )
        values = numbers
    _check_finite(values, f"feature column {name!r}")
    return values


# --- NumPy .npz ---------------------------------------------------------------------------------


def _npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format {version[0]}.{version[1]} is not read here")
    return shape, dtype


def _read_npz(source: IO[bytes], options: Options, limits: Limits) -> _Columns:
    try:
        archive = zipfile.ZipFile(source)
        members = {
            info.filename.removesuffix(".npy"): info
            for info in archive.infolist()
            if info.filename.endswith(".npy")
        }
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise IngestError("file", f"malformed .npz (ZIP) file: {_first_line(error)}") from None
    names = sorted(members)
    if "x" not in members:
        raise IngestError(
            "file",
            f"no array 'x' (the features) in the .npz; it holds {_listed(names) or 'no array'}",
        )
    if options.label == "x":
        raise IngestError("label", "'x' holds the features: name the label array (e.g. y)")
    wanted = {"file": "x", "label": options.label}
    if options.client_column is not None:
        if options.client_column in ("x", options.label):
            raise IngestError("client_column", "names the features or the label array")
        wanted["client_column"] = options.client_column
    headers = {}
    for field, name in wanted.items():
        if name not in members:
            raise IngestError(field, f"no array {name!r} in the .npz; it holds {_listed(names)}")
        try:
            headers[name] = _npy_header(archive, members[name])
        except Exception as error:  # a damaged member: zlib, header syntax, truncation
            raise IngestError(
                field, f"array {name!r} is unreadable: {_first_line(error)}"
            ) from None
        if headers[name][1].hasobject:
            raise IngestError(
                field, f"array {name!r} holds Python objects: store numbers or text (no pickles)"
            )
    shape = headers["x"][0]
    if len(shape) == 0:
        raise IngestError("file", "array 'x' is a single value: it needs a row per sample")
    rows = shape[0]
    features = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    if features == 0:
        raise IngestError("file", f"array 'x' has shape {shape}: no feature")
    if features > limits.columns:
        raise IngestError(
            "file",
            f"{features:,} features per row in 'x': at most {limits.columns:,} "
            "(SCARCITY_MAX_UPLOAD_COLUMNS)",
        )
    _check_rows(rows, features, limits)
    for field, name in wanted.items():
        other = headers[name][0]
        if name != "x" and (
            len(other) not in (1, 2) or other[0] != rows or other[1:] not in ((), (1,))
        ):
            raise IngestError(
                field, f"array {name!r} has shape {other}: one value per row of x ({rows},) needed"
            )
    arrays = {}
    for field, name in wanted.items():
        try:
            with archive.open(members[name]) as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
        except Exception as error:
            raise IngestError(
                field, f"array {name!r} is unreadable: {_first_line(error)}"
            ) from None
    x = arrays["x"].reshape(rows, features)
    if x.dtype.kind not in "biuf":
        raise IngestError("file", f"array 'x' is not numeric ({x.dtype}): numbers or booleans")
    x = x.astype(np.float64)
    missing = np.isnan(x)
    if missing.any():
        row, col = (int(i) for i in np.argwhere(missing)[0])
        raise IngestError(
            "file", f"array 'x' has a missing value (NaN) at row {row + 1}, feature {col + 1}"
        )
    infinite = ~np.isfinite(x)
    if infinite.any():
        row, col = (int(i) for i in np.argwhere(infinite)[0])
        raise IngestError(
            "file", f"array 'x' has an infinite value at row {row + 1}, feature {col + 1}"
        )
    clients = None
    if options.client_column is not None:
        clients = _decoded(arrays[options.client_column].reshape(rows))
    feature_names = [f"x[{j}]" for j in range(features)]
    return _Columns(x, feature_names, _decoded(arrays[options.label].reshape(rows)), clients)


def _decoded(values: np.ndarray) -> np.ndarray:
    """Byte strings as text (UTF-8): an .npz saved from bytes labels."""
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8", errors="replace")
    return values


# --- labels, clients, the split -----------------------------------------------------------------


def _missing(what: str, missing: np.ndarray) -> str:
    rows = np.flatnonzero(missing)
    more = f" ({len(rows):,} in all)" if len(rows) > 1 else ""
    return f"{what} has a missing value at row {rows[0] + 1}{more}"


def _check_finite(values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise IngestError(
            "file", f"{what} has an infinite value at row {np.flatnonzero(bad)[0] + 1}"
        )


def _shown(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _name(value: Any) -> str:
    """A class or client's name: a whole number without its `.0`, anything else as text (cut
    to NAME_CHARACTERS, characters no database stores written as escapes)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _storable(str(value))


def _storable(text: str) -> str:
    text = _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text if len(text) <= NAME_CHARACTERS else text[: NAME_CHARACTERS - 1] + "…"


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """Numbers (bool, int or float) of a label array, None when it holds text."""
    if values.dtype.kind in "biuf":
        return values
    if values.dtype.kind == "O" and not any(isinstance(v, str) for v in values):
        try:
            return values.astype(np.float64)
        except (TypeError, ValueError):
            return None
    return None


def _labels(
    raw: np.ndarray, options: Options, limits: Limits
) -> tuple[np.ndarray, Task, list[str]]:
    """(y, task, class names): class indices in sorted order, or float targets."""
    label = options.label
    missing = np.asarray(pd.isna(raw))
    if missing.any():
        raise IngestError("label", _missing(f"label column {label!r}", missing))
    if raw.dtype.kind in "mMcV":
        raise IngestError(
            "label",
            f"label column {label!r} holds {raw.dtype}: labels are numbers, booleans or text",
        )
    numbers = _as_numbers(raw)
    if numbers is not None and numbers.dtype.kind == "f":
        bad = ~np.isfinite(numbers)
        if bad.any():
            raise IngestError(
                "label",
                f"label column {label!r} has an infinite value at row {np.flatnonzero(bad)[0] + 1}",
            )
    if numbers is None:
        if options.task == "regression":
            raise IngestError(
                "label",
                f"label column {label!r} holds text (row 1: {_shown(raw[0])}): a regression "
                "target must be numeric",
            )
        text = np.array([str(v) for v in raw], dtype=object)
        classes, y = np.unique(text, return_inverse=True)
        names = [str(c) for c in classes]
        task: Task = "classification"
    else:
        whole = numbers.dtype.kind in "biu" or bool(np.all(numbers == np.round(numbers)))
        task = options.task or ("classification" if whole else "regression")
        if task == "regression":
            y = numbers.astype(np.float64)
            if np.all(y == y[0]):
                raise IngestError(
                    "label", f"label column {label!r} is constant ({_name(y[0])}): nothing to learn"
                )
            return y, task, []
        classes, y = np.unique(numbers, return_inverse=True)
        names = [_name(c) for c in classes]
    if len(classes) < 2:
        raise IngestError(
            "label",
            f"label column {label!r} has a single class ({names[0]!r}): classification needs "
            "two or more",
        )
    if len(classes) > limits.classes:
        hint = (
            "; whole numbers are classes: send task=regression for a numeric target"
            if numbers is not None
            else ""
        )
        raise IngestError(
            "label",
            f"label column {label!r} has {len(classes):,} classes: at most {limits.classes:,} "
            f"(SCARCITY_MAX_UPLOAD_CLASSES){hint}",
        )
    return y.astype(np.int64).reshape(-1), task, names


def _clients(raw: np.ndarray, options: Options, limits: Limits) -> tuple[np.ndarray, list[str]]:
    """Client ids 0..K-1 in the order each first appears, and their names."""
    column = options.client_column
    missing = np.asarray(pd.isna(raw))
    if missing.any():
        raise IngestError("client_column", _missing(f"client column {column!r}", missing))
    codes, uniques = pd.factorize(raw)
    if len(uniques) > limits.clients:
        raise IngestError(
            "client_column",
            f"client column {column!r} has {len(uniques):,} clients: at most {limits.clients:,} "
            "(SCARCITY_MAX_CLIENTS)",
        )
    return codes.astype(np.int64), [_name(u) for u in uniques]


def held_out(groups: np.ndarray, fraction: float, digest: str) -> np.ndarray:
    """A mask of the test rows: round(n·f) of each group's n rows (at most n − 1), drawn with a
    generator seeded from the upload's digest."""
    rng = np.random.default_rng(int(digest[:32], 16))
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups)
    test = np.zeros(len(groups), dtype=bool)
    start = 0
    for size in sizes:
        n_test = min(int(size) - 1, round(int(size) * fraction))
        if n_test > 0:
            test[rng.permutation(order[start : start + size])[:n_test]] = True
        start += size
    return test


def _assemble(
    columns: _Columns, options: Options, limits: Limits, digest: str, fmt: Format
) -> Ingested:
    y, task, class_names = _labels(columns.labels, options, limits)
    client_ids: np.ndarray | None = None
    client_names: list[str] = []
    if columns.clients is not None:
        client_ids, client_names = _clients(columns.clients, options, limits)
    rows, features = columns.x.shape
    test = np.zeros(rows, dtype=bool)
    if options.test_fraction is not None:
        keys = [k for k in (client_ids, y if task == "classification" else None) if k is not None]
        groups = (
            np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
            if keys
            else np.zeros(rows, dtype=np.int64)
        )
        test = held_out(groups, options.test_fraction, digest)
        if not test.any():
            raise IngestError(
                "test_fraction",
                f"{options.test_fraction} holds out no row: every class (of every client) has "
                f"too few rows; raise it or leave it out",
            )
    train = ~test

    def part(values: np.ndarray | None, rows_: np.ndarray) -> np.ndarray | None:
        return None if values is None else values[rows_]

    has_test = bool(test.any())
    arrays = Arrays(
        x=columns.x[train],
        y=y[train],
        client_ids=part(client_ids, train),
        test_x=part(columns.x, test) if has_test else None,
        test_y=part(y, test) if has_test else None,
        test_client_ids=part(client_ids, test) if has_test else None,
        client_names=tuple(client_names),
    )
    classes = len(class_names) if task == "classification" else 1
    described = [
        f"{rows:,} rows, {features:,} features",
        f"label {options.label!r}: "
        + (f"{classes} classes" if task == "classification" else "a regression target"),
    ]
    if client_names:
        described.append(f"{len(client_names)} natural clients ({options.client_column!r})")
    if has_test:
        described.append(f"{int(test.sum()):,} rows held out as its test split")
    description = {
        "task": task,
        "features": features,
        "classes": classes,
        "natural_clients": len(client_names),
        "rows": rows,
        "test_rows": int(test.sum()),
        "class_names": class_names,
        "client_names": client_names,
        "feature_names": columns.feature_names,
        "summary": "; ".join(described) + ".",
        "options": options.canonical(),
        "format": fmt,
        "version": INGEST_VERSION,
    }
    return Ingested(arrays, description)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


__all__ = ["IngestError", "Ingested", "Limits", "Options", "detect_format", "ingest"]
