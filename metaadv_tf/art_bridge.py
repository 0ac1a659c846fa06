"""IBM ART (adversarial-robustness-toolbox, the ``test`` extra) around our models: outside checks
of our attacks and results (tests, ``benchmarks/attacks.py``, ``scripts/experiments/external_check.py``)."""
from __future__ import annotations

from typing import Any

import keras


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
