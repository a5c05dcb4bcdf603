"""The ensemble's former home; personal evaluation lives in `scarcity.components.personal`."""

from scarcity.components.personal import client_prediction, ensemble_metrics, head_outputs, scores

__all__ = ["client_prediction", "ensemble_metrics", "head_outputs", "scores"]
