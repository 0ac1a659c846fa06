"""Training methods behind one interface: what one step computes from a batch.

Every method turns (θ, state, clean batch, sampled task ids) into gradients for θ, a new
non-trainable state and a loss; `metaadv_tf.training.loop` applies them. Methods never mutate the
model: they run it over parameter tensors (`metaadv_tf.meta.functional`).

- ``standard``: cross-entropy on clean images.
- ``pgd_at`` (Madry et al.): on PGD-Linf examples, ``pgd_steps`` steps of 2.5·eps/steps, random start.
- ``fgsm_rs`` (Wong et al.): on one FGSM step of 1.25·eps from a uniform random start.
- ``avg`` / ``max`` (Tramèr & Boneh): every training attack on the whole batch; the loss is the
  mean over attacks, or the per-example worst loss over attacks.
- ``mat`` / ``fomaml``: MAML over attack tasks, second or first order (`metaadv_tf.meta.maml`).
- ``reptile``: Reptile over attack tasks (`metaadv_tf.meta.reptile`).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Sequence

import keras
import tensorflow as tf

from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.attacks import Attack, get_attack
from metaadv_tf.meta.functional import Params, apply, cross_entropy, dense_gradients, model_fn
from metaadv_tf.meta.maml import InnerLoop, TaskBatch, maml_task_losses
from metaadv_tf.meta.reptile import reptile_direction
from metaadv_tf.meta.tasks import TaskDistribution
from metaadv_tf.training.config import META_METHODS, TrainConfig


@dataclasses.dataclass
class StepResult:
    """What one method step returns (per replica under a distribution strategy)."""

    grads: Params
    state: Params
    loss: tf.Tensor
    task_losses: tf.Tensor  # one per sampled task; empty for single-task methods


class Method(abc.ABC):
    """A training method: gradients for θ from one batch."""

    def __init__(self, model: keras.Model, config: TrainConfig) -> None:
        self.model = model
        self.config = config

    @property
    def num_sampled_tasks(self) -> int:
        """Tasks sampled per step (0 for methods without task sampling)."""
        return 0

    def sample_tasks(self, generator: tf.random.Generator) -> tf.Tensor:
        """Task ids for one step, drawn in cross-replica context so every replica agrees."""
        del generator
        return tf.zeros([0], tf.int32)

    @abc.abstractmethod
    def step(self, params: Params, state: Params, x: tf.Tensor, y: tf.Tensor, task_ids: tf.Tensor
             ) -> StepResult:
        """Gradients, new state and loss for the batch (x, y)."""


class LossMethod(Method):
    """A method whose gradient is the gradient of a loss (all but Reptile)."""

    def step(self, params, state, x, y, task_ids):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, state, task_losses = self.loss(params, state, x, y, task_ids, tape)
        grads = dense_gradients(tape.gradient(loss, params), params)
        return StepResult(grads, state, loss, task_losses)

    @abc.abstractmethod
    def loss(self, params: Params, state: Params, x: tf.Tensor, y: tf.Tensor, task_ids: tf.Tensor,
             tape: tf.GradientTape) -> tuple[tf.Tensor, Params, tf.Tensor]:
        """(loss, new state, per-task losses) recorded on ``tape``."""


class AttackMethod(LossMethod):
    """Cross-entropy on inputs made by a list of attacks (none: clean), reduced over attacks."""

    def __init__(self, model: keras.Model, config: TrainConfig, attacks: Sequence[Attack],
                 reduce: str = "mean") -> None:
        super().__init__(model, config)
        self.attacks = list(attacks)
        self.reduce = reduce

    def loss(self, params, state, x, y, task_ids, tape):
        with tape.stop_recording():
            inputs = [attack(model_fn(self.model, params, state), x, y) for attack in self.attacks] or [x]
        # one forward pass over all attacks' examples: one set of batch statistics, one state update
        logits, state = apply(self.model, params, state, tf.concat(inputs, 0), training=True)
        per_example = tf.reshape(cross_entropy(logits, tf.tile(y, [len(inputs)])), [len(inputs), -1])
        reduced = tf.reduce_max(per_example, 0) if self.reduce == "max" else tf.reduce_mean(per_example, 0)
        return tf.reduce_mean(reduced), state, tf.zeros([0])


class MetaMethod(Method):
    """Shared by MAML, FOMAML and Reptile: the task distribution and the per-task batch split."""

    def __init__(self, model: keras.Model, config: TrainConfig, tasks: TaskDistribution,
                 num_replicas: int = 1) -> None:
        super().__init__(model, config)
        meta = config.meta
        self.tasks = tasks
        tasks.check_batch_size(meta.num_tasks)
        for name in ("support_size", "query_size"):
            if getattr(meta, name) % num_replicas:
                raise ValueError(
                    f"{name}={getattr(meta, name)} must be divisible by the {num_replicas} replicas."
                )
        self.support = meta.support_size // num_replicas
        self.query = meta.query_size // num_replicas
        self.inner = InnerLoop(meta.inner_steps, meta.inner_learning_rate, config.method == "fomaml")
        self.adversarial = True  # False when batches come from adversarial pools

    @property
    def num_sampled_tasks(self) -> int:
        return self.config.meta.num_tasks

    def sample_tasks(self, generator):
        return self.tasks.sample(generator, self.config.meta.num_tasks)

    def split(self, x: tf.Tensor, y: tf.Tensor) -> TaskBatch:
        """Splits a batch of num_tasks x (support + query) examples into per-task support/query."""
        per_task = self.support + self.query
        x = tf.reshape(x, [self.num_sampled_tasks, per_task, *x.shape[1:]])
        y = tf.reshape(y, [self.num_sampled_tasks, per_task])
        return TaskBatch(x[:, : self.support], y[:, : self.support], x[:, self.support:], y[:, self.support:])


class MamlMethod(MetaMethod, LossMethod):
    """MAML (``mat``, second order) and FOMAML: the mean query loss over the task batch."""

    def loss(self, params, state, x, y, task_ids, tape):
        losses, state = maml_task_losses(
            self.model, params, state, self.tasks, task_ids, self.split(x, y), self.inner, tape,
            self.adversarial,
        )
        task_losses = tf.stack(losses)
        return tf.reduce_mean(task_losses), state, task_losses


class ReptileMethod(MetaMethod):
    """Reptile: the pseudo-gradient θ − mean_i θ'_i."""

    def step(self, params, state, x, y, task_ids):
        direction, state, losses = reptile_direction(
            self.model, params, state, self.tasks, task_ids, self.split(x, y), self.inner,
            self.adversarial,
        )
        task_losses = tf.stack(losses)
        return StepResult(direction, state, tf.reduce_mean(task_losses), task_losses)


def build_method(model: keras.Model, config: TrainConfig, num_replicas: int = 1) -> Method:
    """The method ``config.method`` for ``model``."""
    eps = config.eps
    if config.method == "standard":
        return AttackMethod(model, config, [])
    if config.method == "pgd_at":
        steps = config.pgd_steps
        pgd = get_attack("pgd_linf", eps=eps, steps=steps, step_size=2.5 * eps / steps, rand_init=True)
        return AttackMethod(model, config, [pgd])
    if config.method == "fgsm_rs":
        fgsm_rs = get_attack("pgd_linf", eps=eps, steps=1, step_size=1.25 * eps, rand_init=True)
        return AttackMethod(model, config, [fgsm_rs])
    attacks = parse_attacks(config.train_attacks)
    tasks = TaskDistribution(attacks, config.meta.task_weights)  # checks the attacks compile
    if config.method in ("avg", "max"):
        return AttackMethod(model, config, attacks, reduce=config.method)
    assert config.method in META_METHODS
    method_class = ReptileMethod if config.method == "reptile" else MamlMethod
    return method_class(model, config, tasks, num_replicas)
