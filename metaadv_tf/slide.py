"""Sparse L1 Descent (SLIDE; Tramèr & Boneh 2019, "Adversarial training and robustness for
multiple perturbations"): PGD in the L1 ball with sparse steps.

Steepest ascent for the L1 norm moves one coordinate per step, which makes L1 PGD slow. SLIDE
moves every coordinate whose gradient magnitude is at or above the ``percentile``-th percentile of
the example's gradient magnitudes, each by ``step_size / count`` along the gradient's sign. As in
CleverHans (``cleverhans/attacks/sparse_l1_descent.py``, with ``clip_grad=True``) and Tramèr's
code, coordinates whose step would leave [0, 1] are left out before the percentile is taken, and
each step is followed by the Euclidean projection onto the L1 ball and clipping to [0, 1].
"""
from __future__ import annotations

import tensorflow as tf

from metaadv_tf.attacks import ModelFn
from metaadv_tf.projections import flat, project_l1_ball
from metaadv_tf.seeding import input_seed

_TINY = 1e-12


def pgd_l1(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    step_size: float, percentile: float, rand_init: bool, seed: int, start: tf.Tensor | None = None,
) -> tf.Tensor:
    """``steps`` SLIDE steps on the cross-entropy of labels ``y``; ``norm`` is always 1.

    With ``rand_init`` the start is uniform in the L1 ball of radius ``eps`` (clipped to
    [0, 1]), drawn statelessly from ``seed`` and the images (``input_seed``): the same inputs
    give the same result, and each training batch gets its own draws. A given ``start`` (e.g.
    an earlier adversarial batch) replaces both.
    """
    del norm  # the runner signature passes it; SLIDE is L1 only
    if start is None:
        start = x + random_l1_ball(tf.shape(x), eps, input_seed(seed, x)) if rand_init else x

    def step(i: tf.Tensor, x_adv: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model_fn(x_adv))
        direction = sparse_l1_direction(tape.gradient(loss, x_adv), x_adv, percentile)
        return i + 1, project_l1(x, x_adv + step_size * direction, eps)

    _, x_adv = tf.while_loop(lambda i, _: i < steps, step, (0, project_l1(x, start, eps)))
    return x_adv


def sparse_l1_direction(grad: tf.Tensor, x_adv: tf.Tensor, percentile: float) -> tf.Tensor:
    """The SLIDE step direction of unit L1 norm per example (zero where ``grad`` is zero).

    ``sign(grad)`` on the coordinates where ``|grad|`` is at or above its ``percentile``-th
    percentile (as CleverHans: the value at index ``floor(percentile / 100 * D)`` of the sorted
    magnitudes), divided by their count. Coordinates at 0 with a negative gradient, or at 1 with
    a positive one, count as zero gradient: the step could not move them.
    """
    blocked = ((x_adv <= 0.0) & (grad < 0.0)) | ((x_adv >= 1.0) & (grad > 0.0))
    grad = flat(tf.where(blocked, tf.zeros_like(grad), grad))
    magnitude = tf.abs(grad)
    size = tf.shape(magnitude)[1]
    below = tf.cast(tf.floor(percentile / 100.0 * tf.cast(size, tf.float32)), tf.int32)
    threshold = tf.math.top_k(magnitude, k=size - below, sorted=True).values[:, -1:]
    chosen = tf.cast(magnitude >= threshold, grad.dtype)
    direction = tf.sign(grad) * chosen / tf.reduce_sum(chosen, axis=1, keepdims=True)
    return tf.reshape(direction, tf.shape(x_adv))


def project_l1(x: tf.Tensor, x_adv: tf.Tensor, eps: float) -> tf.Tensor:
    """``x_adv`` projected onto the L1 ball of radius ``eps`` around ``x``, then into [0, 1]."""
    return tf.clip_by_value(x + project_l1_ball(x_adv - x, eps), 0.0, 1.0)


def random_l1_ball(shape: tf.Tensor, eps: float, seed: tf.Tensor) -> tf.Tensor:
    """Points uniform in the L1 ball of radius ``eps``, one per example of ``shape`` [N, ...].

    Barthe et al. (2005): D Laplace coordinates divided by the sum of their magnitudes and of one
    more exponential variable. Stateless: ``seed`` and ``shape`` determine the draw.
    """
    batch, size = shape[0], tf.reduce_prod(shape[1:])
    uniform = tf.random.stateless_uniform(
        tf.stack([batch, size + 1]), seed=seed, minval=-1.0, maxval=1.0
    )
    laplace = tf.sign(uniform) * -tf.math.log(tf.maximum(tf.abs(uniform), _TINY))
    total = tf.reduce_sum(tf.abs(laplace), axis=1, keepdims=True)
    return tf.reshape(eps * laplace[:, :-1] / total, shape)
