"""IBM ART (adversarial-robustness-toolbox, the ``test`` extra) around our models: outside checks
of our attacks and results (tests, ``benchmarks/attacks.py``, ``scripts/experiments/external_check.py``),
and ``valid_examples``, which checks what an outside library's attack returns before it counts."""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

RADIUS_TOLERANCE = 1e-4  # relative slack on the radius for float32 round-off


def art_classifier(model: keras.Model) -> Any:
    """``model`` (logits, images in [0, 1]) as an ART ``TensorFlowV2Classifier``."""
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model, nb_classes=model.output_shape[-1], input_shape=model.input_shape[1:], clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def art_apgd(classifier: Any, norm: float, eps: float, steps: int, batch_size: int,
             loss: str = "cross_entropy") -> Any:
    """ART's ``AutoProjectedGradientDescent`` on ``loss``, one random start, first step 2·eps (as AutoAttack)."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    return AutoProjectedGradientDescent(classifier, norm=norm, eps=eps, eps_step=2 * eps, max_iter=steps,
                                        nb_random_init=1, batch_size=batch_size, loss_type=loss, verbose=False)


def valid_examples(x: np.ndarray, x_adv: np.ndarray, norm: float, eps: float) -> tuple[np.ndarray, int]:
    """``x_adv`` with each image that has a non-finite value replaced by its clean image, and how
    many were. Raises if a finite one leaves the Lp ball of radius ``eps`` around ``x`` or [0, 1]."""
    invalid = ~np.isfinite(x_adv).reshape(len(x), -1).all(axis=1)
    x_adv = np.where(invalid.reshape(-1, *[1] * (x.ndim - 1)), x, x_adv)
    distances = np.linalg.norm((x_adv - x).reshape(len(x), -1), ord=norm, axis=1)
    if distances.max() > eps * (1 + RADIUS_TOLERANCE) or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"The adversarial examples leave the L{norm} ball of radius {eps} or [0, 1]:"
                           f" largest distance {distances.max():.6g}, range [{x_adv.min()}, {x_adv.max()}].")
    return x_adv, int(invalid.sum())
