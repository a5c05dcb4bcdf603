"""Your own data over HTTP against a real server (embedded worker, SQLite): upload a CSV,
Parquet or .npz file, run on it, list and describe it, the refusals (422 naming the field, 413,
415), content-addressed ids, owners kept apart, delete (409 while a run names it), and the
`scarcity datasets` command against the same server."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from scarcity.datasets import DATASETS
from tests.app.conftest import Server
from tests.service_processes import ROOT, datasets_dir, wait_for_status

RUN = {"preset": "baseline", "rounds": 2}
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def table(seed: int, rows: int = 60) -> pd.DataFrame:
    """A small labelled table of its own per seed (3 features, 3 classes, 3 sites), so that no
    two tests upload the same bytes into the store the servers of this session share."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    return pd.DataFrame(
        {
            "f1": x[:, 0],
            "f2": x[:, 1],
            "flag": x[:, 2] > 0,
            "species": np.array(["setosa", "virginica", "versicolor"])[
                np.digitize(x[:, 0], [-0.4, 0.4])
            ],
            "site": np.array(["north", "south", "east"])[np.arange(rows) % 3],
        }
    )


def encoded(frame: pd.DataFrame, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        frame.to_parquet(buffer)
    else:
        x = frame[["f1", "f2", "flag"]].to_numpy(dtype=float)
        np.savez(
            buffer,
            x=x,
            y=frame["species"].to_numpy(dtype=str),
            site=frame["site"].to_numpy(dtype=str),
        )
    return buffer.getvalue()


def upload(
    client: httpx.Client | str,
    data: bytes,
    name: str = "data.csv",
    headers: dict[str, str] | None = None,
    **form: object,
) -> httpx.Response:
    fields = {k: str(v) for k, v in form.items() if v is not None}
    files = {"file": (name, data, "application/octet-stream")}
    if isinstance(client, str):
        return httpx.post(
            f"{client}/datasets", data=fields, files=files, headers=headers, timeout=30
        )
    return client.post("/datasets", data=fields, files=files, headers=headers)


def held_out_rows(frame: pd.DataFrame, fraction: float) -> int:
    """The documented rule, counted directly: round(n·f) of each class of each client, at most
    n − 1 of it."""
    sizes = frame.groupby(["site", "species"]).size()
    return sum(min(n - 1, round(n * fraction)) for n in sizes)


def fields_named(response: httpx.Response) -> list[str | None]:
    return [d["field"] for d in response.json()["detail"]]


def stored_files(dataset_id: str) -> list[str]:
    return sorted(p.name for p in Path(datasets_dir()).glob(f"{dataset_id}.*"))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_an_upload_is_described_listed_and_a_run_on_it_completes(
    client: httpx.Client, fmt: str
) -> None:
    frame = table(seed={"csv": 1, "parquet": 2, "npz": 3}[fmt])
    label, clients = ("y", "site") if fmt == "npz" else ("species", "site")
    created = upload(
        client, encoded(frame, fmt), f"flowers.{fmt}", label=label, client_column=clients
    )
    assert created.status_code == 201, created.text
    body = created.json()
    dataset_id = body["id"]
    assert created.headers["location"] == f"/datasets/{dataset_id}"
    assert dataset_id.startswith("ds_") and len(dataset_id) == 27
    assert (body["kind"], body["format"], body["filename"]) == ("upload", fmt, f"flowers.{fmt}")
    assert (body["rows"], body["features"], body["classes"], body["natural_clients"]) == (
        60,
        3,
        3,
        3,
    )
    assert (body["task"], body["test_rows"], body["own_test_split"]) == ("classification", 0, False)
    assert body["class_names"] == ["setosa", "versicolor", "virginica"]
    assert body["client_names"] == ["north", "south", "east"]
    assert body["options"] == {
        "label": label,
        "client_column": clients,
        "test_fraction": None,
        "task": None,
    }
    assert stored_files(dataset_id) == [f"{dataset_id}.json", f"{dataset_id}.npz"]
    assert client.get(f"/datasets/{dataset_id}").json() == body

    listed = client.get("/datasets").json()
    assert [d["id"] for d in listed[: len(DATASETS)]] == list(DATASETS)
    mine = next(d for d in listed if d["id"] == dataset_id)
    assert mine["rows"] == 60 and mine["class_names"] is None  # the listing leaves names out
    assert not mine["stream"] and mine["drift_points"] == []
    sea = next(d for d in listed if d["id"] == "sea")  # a stream says where its concepts change
    assert sea["stream"] and sea["drift_points"] == [2500, 5000, 7500]

    run = client.post("/simulations", json={**RUN, "dataset": dataset_id})
    assert run.status_code == 202, run.text
    config = run.json()["config"]
    assert (config["input_dim"], config["output_dim"]) == (3, 3)
    assert (config["partition"], config["num_clients"]) == ("natural", 3)
    final = wait_for_status(client, run.json()["id"], {"succeeded", "failed", "cancelled"})
    assert final["status"] == "succeeded", final
    rounds = client.get(f"/simulations/{final['id']}/metrics").json()["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert 0 <= rounds[-1]["metrics"]["test_accuracy"] <= 1
    held = client.get(f"/simulations/{final['id']}/clients").json()["clients"]
    assert len(held) == 3 and sum(c["train_samples"] for c in held) < 60  # its test rows apart


def test_the_same_bytes_and_options_are_the_same_data_set(client: httpx.Client) -> None:
    data = encoded(table(4), "csv")
    first = upload(client, data, "a.csv", label="species", client_column="site")
    again = upload(client, data, "renamed.csv", label="species", client_column="site")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the first upload's resource, its file name too
    split = upload(client, data, "a.csv", label="species", client_column="site", test_fraction=0.2)
    assert split.status_code == 201 and split.json()["id"] != first.json()["id"]
    described = split.json()
    assert described["own_test_split"] is True
    assert described["test_rows"] == held_out_rows(table(4), 0.2) > 0
    assert described["options"]["test_fraction"] == 0.2
    # a store that lost the files (a volume replaced) gets them back from a re-upload
    for path in Path(datasets_dir()).glob(f"{first.json()['id']}.*"):
        path.unlink()
    healed = upload(client, data, "a.csv", label="species", client_column="site")
    assert healed.status_code == 200 and healed.json() == first.json()
    assert stored_files(first.json()["id"]) == [
        f"{first.json()['id']}.{s}" for s in ("json", "npz")
    ]


@pytest.mark.parametrize(
    ("data", "form", "field", "words"),
    [
        (b"\x00\xff\xfe" * 100, {"label": "species"}, "file", "not UTF-8"),
        (b"f1,species\n1,a,b\n" + b"1,a\n" * 12, {"label": "species"}, "file", "more fields"),
        (None, {"label": "kind"}, "label", "no column 'kind'"),
        (None, {"label": "species", "client_column": "farm"}, "client_column", "no column 'farm'"),
        (None, {"label": "species"}, "file", "'site' is not numeric: row 1 holds 'north'"),
        (b"missing", {"label": "species", "client_column": "site"}, "label", "value at row 3"),
        (None, {"client_column": "site"}, "label", "required"),
        (None, {"label": "species", "test_fraction": 1.5}, "test_fraction", "less than 1"),
    ],
)  # fmt: skip
def test_a_refused_upload_is_a_422_naming_the_field(
    client: httpx.Client, data: bytes | None, form: dict, field: str, words: str
) -> None:
    frame = table(5)
    if data == b"missing":
        frame.loc[2, "species"] = None
        data = None
    before = client.get("/datasets").json()
    response = upload(client, data or encoded(frame, "csv"), **form)
    assert response.status_code == 422, response.text
    assert field in fields_named(response)
    assert words in response.text
    assert client.get("/datasets").json() == before


def test_an_upload_must_be_a_form_within_the_size_limit(client: httpx.Client) -> None:
    before = sorted(p.name for p in Path(datasets_dir()).iterdir())
    as_json = client.post("/datasets", json={"label": "species"})
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.text
    big = encoded(table(6, rows=6000), "csv")
    assert len(big) > 262144  # SCARCITY_MAX_UPLOAD_BYTES of this server
    declared = upload(client, big, label="species", client_column="site")
    assert declared.status_code == 413
    assert "exceeds 262144 bytes (SCARCITY_MAX_UPLOAD_BYTES)" in declared.json()["detail"]

    def chunks():  # no Content-Length: counted while it streams in
        boundary = b"fixedboundary"
        yield (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="label"\r\n\r\nspecies\r\n'
        )
        yield (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        )
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]
        yield b"\r\n--" + boundary + b"--\r\n"

    streamed = client.post(
        "/datasets",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=fixedboundary"},
    )
    assert streamed.status_code == 413, streamed.text
    # a body over the JSON bodies' cap (4 KiB here) but within the upload cap is taken
    small = encoded(table(7, rows=100), "csv")
    assert len(small) > 4096
    taken = upload(client, small, label="species", client_column="site")
    assert taken.status_code == 201, taken.text
    added = set(p.name for p in Path(datasets_dir()).iterdir()) - set(before)
    assert added - {".lock"} == set(stored_files(taken.json()["id"]))  # the refused left nothing


def test_delete_is_refused_while_a_run_names_the_upload(client: httpx.Client) -> None:
    dataset_id = upload(
        client, encoded(table(8), "csv"), label="species", client_column="site"
    ).json()["id"]
    run = client.post("/simulations", json={**RUN, "dataset": dataset_id}).json()
    refused = client.delete(f"/datasets/{dataset_id}")
    assert refused.status_code == 409 and run["id"] in refused.json()["detail"]
    wait_for_status(client, run["id"], {"succeeded", "failed", "cancelled"})
    assert client.delete(f"/datasets/{dataset_id}").status_code == 409  # any status
    assert client.delete(f"/simulations/{run['id']}").status_code == 204
    assert client.delete(f"/datasets/{dataset_id}").status_code == 204
    assert client.get(f"/datasets/{dataset_id}").status_code == 404
    assert stored_files(dataset_id) == []  # no other owner held it
    assert client.delete(f"/datasets/{dataset_id}").status_code == 404
    again = client.post("/simulations", json={**RUN, "dataset": dataset_id})
    assert again.status_code == 422 and fields_named(again) == ["dataset"]
    assert client.delete("/datasets/iris").status_code == 409  # built in
    assert client.get("/datasets/iris").json()["kind"] == "built_in"
    assert client.get("/datasets/nothing").status_code == 404


def test_owners_see_run_on_and_delete_only_their_own_uploads(keyed_server: Server) -> None:
    url = keyed_server.url
    data = encoded(table(9), "parquet")
    mine = upload(url, data, "mine.parquet", headers=A, label="species", client_column="site")
    assert mine.status_code == 201
    dataset_id = mine.json()["id"]
    assert upload(url, data, headers=None, label="species").status_code == 401
    # the store holds it, but it is not b's
    assert httpx.get(f"{url}/datasets/{dataset_id}", headers=B).status_code == 404
    assert dataset_id not in [d["id"] for d in httpx.get(f"{url}/datasets", headers=B).json()]
    assert httpx.delete(f"{url}/datasets/{dataset_id}", headers=B).status_code == 404
    run = httpx.post(f"{url}/simulations", json={**RUN, "dataset": dataset_id}, headers=B)
    assert run.status_code == 422 and fields_named(run) == ["dataset"]
    sweep = {"base": {**RUN, "dataset": dataset_id}, "space": {"learning_rate": {"values": [0.1]}}}
    refused = httpx.post(f"{url}/sweeps", json=sweep, headers=B)
    assert refused.status_code == 422 and fields_named(refused) == ["base.dataset"]
    varied = {"base": RUN, "space": {"dataset": {"values": ["iris", dataset_id]}}}
    refused = httpx.post(f"{url}/sweeps", json=varied, headers=B)
    assert refused.status_code == 422 and fields_named(refused) == ["space.dataset"]

    # b uploads the same bytes: a row of their own, the same id and files
    theirs = upload(url, data, "theirs.parquet", headers=B, label="species", client_column="site")
    assert theirs.status_code == 201 and theirs.json()["id"] == dataset_id
    assert theirs.json()["filename"] == "theirs.parquet"
    assert httpx.delete(f"{url}/datasets/{dataset_id}", headers=A).status_code == 204
    assert stored_files(dataset_id) == [f"{dataset_id}.json", f"{dataset_id}.npz"]  # b holds it
    assert httpx.get(f"{url}/datasets/{dataset_id}", headers=A).status_code == 404
    run = httpx.post(f"{url}/simulations", json={**RUN, "dataset": dataset_id}, headers=B)
    assert run.status_code == 202, run.text
    with httpx.Client(base_url=url, headers=B, timeout=30) as client:
        final = wait_for_status(client, run.json()["id"], {"succeeded", "failed", "cancelled"})
        assert final["status"] == "succeeded", final
        assert client.delete(f"/simulations/{final['id']}").status_code == 204
        assert client.delete(f"/datasets/{dataset_id}").status_code == 204
    assert stored_files(dataset_id) == []


def scarcity(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scarcity", "datasets", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_adds_and_lists_uploads(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "flowers.csv"
    path.write_bytes(encoded(table(10), "csv"))
    added = scarcity(
        "--url", server.url, "add", str(path), "--label", "species", "--client-column", "site",
        "--test-fraction", "0.25",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    dataset_id = added.stdout.strip()
    assert dataset_id.startswith("ds_")
    assert "60 rows, 3 features; label 'species': 3 classes" in added.stderr
    described = httpx.get(f"{server.url}/datasets/{dataset_id}").json()
    assert described["options"]["test_fraction"] == 0.25
    assert described["test_rows"] == held_out_rows(table(10), 0.25) > 0
    listed = scarcity("--url", server.url, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if row.startswith(dataset_id))
    assert line.split() == [
        dataset_id,
        "upload",
        "classification",
        "60",
        "3",
        "3",
        "3",
        "flowers.csv",
    ]
    assert any(row.split()[:2] == ["digits", "built_in"] for row in listed.stdout.splitlines())
    refused = scarcity("--url", server.url, "add", str(path), "--label", "colour")
    assert refused.returncode == 1 and "HTTP 422" in refused.stderr
    assert "label: no column 'colour'" in refused.stderr
    down = scarcity("--url", "http://127.0.0.1:9", "list")
    assert down.returncode == 1 and "127.0.0.1:9" in down.stderr
