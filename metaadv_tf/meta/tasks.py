"""Tasks and the task distribution p(T): which attacks a meta-step adapts to.

A task is an attack with its settings and an index (used by task encoding and Meta-BatchNorm).
Sampling happens inside the compiled step from a ``tf.random.Generator`` whose state is
checkpointed, so a resumed run draws the same task batches as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import attack_labels
from metaadv_tf.meta.functional import ModelFn
from metaadv_tf.validation import check_positive, check_positive_int

if TYPE_CHECKING:
    from metaadv_tf.attacks import Attack


@dataclasses.dataclass(frozen=True)
class Task:
    """An attack used as a meta-learning task; ``index`` is its position in the distribution."""

    name: str
    attack: Attack
    index: int


class TaskDistribution:
    """A weighted distribution over attack tasks, sampled without replacement into task batches."""

    def __init__(self, attacks: Sequence[Attack], weights: Sequence[float] | None = None) -> None:
        if not attacks:
            raise ValueError("A task distribution needs at least one attack. Received: []")
        names = attack_labels(list(attacks))
        weights = [1.0] * len(attacks) if weights is None else list(weights)
        if len(weights) != len(attacks):
            raise ValueError(
                f"Need one weight per task: {len(attacks)} tasks {names}, received {len(weights)} weights."
            )
        for weight in weights:
            check_positive("task weight", weight)
        self.tasks = [Task(name, a, i) for i, (name, a) in enumerate(zip(names, attacks))]
        self.probabilities = np.asarray(weights, np.float64) / np.sum(weights)

    @property
    def names(self) -> list[str]:
        """Task names in index order."""
        return [task.name for task in self.tasks]

    def __len__(self) -> int:
        return len(self.tasks)

    def check_batch_size(self, num_tasks: int) -> int:
        """Raises ValueError unless 1 <= num_tasks <= number of tasks."""
        check_positive_int("num_tasks", num_tasks)
        if num_tasks > len(self):
            raise ValueError(
                f"num_tasks={num_tasks} is larger than the number of training attacks"
                f" ({len(self)}: {', '.join(self.names)}); tasks are sampled without replacement."
            )
        return num_tasks

    def sample(self, generator: tf.random.Generator, num_tasks: int) -> tf.Tensor:
        """Draws ``num_tasks`` distinct task indices (int32), weighted (Gumbel top-k)."""
        logits = tf.math.log(tf.constant(self.probabilities, tf.float32))
        uniform = generator.uniform([len(self)], minval=1e-12, maxval=1.0)
        return tf.math.top_k(logits - tf.math.log(-tf.math.log(uniform)), k=num_tasks).indices

    def attack(self, task_index: tf.Tensor, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Runs the attack of task ``task_index`` (a tensor: one trace serves every task)."""
        return self.dispatch(task_index, lambda task: lambda: task.attack(model_fn, x, y))

    def dispatch(self, task_index: tf.Tensor, branch: Callable[[Task], Callable[[], tf.Tensor]]
                 ) -> tf.Tensor:
        """Runs ``branch(task)()`` for task ``task_index`` (a tensor: a switch over every task's
        branch, one trace)."""
        branches = [branch(task) for task in self.tasks]
        if len(branches) == 1:
            return branches[0]()
        return tf.switch_case(tf.cast(task_index, tf.int32), branches)
