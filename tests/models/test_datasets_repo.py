"""`models.datasets_repo` on a migrated database of each kind: one row per owner and upload,
a second add is no new row, the runs that name an upload (a JSON path on both dialects), and
whether another owner still holds it after a delete."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models import datasets_repo, simulations_repo
from models.db import make_engine

ID, OTHER_ID = "ds_" + "a" * 24, "ds_" + "b" * 24
DESCRIPTION = {"rows": 12, "features": 2, "classes": 3, "task": "classification"}


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def add(sessions: sessionmaker[Session], owner: str, dataset_id: str, filename: str) -> bool:
    with sessions.begin() as session:
        row, created = datasets_repo.add(
            session,
            owner=owner,
            dataset_id=dataset_id,
            filename=filename,
            options={"label": "y"},
            description=DESCRIPTION,
        )
        assert (row.owner, row.id) == (owner, dataset_id)
        return created


def test_rows_per_owner_runs_that_name_them_and_the_last_holder(
    sessions: sessionmaker[Session],
) -> None:
    assert add(sessions, "a", ID, "first.csv") is True
    assert add(sessions, "a", ID, "again.csv") is False  # the first row stands
    assert add(sessions, "a", OTHER_ID, "other.csv") is True
    assert add(sessions, "b", ID, "theirs.csv") is True
    with sessions() as session:
        row = datasets_repo.get(session, "a", ID)
        assert row is not None and row.filename == "first.csv"
        assert row.description == DESCRIPTION and row.options == {"label": "y"}
        assert [r.id for r in datasets_repo.list_for(session, "a")] == [OTHER_ID, ID]
        assert datasets_repo.get(session, "c", ID) is None

    with sessions.begin() as session:
        mine = simulations_repo.create_simulation(
            session, owner="a", config={"preset": "baseline", "rounds": 2, "dataset": ID}
        )
        simulations_repo.create_simulation(  # another owner's run names no row of a's
            session, owner="b", config={"preset": "baseline", "rounds": 2, "dataset": OTHER_ID}
        )
        simulations_repo.create_simulation(
            session, owner="a", config={"preset": "stage1", "rounds": 1}
        )
    with sessions() as session:
        assert datasets_repo.simulations_using(session, "a", ID) == [mine.id]
        assert datasets_repo.simulations_using(session, "a", OTHER_ID) == []
        assert datasets_repo.simulations_using(session, "b", ID) == []

    with sessions.begin() as session:
        row = datasets_repo.get(session, "a", ID)
        assert row is not None
        assert datasets_repo.delete_row(session, row) is True  # b still holds it
    with sessions.begin() as session:
        row = datasets_repo.get(session, "b", ID)
        assert row is not None
        assert datasets_repo.delete_row(session, row) is False  # the last holder
    with sessions() as session:
        assert datasets_repo.get(session, "a", ID) is None
        assert [r.id for r in datasets_repo.list_for(session, "a")] == [OTHER_ID]
