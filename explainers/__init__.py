"""RecLens explainers: explain any engine model through the model contract alone.

- :mod:`explainers.base`: :class:`Explanation` (a score per history item) and :class:`Explainer`;
- :mod:`explainers.spinrec`: SPINRec (stochastic path integration) and Integrated Gradients;
- :mod:`explainers.baselines`: IG from zero, gradient x input, cosine, Jaccard, LIME,
  Kernel SHAP, leave-one-out, random;
- :mod:`explainers.fidelity`: counterfactual fidelity curves (DEL, INS, POS@K, NEG@K, CDCG);
- :mod:`explainers.registry`: explainers by name; :mod:`explainers.batch`: many users at once.

Never imports panel.
"""

from explainers.base import Explainer, Explanation
from explainers.fidelity import METRICS, explanation_metrics, fidelity_curves
from explainers.registry import create, explainer_names
from explainers.spinrec import SpinRec, SpinRecExplanation, integrated_gradients

__all__ = [
    "METRICS",
    "Explainer",
    "Explanation",
    "SpinRec",
    "SpinRecExplanation",
    "create",
    "explainer_names",
    "explanation_metrics",
    "fidelity_curves",
    "integrated_gradients",
]
