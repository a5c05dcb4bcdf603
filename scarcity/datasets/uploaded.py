"""Data sets users upload: read back from the upload store by their id.

An upload is stored content-addressed: its id is `ds_` followed by the first 24 hex digits of
the sha256 of what defines it (the file's bytes and the columns chosen), so a stored run that
names it always reads the same rows. The store is a directory (`SCARCITY_DATASETS_DIR`, by
default `datasets/` in the working directory) shared by the API, which writes it, and every
worker, which reads it; each upload is two files written once and never changed:

- `<id>.npz`: `x` (float32 [rows, features]), `y` (int64 labels or float32 targets),
  optionally `client_ids` (int64, the natural client of each row), `test_x`, `test_y` and
  `test_client_ids` (its own test split);
- `<id>.json`: the description (`name`, `task`, `features`, `classes`, `natural_clients`,
  `client_names`, `rows`, `test_rows`, `summary`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

ID_PATTERN = re.compile(r"^ds_[0-9a-f]{24}$")
STORE_ENV = "SCARCITY_DATASETS_DIR"


def store_dir() -> Path:
    return Path(os.environ.get(STORE_ENV) or "datasets")


def is_upload_id(name: str) -> bool:
    return bool(ID_PATTERN.match(name))


def description(upload_id: str) -> dict[str, Any] | None:
    """The stored description of an upload, None when the store does not hold it."""
    if not is_upload_id(upload_id):
        return None
    path = store_dir() / f"{upload_id}.json"
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
