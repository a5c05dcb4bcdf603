"""Data sets: upload, list, describe, delete. Each route calls one function of
`app/datasets/service.py`; the upload and the reads run on the thread pool (parsing a file and
hashing it are CPU work)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Response, UploadFile
from pydantic import StringConstraints

from app.datasets import service
from app.datasets.ingest import Options
from app.deps import OwnerDep, ReadSessionDep, SettingsDep, reject_unknown_query, require_multipart
from app.responses import INVALID, UNAUTHORIZED, conflict
from app.schemas import DatasetPublic, ErrorBody
from app.text import StorableText

router = APIRouter(
    prefix="/datasets", tags=["datasets"], dependencies=[Depends(reject_unknown_query)]
)

ColumnName = Annotated[StorableText, StringConstraints(min_length=1, max_length=200)]
DatasetId = Annotated[
    str,
    Path(
        max_length=64,
        description="A built-in data set's name or an upload's id (`ds_` and 24 hex digits).",
    ),
]
NOT_FOUND: dict[str, Any] = {
    "model": ErrorBody,
    "description": "No such data set (an upload of another owner is not found either).",
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    dependencies=[Depends(require_multipart)],
    responses={
        200: {
            "model": DatasetPublic,
            "description": "You uploaded these bytes with these "
            "options before: the same data set (same id), nothing stored again.",
        },
        400: {"model": ErrorBody, "description": "The multipart form cannot be parsed."},
        401: UNAUTHORIZED,
        413: {"model": ErrorBody, "description": "Upload larger than SCARCITY_MAX_UPLOAD_BYTES."},
        415: {"model": ErrorBody, "description": "Not sent as multipart/form-data."},
        422: {
            "model": ErrorBody,
            "description": "A file or option refused; the message names "
            "the form field and the column, array or row (a malformed file, an unknown "
            "column, a non-numeric feature, a missing value, one class, a limit).",
        },
    },  # fmt: skip
)
def upload_dataset(
    owner: OwnerDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[
        UploadFile, File(description="A CSV (UTF-8, header line), Parquet or .npz file.")
    ],
    label: Annotated[
        ColumnName, Form(description="The label column (an .npz: the label array, e.g. y).")
    ],
    client_column: Annotated[
        ColumnName | None,
        Form(description="The column (an .npz: array) naming each row's natural client."),
    ] = None,
    test_fraction: Annotated[
        float | None,
        Form(
            gt=0,
            lt=1,
            description="Hold out this share of each class as the data set's own "
            "test split (drawn from the content's hash); unset: runs split it themselves.",
        ),
    ] = None,  # fmt: skip
    task: Annotated[
        Literal["classification", "regression"] | None,
        Form(
            description="Unset: text, booleans, integers and whole floats are classes; floats "
            "with a fraction a regression target."
        ),
    ] = None,  # fmt: skip
) -> Any:
    """Upload a data set: 201 with its description, or 200 when you uploaded it before."""
    options = Options(label, client_column, test_fraction, task)
    public, created = service.upload(owner, settings, file.file, file.filename, options)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/datasets/{public['id']}"
    return public


@router.get(
    "",
    status_code=200,
    response_model=list[DatasetPublic],
    responses={401: UNAUTHORIZED, 422: INVALID},
)
def list_datasets(session: ReadSessionDep, owner: OwnerDep) -> Any:
    """The built-in data sets, then your uploads newest first (without their name lists)."""
    return service.list_datasets(session, owner)


@router.get(
    "/{dataset_id}",
    status_code=200,
    response_model=DatasetPublic,
    responses={401: UNAUTHORIZED, 404: NOT_FOUND, 422: INVALID},
)
def get_dataset(dataset_id: DatasetId, session: ReadSessionDep, owner: OwnerDep) -> Any:
    """One data set: a built-in one, or one of your uploads with its class, client and
    feature names."""
    return service.read_dataset(session, owner, dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses={
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        422: INVALID,
        **conflict("A simulation of yours names it (delete those first), or it is built in."),
    },
)
def delete_dataset(dataset_id: DatasetId, settings: SettingsDep, owner: OwnerDep) -> Response:
    """Delete one of your uploads (its files go once no other owner holds it)."""
    service.delete_dataset(owner, settings, dataset_id)
    return Response(status_code=204)
