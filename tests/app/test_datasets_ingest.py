"""The ingest of an uploaded file (`app/datasets/ingest.py`), as a pure function: the same table
as CSV, Parquet and .npz gives the same rows; labels, clients and the test split follow the
documented rules; every refusal names the field, the column and the row."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from app.datasets.ingest import MIN_ROWS, IngestError, Limits, Options, held_out, ingest

LIMITS = Limits(rows=1000, columns=8, classes=5, cells=4000, clients=6)
DIGEST = "ab" * 32

# 12 rows: two features (one boolean), a text label of three classes, a client of three sites.
TABLE = pd.DataFrame(
    {
        "height": [1.5, 2.0, 0.5, 3.25, 1.0, 2.5, 0.0, 4.0, 1.75, 2.25, 3.0, 0.25],
        "wet": [True, False, True, True, False, False, True, False, True, False, True, False],
        "kind": ["pear", "apple", "fig", "apple", "pear", "fig", "apple", "pear", "fig",
                 "apple", "pear", "fig"],
        "site": ["b", "a", "b", "c", "a", "c", "b", "a", "c", "b", "a", "c"],
    }
)  # fmt: skip


def csv_bytes(frame: pd.DataFrame = TABLE, **options: object) -> bytes:
    return frame.to_csv(index=False, **options).encode()  # type: ignore[call-overload]


def parquet_bytes(frame: pd.DataFrame = TABLE) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def run(data: bytes, limits: Limits = LIMITS, digest: str = DIGEST, **options: object):
    return ingest(io.BytesIO(data), Options(**options), limits, digest)  # type: ignore[arg-type]


def refusal(data: bytes, limits: Limits = LIMITS, **options: object) -> IngestError:
    with pytest.raises(IngestError) as refused:
        run(data, limits, **options)
    return refused.value


X = np.array(
    [[1.5, 1], [2.0, 0], [0.5, 1], [3.25, 1], [1.0, 0], [2.5, 0], [0.0, 1], [4.0, 0],
     [1.75, 1], [2.25, 0], [3.0, 1], [0.25, 0]]
)  # fmt: skip
# sorted class names: apple 0, fig 1, pear 2
Y = np.array([2, 0, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1])
# first appearance: b 0, a 1, c 2
CLIENTS = np.array([0, 1, 0, 2, 1, 2, 0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_each_format_gives_the_same_rows_classes_and_clients(fmt: str) -> None:
    if fmt == "npz":
        data = npz_bytes(
            x=X, y=TABLE["kind"].to_numpy(dtype=str), sites=TABLE["site"].to_numpy(dtype=str)
        )
        done = run(data, label="y", client_column="sites")
        features = ["x[0]", "x[1]"]
    else:
        data = csv_bytes() if fmt == "csv" else parquet_bytes()
        done = run(data, label="kind", client_column="site")
        features = ["height", "wet"]
    arrays, meta = done.arrays, done.description
    np.testing.assert_array_equal(arrays.x, X)
    np.testing.assert_array_equal(arrays.y, Y)
    np.testing.assert_array_equal(arrays.client_ids, CLIENTS)
    assert arrays.x.dtype == np.float64 and arrays.y.dtype == np.int64
    assert arrays.test_x is None and arrays.client_names == ("b", "a", "c")
    assert meta["format"] == fmt and meta["feature_names"] == features
    assert (meta["task"], meta["rows"], meta["features"], meta["classes"]) == (
        "classification", 12, 2, 3,
    )  # fmt: skip
    assert meta["class_names"] == ["apple", "fig", "pear"]
    assert (meta["natural_clients"], meta["client_names"], meta["test_rows"]) == (
        3,
        ["b", "a", "c"],
        0,
    )


def test_a_semicolon_csv_with_a_byte_order_mark_reads_the_same() -> None:
    data = b"\xef\xbb\xbf" + csv_bytes(sep=";")
    np.testing.assert_array_equal(run(data, label="kind", client_column="site").arrays.x, X)


def test_integer_labels_are_classes_in_numeric_order_and_fractions_a_regression_target() -> None:
    frame = TABLE.drop(columns=["kind", "site"]).assign(
        code=[10, 9, 2, 9, 10, 2, 9, 10, 2, 9, 10, 2]
    )
    done = run(csv_bytes(frame), label="code")
    assert done.description["class_names"] == ["2", "9", "10"]  # by value, not as text
    np.testing.assert_array_equal(done.arrays.y, [2, 1, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0])

    whole = frame.assign(code=frame["code"].astype(float))  # 10.0, 9.0: still classes
    assert run(csv_bytes(whole), label="code").description["class_names"] == ["2", "9", "10"]

    target = frame.assign(code=frame["code"] + 0.5)
    done = run(csv_bytes(target), label="code")
    assert (done.description["task"], done.description["classes"]) == ("regression", 1)
    np.testing.assert_array_equal(done.arrays.y, frame["code"].to_numpy() + 0.5)
    assert done.arrays.y.dtype == np.float64 and done.description["class_names"] == []

    # task overrides the rule: integer counts as a target
    counted = run(csv_bytes(frame), label="code", task="regression")
    np.testing.assert_array_equal(counted.arrays.y, frame["code"].to_numpy(dtype=float))
    refused = refusal(csv_bytes(), label="kind", client_column="site", task="regression")
    assert refused.field == "label" and "text" in refused.message


def test_the_test_split_is_stratified_by_class_within_each_client_and_fixed_by_the_digest() -> None:
    rows = 60
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "label": np.repeat([0, 1, 2], 20),
            "client": np.tile(["p", "q"], 30),
        }
    )
    done = run(csv_bytes(frame), label="label", client_column="client", test_fraction=0.25)
    arrays = done.arrays
    assert arrays.test_x is not None and arrays.test_y is not None
    assert arrays.test_client_ids is not None and arrays.client_ids is not None
    # each (client, class) group holds 10 rows: round(10 × 0.25) = 2 held out (banker's rounding)
    assert done.description["test_rows"] == 6 * 2 and len(arrays.y) == rows - 12
    pairs = list(zip(arrays.test_client_ids.tolist(), arrays.test_y.tolist(), strict=True))
    assert sorted(pairs) == sorted([(c, k) for c in (0, 1) for k in (0, 1, 2)] * 2)
    # the held-out rows are rows of the file, kept whole; nothing is both train and test
    stacked = np.concatenate([arrays.x[:, 0], arrays.test_x[:, 0]])
    assert sorted(stacked.tolist()) == sorted(frame["a"].tolist())
    # the same upload holds out the same rows; another digest other rows
    again = run(csv_bytes(frame), label="label", client_column="client", test_fraction=0.25)
    np.testing.assert_array_equal(again.arrays.test_x, arrays.test_x)
    other = run(
        csv_bytes(frame),
        digest="cd" * 32,
        label="label",
        client_column="client",
        test_fraction=0.25,
    )
    assert not np.array_equal(other.arrays.test_x, arrays.test_x)


def test_held_out_takes_round_n_f_of_each_group_and_keeps_one_row() -> None:
    groups = np.array([0] * 10 + [1] * 3 + [2] * 1 + [3] * 2)
    test = held_out(groups, 0.5, DIGEST)
    counts = [int(test[groups == g].sum()) for g in range(4)]
    assert counts == [5, 2, 0, 1]  # round(1.5) = 2; a lone row stays; round(1.0) = 1


def test_a_test_fraction_that_holds_out_nothing_is_refused() -> None:
    refused = refusal(csv_bytes(), label="kind", client_column="site", test_fraction=0.1)
    assert refused.field == "test_fraction" and "no row" in refused.message


@pytest.mark.parametrize(
    ("change", "options", "field", "words"),
    [
        (lambda f: f, {"label": "species"}, "label", "'species' in the file; it has 'height'"),
        (lambda f: f, {"label": "kind", "client_column": "farm"}, "client_column", "'farm'"),
        (lambda f: f, {"label": "kind", "client_column": "kind"}, "client_column", "label"),
        (
            lambda f: f.assign(colour=["red"] * 3 + ["2"] * 9),
            {"label": "kind"},
            "file",
            "'colour' is not numeric: row 1 holds 'red'",
        ),
        (
            lambda f: f.assign(height=[1.0, 2.0, None, *[1.0] * 9]),
            {"label": "kind"},
            "file",
            "'height' has a missing value at row 3",
        ),
        (
            lambda f: f.assign(kind=["pear"] * 5 + [None, None] + ["fig"] * 5),
            {"label": "kind"},
            "label",
            "'kind' has a missing value at row 6 (2 in all)",
        ),
        (
            lambda f: f.assign(site=[None, *["a"] * 11]),
            {"label": "kind", "client_column": "site"},
            "client_column",
            "row 1",
        ),
        (lambda f: f.assign(kind="pear"), {"label": "kind"}, "label", "single class ('pear')"),
        (lambda f: f.assign(kind=1.5), {"label": "kind"}, "label", "constant"),
        (
            lambda f: f.assign(height=[1.0, float("inf"), *[1.0] * 10]),
            {"label": "kind"},
            "file",
            "'height' has an infinite value at row 2",
        ),
        (lambda f: f.head(MIN_ROWS - 1), {"label": "kind"}, "file", f"at least {MIN_ROWS}"),
        (lambda f: f[["kind"]], {"label": "kind"}, "file", "no feature column"),
        (
            lambda f: f.assign(kind=range(12)),
            {"label": "kind"},
            "label",
            "12 classes: at most 5 (SCARCITY_MAX_UPLOAD_CLASSES); whole numbers are classes",
        ),
        (
            lambda f: f.assign(**{f"f{i}": 1.0 for i in range(7)}),
            {"label": "kind"},
            "file",
            "9 feature columns: at most 8 (SCARCITY_MAX_UPLOAD_COLUMNS)",
        ),
        (
            lambda f: f.assign(site=list("abcdefgabcde")),
            {"label": "kind", "client_column": "site"},
            "client_column",
            "7 clients: at most 6",
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_refused_table_names_the_field_the_column_and_the_row(
    fmt: str, change, options: dict, field: str, words: str
) -> None:
    frame = change(TABLE.drop(columns="site"))  # a case that needs clients adds them
    data = csv_bytes(frame) if fmt == "csv" else parquet_bytes(frame)
    refused = refusal(data, **options)
    assert (refused.field, words in refused.message) == (field, True), refused.message


def test_row_and_value_limits_are_refused_before_the_rows_are_read() -> None:
    tight = Limits(rows=11, columns=8, classes=5, cells=4000, clients=6)
    assert "more than 11 rows" in refusal(csv_bytes(), tight, label="kind").message
    assert "more than 11 rows" in refusal(parquet_bytes(), tight, label="kind").message
    cells = Limits(rows=1000, columns=8, classes=5, cells=20, clients=6)
    refused = refusal(parquet_bytes(), cells, label="kind")
    assert "12 rows × 3 features = 36 values: at most 20" in refused.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty file"),
        (bytes(range(128, 256)) * 4, "not UTF-8"),
        (b"a,b,kind\n1,2,x\n1,2,y,9\n" + b"1,2,x\n" * 10, "malformed CSV: Error tokenizing data"),
        (b"a,kind\n" + b"1,2,x\n" * 12, "more fields than the header"),
        (b"a,,kind\n" + b"1,2,x\n" * 12, "column 2 has no name"),
        (b"PAR1 this is not parquet", "malformed Parquet"),
        (b"PK\x03\x04 this is not a zip", "malformed .npz"),
    ],
)
def test_a_malformed_file_is_refused_on_file(data: bytes, words: str) -> None:
    refused = refusal(data, label="kind")
    assert (refused.field, words in refused.message) == ("file", True), refused.message


def test_npz_arrays_are_checked_by_name_shape_and_type() -> None:
    good = {"x": X, "y": Y}
    assert "no array 'x'" in refusal(npz_bytes(features=X, y=Y), label="y").message
    assert refusal(npz_bytes(**good), label="target").field == "label"
    assert refusal(npz_bytes(**good), label="y", client_column="ids").field == "client_column"
    short = refusal(npz_bytes(x=X, y=Y[:5]), label="y")
    assert short.field == "label" and "shape (5,)" in short.message
    objects = refusal(npz_bytes(x=X, y=np.array([object()] * 12)), label="y")
    assert objects.field == "label" and "Python objects" in objects.message
    text = refusal(npz_bytes(x=np.array([["a", "b"]] * 12), y=Y), label="y")
    assert "'x' is not numeric" in text.message
    holes = X.copy()
    holes[4, 1] = np.nan
    assert "NaN) at row 5, feature 2" in refusal(npz_bytes(x=holes, y=Y), label="y").message
    # images: trailing axes are flattened into features
    images = run(npz_bytes(x=np.arange(12 * 2 * 3).reshape(12, 2, 3), y=Y), label="y")
    assert images.arrays.x.shape == (12, 6) and images.description["features"] == 6
    compressed = io.BytesIO()
    np.savez_compressed(compressed, x=X, y=Y)
    np.testing.assert_array_equal(run(compressed.getvalue(), label="y").arrays.y, Y)
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert "no array 'x'" in refusal(empty.getvalue(), label="y").message
