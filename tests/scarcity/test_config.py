"""Bad configurations are rejected with a message naming the field."""

import pytest
from pydantic import ValidationError

from scarcity import PRESETS, SimulationConfig, resolve_config


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"num_clients": 0}, "num_clients"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"router_strategy": "fastest"}, "router_strategy"),
        ({"preset": "stage9"}, "preset"),
        ({"no_such_knob": 1}, "no_such_knob"),
        ({"ssl_epochs": 0}, "ssl_epochs"),
        ({"dataset": "digits", "input_dim": 5}, "input_dim"),
        ({"partition": "dirichlet"}, "partition"),
        ({"preset": "stage1", "meta_reptile": True}, "meta_reptile"),
    ],
)
def test_bad_config_names_the_field(request_fields, field):
    with pytest.raises(ValidationError) as info:
        resolve_config(request_fields)
    assert field in str(info.value)


def test_presets_switch_on_every_feature_of_earlier_stages():
    toggles = [
        "federated_averaging",
        "insight_exchange",
        "expert_routing",
        "meta_learning",
        "gossip",
        "extended_experts",
        "structure_discovery",
    ]
    for stage in range(1, 9):
        config = resolve_config(preset=f"stage{stage}")
        assert [getattr(config, t) for t in toggles] == [i < stage - 1 for i in range(7)]
    assert len(PRESETS) == 8


def test_every_feature_is_overridable():
    config = resolve_config(preset="stage8", gossip=False, dataset="iris")
    assert config.gossip is False and (config.input_dim, config.output_dim) == (4, 3)


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        SimulationConfig().num_clients = 3  # type: ignore[misc]
