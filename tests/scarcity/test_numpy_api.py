"""The seed's public API takes NumPy arrays (`Expert.train(x, y)`, `Router.select_expert(x)`);
tensors keep working, untouched."""

import numpy as np
import pytest
import torch

from scarcity import DriftExpert, MemoryConsolidationExpert, StructureExpert
from scarcity.core.arrays import as_features, as_targets
from scarcity.core.router import Router


def _data(task):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 6))  # float64, as NumPy makes it
    y = rng.integers(0, 3, size=20) if task == "classification" else rng.normal(size=20)
    return x, y


@pytest.mark.parametrize(
    ("task", "output_dim"), [("classification", 3), ("regression", 1)], ids=["labels", "targets"]
)
def test_expert_train_on_numpy_equals_training_on_tensors(task, output_dim):
    x, y = _data(task)
    tx = torch.tensor(x, dtype=torch.float32)
    ty = torch.tensor(y) if task == "classification" else torch.tensor(y, dtype=torch.float32)
    if task == "regression":
        ty = ty.unsqueeze(1)
    on_numpy = StructureExpert(0, input_dim=6, output_dim=output_dim, task=task)
    on_tensors = StructureExpert(0, input_dim=6, output_dim=output_dim, task=task)
    a = on_numpy.train(x, y, epochs=3, batch_size=8, generator=torch.Generator().manual_seed(1))
    b = on_tensors.train(tx, ty, epochs=3, batch_size=8, generator=torch.Generator().manual_seed(1))
    assert a == b
    assert a["final_loss"] < a["initial_loss"] or task == "classification"
    for key, value in on_numpy.get_weights().items():
        assert torch.equal(value, on_tensors.get_weights()[key]), key


def test_self_supervised_training_and_the_memory_expert_take_numpy():
    x, _ = _data("regression")
    expert = MemoryConsolidationExpert(0, input_dim=6, latent_dim=2, memory_capacity=10)
    result = expert.train_self_supervised(x, epochs=5, generator=torch.Generator().manual_seed(0))
    assert result["recon_loss"] < result["initial_recon_loss"]
    assert len(expert.memory_x) == 2 and expert.memory_x.dtype == torch.float32


def test_router_selects_on_a_numpy_array_as_on_the_tensor():
    names = ["StructureExpert", "DriftExpert"]
    loud = np.random.default_rng(0).normal(scale=3.0, size=(10, 4))
    quiet = loud / 100
    router = Router(2, "variance", threshold=0.5)
    assert router.select_expert(loud, names) == 0
    assert router.select_expert(quiet, names) == 1
    assert router.select_expert(torch.tensor(loud, dtype=torch.float32), names) == 0
    assert router.usage == {"StructureExpert": 2, "DriftExpert": 1}


def test_a_tensor_passes_through_untouched():
    t = torch.randn(4, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    assert as_features(t) is t and as_targets(labels, "classification") is labels
    assert as_targets(np.array([[1.0], [2.0]]), "regression").shape == (2, 1)
    assert as_targets(np.array([1, 0]), "classification").dtype == torch.int64
    assert DriftExpert(0, input_dim=2).summarize(as_features(np.ones((3, 2))))["drift"] == 0.0
