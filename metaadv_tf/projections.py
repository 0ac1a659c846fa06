"""Lp geometry shared by every attack: norms per example, and projection into an eps ball and [0, 1].

Norms are ``np.inf``, ``2.0`` or ``1.0``. Every function works on a batch [N, ...] with the
batch size unknown at trace time, so attacks may call them on a gathered sub-batch.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_TINY = 1e-12


def flat(delta: tf.Tensor) -> tf.Tensor:
    """``delta`` as [N, D]."""
    return tf.reshape(delta, [tf.shape(delta)[0], -1])


def lp_norm(delta: tf.Tensor, norm: float) -> tf.Tensor:
    """Per-example ``||delta||_norm`` ([N])."""
    values = flat(delta)
    if norm == np.inf:
        return tf.reduce_max(tf.abs(values), axis=1)
    if norm == 2:
        return tf.sqrt(tf.reduce_sum(tf.square(values), axis=1))
    if norm == 1:
        return tf.reduce_sum(tf.abs(values), axis=1)
    raise ValueError(f"norm must be np.inf, 2 or 1. Received: norm={norm!r}")


def per_example(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """[N] values reshaped to broadcast over ``like`` ([N, ...])."""
    return tf.reshape(values, tf.concat([tf.shape(like)[:1], tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def clip_to_ball(delta: tf.Tensor, norm: float, eps: float | tf.Tensor) -> tf.Tensor:
    """``delta`` moved into the ``norm`` ball of radius ``eps``: Linf clips each coordinate, L2
    and L1 scale down the examples outside the ball (a valid point of the ball, and for L2 its
    nearest one)."""
    if norm == np.inf:
        return tf.clip_by_value(delta, -eps, eps)
    size = lp_norm(delta, norm)
    factor = tf.minimum(1.0, eps / tf.maximum(size, _TINY))
    return delta * per_example(factor, delta)


def project(x: tf.Tensor, x_adv: tf.Tensor, norm: float, eps: float | tf.Tensor) -> tf.Tensor:
    """``x_adv`` moved into the ``norm`` ball of radius ``eps`` around ``x``, then into [0, 1].

    Clipping to [0, 1] after the ball keeps ``x_adv`` in the ball, since ``x`` is in [0, 1]
    and clipping only shrinks each coordinate of the perturbation.
    """
    return tf.clip_by_value(x + clip_to_ball(x_adv - x, norm, eps), 0.0, 1.0)


def within_ball(x: tf.Tensor, x_adv: tf.Tensor, norm: float, eps: float) -> tf.Tensor:
    """Per example, whether ``||x_adv - x||_norm <= eps`` (bool [N])."""
    return lp_norm(x_adv - x, norm) <= eps


def project_l1_ball(delta: tf.Tensor, eps: float | tf.Tensor) -> tf.Tensor:
    """The Euclidean projection of each example of ``delta`` onto the L1 ball of radius ``eps``
    (Duchi et al. 2008: soft-thresholding at the level found by sorting)."""
    values = flat(delta)
    magnitude = tf.abs(values)
    ordered = tf.sort(magnitude, axis=1, direction="DESCENDING")
    cumulative = tf.cumsum(ordered, axis=1)
    ranks = tf.range(1, tf.shape(values)[1] + 1, dtype=values.dtype)
    active = ordered * ranks > cumulative - eps
    count = tf.maximum(tf.reduce_sum(tf.cast(active, tf.int32), axis=1), 1)
    level = (tf.gather(cumulative, count - 1, batch_dims=1) - eps) / tf.cast(count, values.dtype)
    shrunk = tf.sign(values) * tf.nn.relu(magnitude - tf.maximum(level, 0.0)[:, None])
    inside = tf.reduce_sum(magnitude, axis=1) <= eps
    return tf.reshape(tf.where(inside[:, None], values, shrunk), tf.shape(delta))


def project_l1_box(x: tf.Tensor, x_adv: tf.Tensor, eps: float | tf.Tensor) -> tf.Tensor:
    """The exact Euclidean projection of ``x_adv`` onto the L1 ball of radius ``eps`` around ``x``
    intersected with [0, 1] (Croce & Hein 2021, "Mind the box", as their ``L1_projection``).

    Per coordinate, the perturbation is ``sign(d) * clip(|d| - level, 0, room)``, where ``d`` is
    ``x_adv - x``, ``room`` the distance from ``x`` to the box edge in the direction of ``d``,
    and ``level >= 0`` the smallest threshold that brings the L1 norm within ``eps``. The L1 norm
    is piecewise linear in the level, with breakpoints at ``|d|`` and ``|d| - room``: the level
    is found by sorting them and interpolating on the segment where the norm crosses ``eps``.
    """
    center, delta = flat(x), flat(x_adv - x)
    magnitude = tf.abs(delta)
    room = tf.where(delta > 0, 1.0 - center, center)
    points = tf.concat([magnitude, magnitude - room], axis=1)
    # Lowering the level past |d| frees a coordinate, past |d| - room it saturates at room.
    slopes = tf.concat([tf.ones_like(delta), -tf.ones_like(delta)], axis=1)
    order = tf.argsort(points, axis=1, direction="DESCENDING")
    points, slopes = tf.gather(points, order, batch_dims=1), tf.gather(slopes, order, batch_dims=1)
    moving = tf.cumsum(slopes, axis=1)  # coordinates that grow as the level drops below each point
    sizes = tf.cumsum((points[:, :-1] - points[:, 1:]) * moving[:, :-1], axis=1)
    sizes = tf.concat([tf.zeros_like(sizes[:, :1]), sizes], axis=1)  # the L1 norm at each point
    last = tf.maximum(tf.reduce_sum(tf.cast(sizes <= eps, tf.int32), axis=1) - 1, 0)
    at_last = lambda values: tf.gather(values, last, batch_dims=1)
    level = at_last(points) - (eps - at_last(sizes)) / tf.maximum(at_last(moving), 1.0)
    kept = tf.clip_by_value(magnitude - tf.maximum(level, 0.0)[:, None], 0.0, room)
    return x + tf.reshape(tf.sign(delta) * kept, tf.shape(x))
