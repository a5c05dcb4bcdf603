"""The run plan: what needs the data is worked out there, once, not in the config's validation."""

import pytest

from scarcity import resolve_config
from scarcity.core import data
from scarcity.errors import ConfigError
from scarcity.partitions import PartitionError
from scarcity.plan import RunPlan, plan


def test_validating_a_config_reads_no_data_set(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("validation loaded the data set")

    monkeypatch.setattr(data, "natural_split", refuse)
    monkeypatch.setattr(data, "load_split", refuse)
    config = resolve_config(preset="stage2", dataset="digits", partition="dirichlet")
    assert config.feature_scaling == "minmax"  # the data set's default still filled in


def test_a_real_data_set_is_split_once_and_its_natural_sizes_planned():
    config = resolve_config(preset="stage2", dataset="wine", num_clients=4, partition="iid")
    run = plan(config)
    assert isinstance(run, RunPlan) and run.config is config
    assert run.split is not None and len(run.split.parts) == 4
    assert run.client_sizes == tuple(len(p) for p in run.split.parts)
    assert sum(run.client_sizes) == len(run.split.data.y_train)
    assert run.split is data.natural_split(config)  # the simulation's data reads the same split


def test_synthetic_sizes_participants_and_the_work_estimate():
    config = resolve_config(
        preset="stage8",
        num_clients=10,
        rounds=3,
        samples_per_client=40,
        quantity_skew=1.0,
        fraction_fit=0.5,
        local_epochs=2,
        ssl_epochs=5,
    )
    run = plan(config)
    assert run.split is None
    assert run.client_sizes == tuple(data.client_sizes(config))
    assert len(set(run.client_sizes)) > 1  # skewed
    assert run.participants_per_round == 5
    assert run.passes_per_round == 2 + 5  # local training and the autoencoders' (stage 8)
    assert run.work == 5 * 3 * max(run.client_sizes) * 7
    # replayed rows train in every local epoch (label_free trains no head to replay into)
    replayed = plan(config.model_copy(update={"label_free": False, "replay_size": 30}))
    assert replayed.work == 5 * 3 * (max(run.client_sizes) * 7 + 30 * 2)


def test_own_held_out_rows_are_not_counted_as_training_rows():
    config = resolve_config(preset="stage2", samples_per_client=50, client_test_fraction=0.2)
    assert plan(config).client_sizes == (40,) * config.num_clients


def test_a_split_that_cannot_be_made_is_a_config_error_naming_the_field():
    config = resolve_config(preset="stage2", dataset="iris", num_clients=500)
    with pytest.raises(ConfigError) as caught:
        plan(config)
    assert isinstance(caught.value, PartitionError)
    assert caught.value.field == "num_clients"
    assert "500 clients" in caught.value.message
    assert str(caught.value) == f"num_clients: {caught.value.message}"
