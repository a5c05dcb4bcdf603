"""Data sets: the built-in ones and each owner's uploads — upload, list, describe, delete, and
the ownership check of a config that names an upload.

An upload's files are content-addressed in the store (`scarcity.datasets.uploaded`), shared by
every owner who sent the same bytes with the same options; the `datasets` table says who did.
Adding an owner's row and writing missing files, and deleting a row and the files no row
references any more, happen under the store's lock, each in one committed transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import IO, Any

from app.datasets.ingest import Ingested, IngestError, Limits, Options, ingest
from app.errors import Conflict, NotFound, Unprocessable
from models import datasets_repo
from models.dataset import UploadedDataset
from models.db import session_scope
from models.settings import Settings
from scarcity.datasets import DATASETS, uploaded

CHUNK_BYTES = 1 << 20
FILENAME_CHARACTERS = 255
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # app/text.py: what no database stores


def limits(settings: Settings) -> Limits:
    return Limits(
        rows=settings.max_upload_rows,
        columns=settings.max_upload_columns,
        classes=settings.max_upload_classes,
        cells=settings.max_upload_cells,
        clients=settings.max_clients,
    )


def built_in(name: str) -> dict[str, Any]:
    described = DATASETS[name].describe()
    return {"id": described.pop("name"), "kind": "built_in", **described}


def _public(row: UploadedDataset, detail: bool) -> dict[str, Any]:
    """An upload as `DatasetPublic` reads it; the listing leaves out the name lists."""
    meta: Mapping[str, Any] = row.description
    names = ("class_names", "client_names", "feature_names")
    return {
        "id": row.id,
        "kind": "upload",
        "summary": meta["summary"],
        "source": "uploaded",
        "task": meta["task"],
        "features": meta["features"],
        "classes": meta["classes"],
        "natural_clients": meta["natural_clients"],
        "own_test_split": bool(meta["test_rows"]),
        "feature_scaling": "standard",
        "defaults": {},
        "rows": meta["rows"],
        "test_rows": meta["test_rows"],
        "filename": row.filename,
        "format": meta.get("format"),
        "sha256": meta.get("sha256"),
        "options": row.options,
        **{name: (meta.get(name) if detail else None) for name in names},
        "created_at": row.created_at,
    }


def _filename(name: str | None) -> str | None:
    """The file name as sent, kept for display: its last path part, storable, cut to fit."""
    if not name:
        return None
    base = _UNSTORABLE.sub("\ufffd", os.path.basename(name.replace("\\", "/")))
    return base[:FILENAME_CHARACTERS] or None


def _chunks(file: IO[bytes], also: Any) -> Iterator[bytes]:
    file.seek(0)
    while chunk := file.read(CHUNK_BYTES):
        also.update(chunk)
        yield chunk


def upload(
    owner: str, settings: Settings, file: IO[bytes], filename: str | None, options: Options
) -> tuple[dict[str, Any], bool]:
    """The owner's upload of `file` (its public form) and whether it is new to them (201) or
    was uploaded by them before (200). Hashing comes first: bytes the store holds already are
    not parsed again."""
    store = Path(settings.datasets_dir)
    file_hash = hashlib.sha256()
    digest = uploaded.content_digest(options.canonical(), _chunks(file, file_hash))
    dataset_id = uploaded.upload_id(digest)
    with session_scope(read_only=True) as session:
        row = datasets_repo.get(session, owner, dataset_id)
    held = uploaded.description(dataset_id, store)
    if row is not None and held is not None:
        return _public(row, detail=True), False  # (a row whose files are gone: written again)

    def parsed() -> Ingested:
        try:
            return ingest(file, options, limits(settings), digest)
        except IngestError as error:
            raise Unprocessable([{"field": error.field, "message": error.message}]) from None

    ingested = None if held else parsed()
    with uploaded.store_lock(store):
        description = uploaded.description(dataset_id, store)
        if description is None:  # new, or removed since the look above
            ingested = ingested or parsed()
            description = {**ingested.description, "sha256": file_hash.hexdigest()}
            uploaded.write(store, dataset_id, ingested.arrays, description)
        with session_scope() as session:
            row, created = datasets_repo.add(
                session,
                owner=owner,
                dataset_id=dataset_id,
                filename=_filename(filename),
                options=options.canonical(),
                description={k: v for k, v in description.items() if k != "name"},
            )
            public = _public(row, detail=True)
    return public, created


def list_datasets(session: Any, owner: str) -> list[dict[str, Any]]:
    """The built-in data sets, then the owner's uploads newest first."""
    uploads = [_public(row, detail=False) for row in datasets_repo.list_for(session, owner)]
    return [built_in(name) for name in DATASETS] + uploads


def _not_found(dataset_id: str) -> NotFound:
    return NotFound(f"data set {dataset_id!r} not found (GET /datasets lists yours)")


def read_dataset(session: Any, owner: str, dataset_id: str) -> dict[str, Any]:
    if dataset_id in DATASETS:
        return built_in(dataset_id)
    row = (
        datasets_repo.get(session, owner, dataset_id) if uploaded.is_upload_id(dataset_id) else None
    )
    if row is None:
        raise _not_found(dataset_id)
    return _public(row, detail=True)


def delete_dataset(owner: str, settings: Settings, dataset_id: str) -> None:
    """Delete the owner's upload: 409 while one of their simulations (any status) names it;
    the files go with the last owner's row."""
    if dataset_id in DATASETS:
        raise Conflict(f"{dataset_id!r} is built in: only uploads can be deleted")
    if not uploaded.is_upload_id(dataset_id):
        raise _not_found(dataset_id)
    store = Path(settings.datasets_dir)
    with uploaded.store_lock(store):
        with session_scope() as session:
            row = datasets_repo.get(session, owner, dataset_id)
            if row is None:
                raise _not_found(dataset_id)
            users = datasets_repo.simulations_using(session, owner, dataset_id)
            if users:
                shown = ", ".join(str(u) for u in users[:3]) + (" …" if len(users) > 3 else "")
                raise Conflict(
                    f"data set {dataset_id} is used by your simulation(s) {shown}: delete them "
                    "first"
                )
            still_held = datasets_repo.delete_row(session, row)
        if not still_held:
            uploaded.remove(store, dataset_id)


def owned_by(owner: str) -> Callable[[str], bool]:
    """Whether `owner` may run on data set `name` (a built-in one, or one of their uploads),
    asked once per name for the caller's request."""

    @cache
    def owns(name: str) -> bool:
        if not uploaded.is_upload_id(name):
            return True  # not an upload: the config's own check knows the names
        with session_scope(read_only=True) as session:
            return datasets_repo.get(session, owner, name) is not None

    return owns


def require_owned(owns: Callable[[str], bool], name: Any) -> None:
    """A 422 on `dataset` for an upload id the caller has no row of (whether or not the store
    holds it: another owner's upload is not found either)."""
    if isinstance(name, str) and not owns(name):
        raise Unprocessable(
            [
                {
                    "field": "dataset",
                    "message": f"unknown data set {name!r}: not one of your uploads "
                    "(GET /datasets lists them)",
                }
            ]
        )
