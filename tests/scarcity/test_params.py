"""Parameters declared by their owners: each strategy, partitioner and backbone declares the
config fields it reads, and `SimulationConfig` is assembled from them."""

from typing import ClassVar

import pytest

from scarcity import config as config_module
from scarcity.backbones import BACKBONES, backbone_params
from scarcity.config import SimulationConfig, resolve_config
from scarcity.params import Param, unique
from scarcity.partitions import PARTITIONERS, partition_params
from scarcity.strategies import STRATEGIES, strategy_params
from scarcity.strategies.fedavg import FedAvg

OWNED = {"model": backbone_params, "partition": partition_params, "strategy": strategy_params}


def test_every_declared_parameter_is_a_config_field_as_its_owner_declares_it():
    fields = SimulationConfig.model_fields
    for params in OWNED.values():
        for param in params():
            info = fields[param.name]
            assert info.default == param.default, param.name
            assert info.description == param.description, param.name
            _, declared = param.field()
            assert info.metadata == declared.metadata, param.name


def test_an_owners_fields_follow_the_field_that_chooses_it():
    names = list(SimulationConfig.model_fields)
    for chooser, params in OWNED.items():
        owned = [p.name for p in params()]
        start = names.index(chooser) + 1
        assert names[start : start + len(owned)] == owned, chooser


def test_each_owner_lists_what_it_declares():
    assert {p.name for cls, _ in BACKBONES.values() for p in cls.params} == {
        "hidden_sizes",
        "cnn_channels",
        "rnn_hidden",
        "rnn_layers",
    }
    assert BACKBONES["mlp"][0].parameters == ("hidden_sizes",)
    for partitioner in PARTITIONERS.values():
        assert {p.name for p in partitioner.params} <= set(partitioner.parameters)
    for cls in STRATEGIES.values():
        assert set(cls.defaults) <= {p.name for p in cls.params} | {"reptile_step_size"}


def test_one_field_declared_twice_differently_is_refused():
    a = Param("alpha", float, 0.5, "α.", gt=0)
    assert unique([a, a]) == [a]
    with pytest.raises(TypeError, match="alpha"):
        unique([a, Param("alpha", float, 0.7, "α.", gt=0)])


def test_a_strategys_new_parameter_needs_only_the_strategy(monkeypatch):
    """What adding a strategy with a parameter takes: its class and its registry line."""

    class Damped(FedAvg):
        name = "damped"
        params: ClassVar[tuple[Param, ...]] = (
            Param("damping", float | None, None, "Damped: server damping.", ge=0, le=1),
        )
        defaults = {"damping": 0.5}

    last = [p.name for cls in STRATEGIES.values() for p in cls.params][-1]
    monkeypatch.setitem(STRATEGIES, "damped", Damped)
    assembled = config_module._assemble()
    names = list(assembled.model_fields)
    assert names[names.index(last) + 1] == "damping"  # with the strategies' fields
    fields = {**resolve_config(preset="stage2").model_dump(), "strategy": "damped"}
    assert assembled.model_validate(fields).damping == 0.5  # the strategy's default filled in
    assert assembled.model_validate({**fields, "strategy": "fedavg"}).damping is None
    with pytest.raises(ValueError, match="damping"):
        assembled.model_validate({**fields, "damping": 2.0})
