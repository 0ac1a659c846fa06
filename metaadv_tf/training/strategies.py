"""`tf.distribute` strategies by name: default (one device), mirrored, multi_worker."""
from __future__ import annotations

import functools

import tensorflow as tf

from metaadv_tf.registry import check_choice
from metaadv_tf.training.config import STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name``; ``multi_worker`` reads the cluster from ``TF_CONFIG``.

    One instance per name and process: strategies own process-wide collective state, and two
    MirroredStrategy instances in one process clash in their collective ops.
    """
    check_choice("strategy", name, list(STRATEGIES))
    return _strategy(name)


@functools.lru_cache(maxsize=None)
def _strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        # without GPUs, mirror over the logical CPU devices (tf.config can split the CPU into several)
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def reduce_state(strategy: tf.distribute.Strategy, values) -> tf.Tensor:
    """One value from per-replica ones: the mean for floats (BatchNorm statistics stay in sync
    across replicas), the first replica's for integers (seed states advance alike everywhere)."""
    first = strategy.experimental_local_results(values)[0]
    if first.dtype.is_floating:
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None)
    return first


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the worker that writes checkpoints, summaries and results (the only one, or
    the chief, or worker 0 of a cluster without a chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)
