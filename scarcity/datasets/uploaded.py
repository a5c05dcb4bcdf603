"""Data sets users upload: the store's file format, written once and read back by id.

An upload is stored content-addressed: its id is `ds_` followed by the first 24 hex digits of
the sha256 of what defines it (`content_digest`: the ingest version, the options that shape the
rows — label, client column, test fraction, task — and the file's bytes), so the same bytes
uploaded with the same options always get the same id, and a stored run that names an id
always reads the same rows. The store is a directory (`SCARCITY_DATASETS_DIR`, by default
`datasets/` in the working directory) shared by the API, which writes it, and every worker,
which reads it. Each upload is two files, each written to a temporary file in the store and
renamed into place (atomic on one file system), and never changed afterwards:

- `<id>.npz` (NumPy's uncompressed archive, no pickled objects): `x` (float64 [rows,
  features]), `y` (int64 class indices 0..C-1, or float64 targets), optionally `client_ids`
  (int64, each row's natural client 0..K-1), and the upload's own test split `test_x`,
  `test_y`, `test_client_ids` when it was given a test fraction;
- `<id>.json`, written after the arrays (so its presence means the upload is complete): the
  description — `name` (the id), `task` (`classification` or `regression`), `features`,
  `classes` (1 for regression), `natural_clients`, `rows` (all rows of the file), `test_rows`
  (those held out as its own test split, 0 for none), `client_names`, `class_names`,
  `feature_names`, `summary`, the options (`label`, `client_column`, `test_fraction`, `task`
  as asked), the file's `format` and `sha256`, and the ingest `version`.

Parsing a file into these arrays is the service's (`app/datasets/ingest.py`); this module
holds the format both sides agree on and imports nothing of the engine but its data-set types.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

ID_PATTERN = re.compile(r"^ds_[0-9a-f]{24}$")
ID_PREFIX = "ds_"
ID_HEX_DIGITS = 24
STORE_ENV = "SCARCITY_DATASETS_DIR"
#: The ingest rules' revision: part of every id, so a change of how a file becomes rows (a new
#: label rule, another split) gives new ids and never new rows under an old id.
INGEST_VERSION = 1
LOCK_FILE = ".lock"


def store_dir() -> Path:
    return Path(os.environ.get(STORE_ENV) or "datasets")


def is_upload_id(name: str) -> bool:
    return bool(ID_PATTERN.match(name))


def content_digest(options: Mapping[str, Any], chunks: Iterable[bytes]) -> str:
    """The sha256 (hex) that names an upload: a header line of the ingest version and the
    options as canonical JSON (sorted keys; JSON escapes every newline, so the line ends at the
    first one), then the file's bytes."""
    header = json.dumps({"version": INGEST_VERSION, **options}, sort_keys=True)
    digest = hashlib.sha256(header.encode() + b"\n")
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def upload_id(digest: str) -> str:
    return ID_PREFIX + digest[:ID_HEX_DIGITS]


def description(upload_id: str, store: Path | None = None) -> dict[str, Any] | None:
    """The stored description of an upload, None when the store does not hold it."""
    if not is_upload_id(upload_id):
        return None
    path = (store or store_dir()) / f"{upload_id}.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def find(upload_id: str) -> Dataset | None:
    meta = description(upload_id)
    if meta is None:
        return None
    return Dataset(
        name=upload_id,
        summary=str(meta.get("summary", "")),
        source="uploaded",
        task=meta["task"],
        features=int(meta["features"]),
        classes=int(meta["classes"]),
        load=lambda: load(upload_id),
        natural_clients=int(meta.get("natural_clients", 0)),
        own_test_split=bool(meta.get("test_rows", 0)),
    )


def load(upload_id: str) -> Arrays:
    path = store_dir() / f"{upload_id}.npz"
    meta = description(upload_id) or {}
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except FileNotFoundError:
        raise DatasetUnavailable(
            f"uploaded data set {upload_id} is not in the store {store_dir()} "
            f"(set {STORE_ENV} to the directory the API writes)"
        ) from None
    regression = meta.get("task") == "regression"
    y = arrays["y"].astype(np.float64 if regression else np.int64)
    test_y = arrays.get("test_y")
    return Arrays(
        x=arrays["x"].astype(np.float64),
        y=y,
        client_ids=arrays.get("client_ids"),
        test_x=None if "test_x" not in arrays else arrays["test_x"].astype(np.float64),
        test_y=None if test_y is None else test_y.astype(y.dtype),
        test_client_ids=arrays.get("test_client_ids"),
        client_names=tuple(meta.get("client_names", ())),
    )


def _arrays_to_store(arrays: Arrays, regression: bool) -> dict[str, np.ndarray]:
    target = np.float64 if regression else np.int64
    out = {"x": np.asarray(arrays.x, np.float64), "y": np.asarray(arrays.y, target)}
    optional = {
        "client_ids": (arrays.client_ids, np.int64),
        "test_x": (arrays.test_x, np.float64),
        "test_y": (arrays.test_y, target),
        "test_client_ids": (arrays.test_client_ids, np.int64),
    }
    out |= {k: np.asarray(v, dtype) for k, (v, dtype) in optional.items() if v is not None}
    return out


def _write_atomically(path: Path, write: Any) -> None:
    """`write(file)` into a temporary file beside `path`, flushed to disk, renamed over it."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def write(store: Path, upload_id: str, arrays: Arrays, meta: Mapping[str, Any]) -> bool:
    """Store an upload: its arrays, then its description (see the module docstring). False,
    writing nothing, when the store holds it already: an id names its content, so a file once
    written is never replaced."""
    if not is_upload_id(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    store.mkdir(parents=True, exist_ok=True)
    if (store / f"{upload_id}.json").exists():
        return False
    stored = _arrays_to_store(arrays, regression=meta["task"] == "regression")
    # numbers only, no pickled object: the reader loads with allow_pickle=False (mypy takes the
    # arrays for savez's allow_pickle flag)
    _write_atomically(
        store / f"{upload_id}.npz",
        lambda file: np.savez(file, **stored),  # type: ignore[arg-type]
    )
    text = json.dumps({**meta, "name": upload_id}, indent=1, sort_keys=True).encode()
    _write_atomically(store / f"{upload_id}.json", lambda file: file.write(text))
    return True


def remove(store: Path, upload_id: str) -> None:
    """Delete an upload's files: the description first, so a half-removed upload is absent."""
    if not is_upload_id(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    for suffix in (".json", ".npz"):
        with contextlib.suppress(FileNotFoundError):
            (store / f"{upload_id}{suffix}").unlink()


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """An exclusive lock on the store (`flock` of its `.lock` file), held while an upload's
    files and its owner's row are added or removed, so that deleting one owner's last reference
    and another owner's upload of the same bytes never interleave. Across processes and
    containers that share the store's directory."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
