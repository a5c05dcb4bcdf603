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


def test_presets_switch_on_every_sf_hfe_feature_of_earlier_stages():
    """Stage N keeps every mechanism of stages 3..N; the shared model is stage 2's alone
    (from stage 3 clients send the server insights, not weights)."""
    toggles = [
        "insight_exchange",
        "expert_routing",
        "meta_learning",
        "gossip",
        "extended_experts",
        "structure_discovery",
    ]
    for stage in range(1, 9):
        config = resolve_config(preset=f"stage{stage}")
        assert [getattr(config, t) for t in toggles] == [i < stage - 2 for i in range(6)]
        assert config.federated_averaging == (stage == 2)
        assert config.expert_ensemble
    hybrid = resolve_config(
        preset="stage8", federated_averaging=True, label_free=False, strategy="fedprox"
    )
    assert hybrid.federated_averaging and hybrid.structure_discovery
    assert list(PRESETS) == [f"stage{i}" for i in range(1, 9)] + ["baseline"]


def test_the_baseline_preset_is_the_shared_model_alone():
    config = resolve_config(preset="baseline", strategy="fedprox")
    assert config.federated_averaging and not config.expert_ensemble
    assert not any(
        getattr(config, t)
        for t in ("insight_exchange", "expert_routing", "meta_learning", "gossip")
    )
    assert config.proximal_mu == 0.01  # the strategy's default, filled in


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"preset": "baseline", "gossip": True}, "gossip"),
        ({"preset": "baseline", "federated_averaging": False}, "expert_ensemble"),
        ({"preset": "stage1", "strategy": "fedprox"}, "strategy"),
        ({"preset": "stage5", "strategy": "fedadam", "meta_reptile": True}, "meta_reptile"),
        (
            {
                "preset": "baseline",
                "strategy": "krum",
                "num_clients": 4,
                "num_malicious_clients": 1,
            },
            "num_malicious_clients",
        ),
        (
            {
                "preset": "baseline",
                "strategy": "bulyan",
                "num_clients": 10,
                "num_malicious_clients": 2,
            },
            "num_malicious_clients",
        ),
        (
            {"preset": "baseline", "strategy": "multikrum", "num_clients_to_keep": 9},
            "num_clients_to_keep",
        ),
        ({"preset": "stage1", "malicious_fraction": 0.2}, "attack"),
    ],
)
def test_strategy_combinations_that_cannot_run_name_the_field(request_fields, field):
    with pytest.raises(ValidationError) as info:
        resolve_config(request_fields)
    assert field in str(info.value)


def test_meta_reptile_and_the_reptile_strategy_are_one():
    assert resolve_config(preset="stage2", meta_reptile=True).strategy == "reptile"
    assert resolve_config(preset="stage2", strategy="reptile").meta_reptile


def test_unset_strategy_parameters_take_the_chosen_strategys_defaults_only():
    adam = resolve_config(preset="baseline", strategy="fedadam")
    assert (adam.server_learning_rate, adam.beta_1, adam.beta_2, adam.tau) == (
        0.1,
        0.9,
        0.99,
        1e-9,
    )
    assert adam.proximal_mu is None and adam.trim_beta is None
    yogi = resolve_config(preset="baseline", strategy="fedyogi", server_learning_rate=0.5)
    assert (yogi.server_learning_rate, yogi.tau) == (0.5, 1e-3)
    krum = resolve_config(
        preset="baseline", strategy="krum", num_clients=20, malicious_fraction=0.2
    )
    assert krum.num_malicious_clients == 4
    sampled = resolve_config(
        preset="baseline",
        strategy="multikrum",
        num_clients=20,
        clients_per_round=10,
        malicious_fraction=0.2,
    )
    assert (sampled.num_malicious_clients, sampled.num_clients_to_keep) == (2, 8)


def test_every_feature_is_overridable():
    config = resolve_config(preset="stage8", gossip=False, dataset="iris")
    assert config.gossip is False and (config.input_dim, config.output_dim) == (4, 3)


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        SimulationConfig().num_clients = 3  # type: ignore[misc]


def test_a_preset_named_without_its_settings_is_refused_pointing_to_resolve_config():
    """`SimulationConfig(preset="stage2")` alone would be stage 2 with every feature off."""
    with pytest.raises(ValidationError, match=r"resolve_config\(preset='stage2'"):
        SimulationConfig(preset="stage2")
    with pytest.raises(ValidationError, match="expert_ensemble=False"):
        SimulationConfig(preset="baseline", federated_averaging=True)
    assert SimulationConfig(preset="stage2", federated_averaging=True).federated_averaging
    assert SimulationConfig(preset="stage1").stage == 1  # stage 1 switches nothing on
    resolved = resolve_config(preset="stage5")
    assert SimulationConfig.model_validate(resolved.model_dump()) == resolved  # stored configs
