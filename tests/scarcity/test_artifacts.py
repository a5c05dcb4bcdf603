"""`scarcity.artifacts`: a round's model recomputed from the seed equals the one a checkpoint
resumes to and the one the uninterrupted run held; the architecture names every tensor the
files hold, for every backbone; the comparison with stored metrics and the file formats."""

from __future__ import annotations

import io

import pytest
import torch

from scarcity import artifacts
from scarcity.backbones import BACKBONES, make_backbone
from scarcity.config import resolve_config
from scarcity.simulation import Simulation

SMALL = {"num_clients": 3, "rounds": 4, "samples_per_client": 20, "seed": 5}


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_replayed_round_is_the_uninterrupted_runs_model_from_the_seed_or_a_checkpoint(
    execution: str,
) -> None:
    config = resolve_config({"preset": "stage7", "execution": execution, **SMALL})
    live = Simulation(config)
    results = [live.run_round() for _ in range(3)]
    replayed, last = artifacts.replay(config, 3)
    assert last is not None and dict(last.metrics) == dict(results[2].metrics)
    early = Simulation(config)
    early.run_round()
    checkpoint_after_1 = early.checkpoint()
    resumed, resumed_last = artifacts.replay(config, 3, checkpoint_after_1)
    assert resumed_last is not None and dict(resumed_last.metrics) == dict(results[2].metrics)
    for sim in (replayed, resumed):
        for name, tensor in artifacts.global_model(live).items():
            assert torch.equal(artifacts.global_model(sim)[name], tensor)
        for client in range(3):
            ours = artifacts.client_experts(sim, client)
            theirs = artifacts.client_experts(live, client)
            assert ours.keys() == theirs.keys() and len(ours) == 4 * 6  # 4 experts × 3 parts × 2
            assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    # a checkpoint taken after the round itself: nothing to recompute
    at, nothing = artifacts.replay(config, 1, checkpoint_after_1)
    assert nothing is None and at.rounds_completed == 1
    with pytest.raises(ValueError, match="after round"):
        artifacts.replay(config, 0, checkpoint_after_1)


def test_both_executions_export_the_same_experts_up_to_rounding() -> None:
    exported = {}
    for execution in ("batched", "reference"):
        config = resolve_config({"preset": "stage2", "execution": execution, **SMALL})
        simulation, _ = artifacts.replay(config, 2)
        exported[execution] = artifacts.client_experts(simulation, 2)
    assert exported["batched"].keys() == exported["reference"].keys()
    for name, tensor in exported["reference"].items():
        torch.testing.assert_close(exported["batched"][name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", sorted(BACKBONES))
def test_the_architecture_names_every_tensor_a_backbone_holds(model: str) -> None:
    dataset = {"char_rnn": "shakespeare"}.get(model, "digits")
    if model in ("simple_cnn",):
        dataset = "mnist"
    config = resolve_config({"preset": "stage2", "dataset": dataset, "model": model})
    described = artifacts.architecture(config)
    state = make_backbone(config).make(torch.Generator().manual_seed(0)).state_dict()
    assert [(t["name"], t["shape"], t["dtype"]) for t in described["tensors"]] == [
        (name, list(t.shape), "float32") for name, t in state.items()
    ]
    assert described["backbone"]["name"] == model
    assert set(described["backbone"]["fields"]) == set(BACKBONES[model][0].parameters)
    assert (described["backbone"]["input_dim"], described["backbone"]["output_dim"]) == (
        config.input_dim,
        config.output_dim,
    )
    experts = artifacts.architecture(config, client_id=0)
    names = [t["name"] for t in experts["tensors"]]
    assert experts["experts"] == ["StructureExpert", "DriftExpert"]
    assert names[: len(state) + 4] == [
        *(f"StructureExpert.model.{name}" for name in state),
        "StructureExpert.encoder.weight",
        "StructureExpert.encoder.bias",
        "StructureExpert.decoder.weight",
        "StructureExpert.decoder.bias",
    ]
    assert experts["tensors"][len(state)]["shape"] == [config.latent_dim, config.input_dim]


def test_models_a_run_never_has_are_refused_naming_why() -> None:
    with pytest.raises(artifacts.NoModel, match="federated_averaging is off"):
        artifacts.check_request(resolve_config({"preset": "stage1"}), None)
    with pytest.raises(artifacts.NoModel, match="no experts"):
        artifacts.check_request(resolve_config({"preset": "baseline"}), 0)
    with pytest.raises(artifacts.NoModel, match="has 3 clients"):
        artifacts.check_request(resolve_config({"preset": "stage2", "num_clients": 3}), 3)
    artifacts.check_request(resolve_config({"preset": "stage1"}), 0)
    artifacts.check_request(resolve_config({"preset": "baseline"}), None)


def test_mismatches_name_each_metric_beyond_the_tolerance() -> None:
    stored = {"loss": 2.0, "test_loss": 1000.0, "test_accuracy": 0.5}
    assert artifacts.mismatches(stored, dict(stored)) == []
    # relative to max(1, |stored|): 1000 may move by 0.01, 0.5 by 1e-5 only
    close = {"loss": 2.0 + 1.5e-5, "test_loss": 1000.009, "test_accuracy": 0.5 + 0.9e-5}
    assert artifacts.mismatches(stored, close) == []
    far = {"loss": 2.0 + 2.5e-5, "test_loss": 1000.02, "test_accuracy": 0.5}
    assert artifacts.mismatches(stored, far) == [
        f"loss: 2.0 → {2.0 + 2.5e-5}",
        "test_loss: 1000.0 → 1000.02",
    ]
    assert artifacts.mismatches(stored, {"loss": 2.0, "test_loss": 1000.0}) == [
        "test_accuracy: 0.5 → None"
    ]


def test_the_file_formats_hold_the_tensors_and_the_description() -> None:
    tensors = {"0.weight": torch.arange(6.0).reshape(2, 3), "0.bias": torch.tensor([1.0, -1.0])}
    description = {"backbone": {"name": "mlp"}, "round": 3}
    blob = artifacts.encode(tensors, "safetensors", description)
    from safetensors.torch import load  # the library's own reader

    assert {k: v.tolist() for k, v in load(blob).items()} == {
        "0.weight": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]],
        "0.bias": [1.0, -1.0],
    }
    assert artifacts.read_description(blob) == description
    saved = artifacts.encode(tensors, "torch", description)
    loaded = torch.load(io.BytesIO(saved), weights_only=True)
    assert {k: v.tolist() for k, v in loaded.items()} == {k: v.tolist() for k, v in tensors.items()}
