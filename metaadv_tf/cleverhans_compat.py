"""Attack runners over ``cleverhans.tf2`` (CleverHans 4.0.0), with every workaround in one place.

``metaadv_tf.attacks`` imports this module lazily, on the first attack call, because importing it
imports CleverHans. Every runner has the signature
``runner(model_fn, x, y, *, norm, eps, ...) -> x_adv``: ``model_fn`` maps float32 images in [0, 1]
to logits, ``y`` are int32 labels (untargeted attacks), ``norm`` is ``np.inf`` or ``2.0``.

CleverHans 4.0.0 defects under TF 2.21 / Keras 3, and what this module does about each:

- ``projected_gradient_descent`` asserts ``eps_iter <= eps``, which rules out FGSM with a random
  start (Wong et al. 2020: one step of 1.25 eps). ``pgd`` is CleverHans's PGD loop
  (``random_lp_vector``, ``fast_gradient_method``, ``clip_eta``) without that assertion. BIM is
  ``pgd`` without the random start, so ``basic_iterative_method``/``madry_et_al`` and their
  ``sanity_checks=True`` default (``np.all`` over a list of tensors: an error under numpy 2 and
  in ``tf.function``) are never called.
- ``momentum_iterative_method`` defaults to ``sanity_checks=True`` as well: ``mim`` passes False.
- PGD and MIM raise NotImplementedError for ``norm=1``: ``metaadv_tf.attacks`` accepts only
  inf and 2, with a ValueError.
- ``spsa`` takes one example at a time, and its ``SPSAAdam`` subclasses Keras's Adam and passes
  ``lr=``, which Keras 3 rejects (a Keras optimizer would also create variables inside
  ``tf.function``). ``spsa`` here maps CleverHans's ``projected_optimization`` over the batch with
  ``StatelessAdam``: SPSAAdam's own tensor code without the Keras base class.
- ``CarliniWagnerL2`` is eager-only, calls ``optimizer.variables()`` (a list in Keras 3), would
  zero the learning rate by resetting all optimizer variables, is targeted iff ``y`` is given,
  slices ``x`` but not ``y`` into batches, and broadcasts its per-example constant to the image
  shape: ``const`` has shape [N, H, W, C] and, after the first binary-search step, [N, H, W, N]
  (measured), so the examples' constants mix and memory grows as N**2. ``cw_l2`` here is a
  compilable loop over CleverHans's CW objective (``loss_fn``, ``clip_tanh``) and Adam step.
- ``cleverhans.tf2.utils.compute_gradient`` (used by FGM, PGD, BIM, MIM) is a module-level
  ``tf.function`` that takes ``model_fn`` as an argument, so it traces once per distinct callable
  object: eagerly, a fresh lambda per call retraces every call (0.1-0.2 s each). Reuse one
  ``model_fn`` object, or call attacks inside your own ``tf.function`` (traced once with it).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.carlini_wagner_l2 import clip_tanh
from cleverhans.tf2.attacks.carlini_wagner_l2 import loss_fn as cw_loss
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
from cleverhans.tf2.attacks.spsa import SPSAAdam, margin_logit_loss, projected_optimization
from cleverhans.tf2.utils import random_lp_vector

from metaadv_tf.attacks import ModelFn
from metaadv_tf.projections import project, within_ball


def fgm(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float) -> tf.Tensor:
    """One fast gradient step of size ``eps`` (FGSM for Linf, Goodfellow et al. 2015)."""
    return fast_gradient_method(model_fn, x, eps, norm, clip_min=0.0, clip_max=1.0, y=y)


def pgd(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    step_size: float, rand_init: bool, start: tf.Tensor | None = None,
) -> tf.Tensor:
    """CleverHans's PGD (Madry et al. 2018) without its ``step_size <= eps`` assertion.

    With ``rand_init`` the start is uniform in the ball; without it, this is BIM (Kurakin et al.).
    A given ``start`` (e.g. an earlier adversarial batch) replaces both.
    """
    if start is None:
        start = x + random_lp_vector(tf.shape(x), norm, eps, dtype=x.dtype) if rand_init else x
    x_adv = project(x, start, norm, eps)
    for _ in range(steps):
        x_adv = project(x, fgm(model_fn, x_adv, y, norm=norm, eps=step_size), norm, eps)
    return x_adv


def mim(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    step_size: float, decay: float,
) -> tf.Tensor:
    """Momentum iterative method (Dong et al. 2018), with ``sanity_checks`` off."""
    return momentum_iterative_method(
        model_fn, x, eps=eps, eps_iter=step_size, nb_iter=steps, norm=norm, clip_min=0.0,
        clip_max=1.0, y=y, decay_factor=decay, sanity_checks=False,
    )


class StatelessAdam:
    """CleverHans's ``SPSAAdam`` without its Keras base class: Adam on plain tensors.

    ``SPSAAdam`` subclasses Keras's Adam only to read ``lr``, ``beta_1``, ``beta_2`` and
    ``epsilon``; its state lives in tensors it passes around. This class holds those numbers
    (Keras's Adam defaults) and borrows SPSAAdam's methods, so it builds no variables and runs
    inside ``tf.function``.
    """

    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7
    init_state = SPSAAdam.init_state
    minimize = SPSAAdam.minimize
    _get_delta = SPSAAdam._get_delta
    _compute_gradients = SPSAAdam._compute_gradients
    _apply_gradients = SPSAAdam._apply_gradients

    def __init__(self, lr: float = 0.01, delta: float = 0.01, num_samples: int = 128) -> None:
        self.lr = lr
        self._delta = delta
        self._num_samples = num_samples // 2  # SPSA mirrors each sample (+delta, -delta)
        self._num_iters = 1


def spsa(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    learning_rate: float, num_samples: int, delta: float,
) -> tf.Tensor:
    """SPSA (Uesato et al. 2018) on a batch: CleverHans's single-example attack, mapped.

    Each step estimates the gradient of the margin loss from ``num_samples`` model evaluations of
    the example, so ``model_fn`` sees batches of ``num_samples`` perturbed copies of one image: it
    must not depend on batch composition (BatchNorm in inference mode).
    """
    optimizer = StatelessAdam(learning_rate, delta, num_samples)

    def loss(images: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
        logits = model_fn(images)
        return -margin_logit_loss(logits, label, nb_classes=logits.shape[-1])

    def project_perturbation(perturbation, epsilon, image, clip_min, clip_max):
        """``projected_optimization``'s projection hook; clip_min, clip_max are always 0, 1."""
        return project(image, image + perturbation, norm, epsilon) - image

    def attack_one(example: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        image, label = example
        x_adv = projected_optimization(
            loss, image[None], label[None], eps, steps, optimizer, clip_min=0.0, clip_max=1.0,
            project_perturbation=project_perturbation,
        )
        return x_adv[0]

    return tf.map_fn(attack_one, (x, y), fn_output_signature=x.dtype)


def cw_l2(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    learning_rate: float, binary_search_steps: int, confidence: float, initial_const: float,
) -> tf.Tensor:
    """Carlini-Wagner L2 (untargeted), kept only where ``||x_adv - x||_norm <= eps``, else ``x``.

    CW searches for the smallest perturbation that changes the label: per example, Adam on
    ``||x_adv - x||^2 + const * max(0, margin + confidence)`` in tanh space for ``steps`` steps,
    and a binary search over ``const`` (up x10 until a first success, then bisection).
    """
    tanh_x = tf.atanh((2.0 * x - 1.0) * 0.999999)  # as CleverHans: x = clip_tanh(tanh_x)
    onehot = tf.one_hot(y, model_fn(x).shape[-1], dtype=x.dtype)
    batch = tf.shape(x)[:1]
    const, lower, upper = tf.fill(batch, initial_const), tf.zeros(batch), tf.fill(batch, 1e10)
    best, best_l2 = x, tf.fill(batch, np.inf)
    optimizer = StatelessAdam(learning_rate)

    def descend(const, best, best_l2):
        """``steps`` Adam steps from tanh_x; returns (found, best, best_l2)."""

        def step(i, modifier, state, found, best, best_l2):
            with tf.GradientTape() as tape:
                tape.watch(modifier)
                x_new = clip_tanh(tanh_x + modifier, clip_min=0.0, clip_max=1.0)
                logits = model_fn(x_new)
                loss, l2 = cw_loss(
                    tanh_x, x_new, onehot, logits, confidence, const=const, targeted=False,
                    clip_min=0.0, clip_max=1.0,
                )
            [modifier], state = optimizer._apply_gradients(
                [tape.gradient(loss, modifier)], [modifier], state
            )
            success = tf.not_equal(
                tf.argmax(logits + confidence * onehot, axis=1, output_type=tf.int32), y
            )
            better = success & (l2 < best_l2)
            best = tf.where(better[:, None, None, None], x_new, best)
            return i + 1, modifier, state, found | success, best, tf.where(better, l2, best_l2)

        zeros = tf.zeros_like(x)
        start = (0, zeros, optimizer.init_state([zeros]), tf.zeros(batch, tf.bool), best, best_l2)
        return tf.while_loop(lambda i, *_: i < steps, step, start)[3:]

    for _ in range(binary_search_steps):
        found, best, best_l2 = descend(const, best, best_l2)
        upper = tf.where(found, tf.minimum(upper, const), upper)
        lower = tf.where(found, lower, tf.maximum(lower, const))
        const = tf.where(upper < 1e9, (lower + upper) / 2.0, const * 10.0)
    return tf.where(within_ball(x, best, norm, eps)[:, None, None, None], best, x)
