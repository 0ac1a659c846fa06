"""Multi steepest descent (MSD; Maini et al. 2020, "Adversarial robustness against the union of
multiple perturbation models"): one attack over the union of several Lp balls.

Every iteration takes, from the current point, one steepest-ascent step per Lp attack (Linf: the
gradient's sign; L2: the normalized gradient; L1: SLIDE's sparse direction,
`metaadv_tf.slide`), projects each into its own ball and [0, 1], and moves each example to the
candidate of highest loss. As in Maini et al.'s code, the attack starts at ``x`` and returns,
per example, the candidate of highest loss over all iterations.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import Attack, ModelFn
from metaadv_tf.projections import lp_norm, per_example, project
from metaadv_tf.slide import project_l1, sparse_l1_direction

STEP_ATTACKS = ("pgd_linf", "pgd_l2", "pgd_l1", "bim")  # attacks whose step MSD can take
_TINY = 1e-12


@dataclasses.dataclass(frozen=True)
class MultiSteepestDescent:
    """MSD over the balls of ``attacks``, with their eps, step_size and (L1) percentile, for their
    common number of ``steps``; their random starts are not used. Example::

        msd = MultiSteepestDescent(tuple(parse_attacks("pgd_linf(steps=7),pgd_l2(steps=7)")))
        x_adv = msd(model, images, labels)
    """

    attacks: tuple[Attack, ...]

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ValueError("MSD needs at least one Lp attack. Received: none")
        for attack in self.attacks:
            if attack.name not in STEP_ATTACKS:
                raise ValueError(
                    f"MSD takes the steps of the Lp attacks {', '.join(STEP_ATTACKS)}."
                    f" Received: {attack.name}"
                )
        steps = {attack.name: attack.settings["steps"] for attack in self.attacks}
        if len(set(steps.values())) > 1:
            raise ValueError(
                f"MSD needs one number of steps for all its Lp attacks. Received: steps {steps}"
            )

    @property
    def steps(self) -> int:
        """Iterations: the attacks' common ``steps``."""
        return self.attacks[0].settings["steps"]

    def __call__(self, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Adversarial examples for images ``x`` and int labels ``y``, gradient stopped; each lies
        in the ball of one of the attacks and in [0, 1]."""
        x, y = tf.convert_to_tensor(x), tf.cast(y, tf.int32)
        lowest = tf.fill(tf.shape(y), -np.inf)

        def loss_of(images: tf.Tensor) -> tf.Tensor:
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model_fn(images))

        def iteration(i, x_adv, best, best_loss):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = loss_of(x_adv)
            grad = tape.gradient(loss, x_adv)
            chosen, chosen_loss = x_adv, lowest
            for attack in self.attacks:
                candidate = ascent_step(attack, x, x_adv, grad)
                chosen, chosen_loss = _keep_higher(candidate, loss_of(candidate), chosen, chosen_loss)
            best, best_loss = _keep_higher(chosen, chosen_loss, best, best_loss)
            return i + 1, chosen, best, best_loss

        start = (0, x, x, lowest)
        _, _, best, _ = tf.while_loop(lambda i, *_: i < self.steps, iteration, start)
        return tf.stop_gradient(best)


def ascent_step(attack: Attack, x: tf.Tensor, x_adv: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """One step of ``attack`` from ``x_adv`` along ``grad`` (the loss gradient at ``x_adv``),
    projected into its ball around ``x`` and [0, 1]."""
    step_size, eps = attack.settings["step_size"], attack.eps
    if attack.norm == 1:
        direction = sparse_l1_direction(grad, x_adv, attack.settings["percentile"])
        return project_l1(x, x_adv + step_size * direction, eps)
    if attack.norm == np.inf:
        direction = tf.sign(grad)
    else:
        direction = grad / per_example(tf.maximum(lp_norm(grad, 2), _TINY), grad)
    return project(x, x_adv + step_size * direction, attack.norm, eps)


def _keep_higher(candidate: tf.Tensor, candidate_loss: tf.Tensor, current: tf.Tensor,
                 current_loss: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per example, the candidate where its loss is higher than the current one's, else the current."""
    higher = candidate_loss > current_loss
    return (tf.where(higher[:, None, None, None], candidate, current),
            tf.where(higher, candidate_loss, current_loss))
