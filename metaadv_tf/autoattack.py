"""AutoAttack (Croce & Hein 2020) as one composite attack, as RobustBench runs it.

The stages run in order: APGD-CE, APGD-T (targeted DLR over ``target_classes`` classes), then the
score-based Square attack (Linf and L2; there is no L1 Square here, so L1 runs the two APGD stages,
and, as AutoAttack's standard version, their ``largereps`` schedule: 30 % of the iterations at 3
eps, 30 % at 2 eps, the rest at eps). Each stage attacks only the examples that every earlier stage
left correctly classified (per-example early stopping), so a stage's cost falls with the model's
robustness. The result is, per example, the first adversarial point found, else the last stage's
point: an example counts as robust only if it survives every stage, the per-example worst case over
the stages.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import Attack, ModelFn, get_attack


def autoattack(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    restarts: int, target_classes: int, queries: int, seed: int, largereps: bool,
) -> tf.Tensor:
    """Adversarial examples from the AutoAttack stages, each run on the still-robust examples.

    ``queries`` is Square's budget; it is unused for L1, which has no Square stage.
    ``largereps`` (L1) runs the APGD stages at 3, 2, then 1 times eps, as AutoAttack's standard.
    """
    x_adv = x
    robust = _correct(model_fn, x, y)
    for stage in stages(norm, eps, steps, restarts, target_classes, queries, seed, largereps):
        x_adv, robust = _attack_robust(stage, model_fn, x, y, x_adv, robust)
    return x_adv


def stages(
    norm: float, eps: float, steps: int, restarts: int, target_classes: int, queries: int,
    seed: int, largereps: bool = False,
) -> list[Attack]:
    """The attacks AutoAttack runs for ``norm``, in order."""
    norm_setting = "inf" if norm == np.inf else int(norm)
    shared = {"norm": norm_setting, "eps": eps, "seed": seed}
    apgd = {**shared, "steps": steps, "restarts": restarts, "largereps": largereps}
    result = [get_attack("apgd_ce", **apgd), get_attack("apgd_t", target_classes=target_classes, **apgd)]
    if norm != 1:
        result.append(get_attack("square", queries=queries, **shared))
    return result


def _correct(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Whether the model classifies each example correctly (bool [N])."""
    return tf.equal(tf.argmax(model_fn(x), axis=-1, output_type=tf.int32), y)


def _attack_robust(
    attack: Attack, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, x_adv: tf.Tensor,
    robust: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Runs ``attack`` on the examples still ``robust`` and writes its points and flags back."""
    indices = tf.where(robust)

    def run() -> tuple[tf.Tensor, tf.Tensor]:
        images, labels = tf.gather_nd(x, indices), tf.gather_nd(y, indices)
        found = attack(model_fn, images, labels)
        still = _correct(model_fn, found, labels)
        return (tf.tensor_scatter_nd_update(x_adv, indices, found),
                tf.tensor_scatter_nd_update(robust, indices, still))

    return tf.cond(tf.size(indices) > 0, run, lambda: (x_adv, robust))
