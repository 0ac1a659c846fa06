"""Fast weights: a Keras model applied with explicit parameter tensors.

``model.stateless_call`` runs a model on given trainable and non-trainable values without touching
its variables, so a ``tf.GradientTape`` sees through SGD updates of those values (second-order
MAML). Non-trainable values (BatchNorm moving statistics, dropout seed state) are threaded through
calls and returned; the training step decides what to assign back (see ``metaadv_tf.training``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

Params = list[tf.Tensor]
ModelFn = Callable[[tf.Tensor], tf.Tensor]


def apply(
    model: keras.Model,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    x: tf.Tensor,
    *,
    training: bool,
) -> tuple[tf.Tensor, Params]:
    """Returns (logits, new non-trainable state) of ``model`` run with ``params`` on ``x``."""
    logits, new_state = model.stateless_call(list(params), list(state), x, training=training)
    return logits, list(new_state)


def current_values(model: keras.Model) -> tuple[Params, Params]:
    """(trainable, non-trainable) values of ``model``'s variables now: the arguments of ``apply``."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


def model_fn(model: keras.Model, params: Sequence[tf.Tensor], state: Sequence[tf.Tensor]) -> ModelFn:
    """A logits callable over fast weights, for attacks (its state updates are discarded).

    Attacks see the model in training mode, as the loss does, so BatchNorm uses batch statistics
    in both; their forward passes do not move the moving statistics.
    """
    return lambda x: apply(model, params, state, x, training=True)[0]


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Per-example softmax cross-entropy from logits and int labels."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def task_loss(
    model: keras.Model, params: Sequence[tf.Tensor], state: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor
) -> tuple[tf.Tensor, Params]:
    """Mean cross-entropy of the model over fast weights on (x, y), and the new state."""
    logits, new_state = apply(model, params, state, x, training=True)
    return tf.reduce_mean(cross_entropy(logits, y)), new_state


def multi_attack_loss(logits: tf.Tensor, y: tf.Tensor, num_attacks: int, reduce: str = "mean",
                      variation_weight: float = 0.0) -> tf.Tensor:
    """Mean over the examples of y of their cross-entropy over their versions' ``logits`` (one forward
    pass over ``num_attacks`` batches concatenated, one per attack, so one set of batch statistics),
    reduced per example by "mean" or "max", plus ``variation_weight`` times their ``logit_variation``."""
    per_example = tf.reshape(cross_entropy(logits, tf.tile(y, [num_attacks])), [num_attacks, -1])
    reduced = tf.reduce_max(per_example, 0) if reduce == "max" else tf.reduce_mean(per_example, 0)
    loss = tf.reduce_mean(reduced)
    if variation_weight:
        loss += variation_weight * logit_variation(tf.split(logits, num_attacks))
    return loss


def logit_variation(logits: Sequence[tf.Tensor]) -> tf.Tensor:
    """Mean over the examples of the largest L2 distance between two of their logit vectors (one
    tensor per attack, the same examples in the same order): the variation regularizer of Dai et
    al. (2022, "Formulating Robustness Against Unforeseen Attacks"), taken across threat models."""
    distances = [tf.sqrt(tf.reduce_sum(tf.square(a - b), -1) + 1e-12)
                 for i, a in enumerate(logits) for b in logits[i + 1:]]
    if not distances:
        raise ValueError(f"logit_variation needs logits of at least 2 attacks. Received: {len(logits)}")
    return tf.reduce_mean(tf.reduce_max(tf.stack(distances), 0))


def adapt(
    model: keras.Model,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    x: tf.Tensor,
    y: tf.Tensor,
    *,
    steps: int,
    learning_rate: float | Sequence[tf.Tensor],
    first_order: bool,
) -> tuple[Params, Params, tf.Tensor]:
    """``steps`` SGD steps on (x, y) from ``params``: (fast weights, new state, loss at ``params``).

    ``learning_rate`` is one number, or one scalar tensor per parameter (Meta-SGD's learned rates,
    which the outer tape differentiates too).

    With ``first_order`` the inner gradients are treated as constants (FOMAML); otherwise an outer
    tape differentiates through them (second-order MAML). Under a distribution strategy the inner
    gradients are averaged over the replicas: each replica holds a part of the support batch, and
    all take the step of the whole batch, as one device would.
    """
    fast = list(params)
    rates = [learning_rate] * len(fast) if isinstance(learning_rate, (int, float)) else list(learning_rate)
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(fast)
            loss, state = task_loss(model, fast, state, x, y)
        losses.append(loss)
        grads = cross_replica_mean(dense_gradients(tape.gradient(loss, fast), fast))
        if first_order:
            grads = [tf.stop_gradient(g) for g in grads]
        fast = [p - tf.cast(rate, p.dtype) * g for p, rate, g in zip(fast, rates, grads)]
    return fast, list(state), losses[0]


def cross_replica_mean(values: Params) -> Params:
    """``values`` averaged over the replicas of the current distribution strategy (unchanged
    without one, or in cross-replica context). Its gradient is again a cross-replica mean."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(values)
    return list(context.all_reduce(tf.distribute.ReduceOp.MEAN, list(values)))


def dense_gradients(grads: Sequence[tf.Tensor | None], params: Sequence[tf.Tensor]) -> Params:
    """Gradients as dense tensors: None (an unused parameter) becomes zeros, IndexedSlices dense."""
    return [tf.zeros_like(p) if g is None else tf.convert_to_tensor(g) for g, p in zip(grads, params)]
