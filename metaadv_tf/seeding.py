"""Seeds of the attacks' stateless random numbers.

An attack's draws must be reproducible (the same seed and images give the same examples) and,
when the attack is a training task, differ from batch to batch: a fixed ``[seed, 0]`` would give
every batch position the same draws at every step. ``input_seed`` mixes a checksum of the images
into the seed, which meets both.
"""
from __future__ import annotations

import tensorflow as tf


def input_seed(seed: int, x: tf.Tensor) -> tf.Tensor:
    """A stateless-op seed (int32 [2]) from ``seed`` and the bits of the sum of ``x``."""
    checksum = tf.bitcast(tf.reduce_sum(tf.cast(x, tf.float32)), tf.int32)
    return tf.stack([tf.constant(seed, tf.int32), checksum])
