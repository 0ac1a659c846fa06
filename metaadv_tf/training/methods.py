"""Training methods behind one interface: what one step computes from a batch.

Every method turns (θ, state, clean batch, sampled task ids) into gradients for θ, a new
non-trainable state and a loss; `metaadv_tf.training.loop` applies them. Methods never mutate the
model: they run it over parameter tensors (`metaadv_tf.meta.functional`).

- ``standard``: cross-entropy on clean images.
- ``pgd_at`` (Madry et al.): on PGD-Linf examples, ``pgd_steps`` steps of 2.5·eps/steps, random start.
- ``fgsm_rs`` (Wong et al.): on one FGSM step of 1.25·eps from a uniform random start.
- ``avg`` / ``max`` (Tramèr & Boneh): every training attack on the whole batch; the loss is the
  mean over attacks, or the per-example worst loss over attacks.
- ``sat`` (E-AT, Croce & Hein 2022): one training attack per step, sampled (by ``task_weights``)
  with the checkpointed task sampler, on the whole batch: the cost of single-attack training.
- ``msd`` (Maini et al. 2020): multi steepest descent over the Lp training attacks' balls
  (`metaadv_tf.msd`); attacks without a norm (spatial) are combined with its examples as in
  ``max``.
- ``mat`` / ``fomaml``: MAML over attack tasks, second or first order (`metaadv_tf.meta.maml`).
- ``reptile``: Reptile over attack tasks (`metaadv_tf.meta.reptile`).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Sequence

import keras
import tensorflow as tf

from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.attacks import ModelFn, get_attack
from metaadv_tf.meta.attention import TaskAttention
from metaadv_tf.meta.inner_rates import LearnedInnerRates
from metaadv_tf.meta.functional import Params, apply, dense_gradients, model_fn, multi_attack_loss
from metaadv_tf.meta.maml import InnerLoop, TaskBatch, TaskConditioning, maml_task_losses
from metaadv_tf.meta.memory import ContinuedAttacks
from metaadv_tf.meta.reptile import reptile_direction
from metaadv_tf.meta.tasks import TaskDistribution
from metaadv_tf.models.precision import precision_twin
from metaadv_tf.models.task_layers import task_code_slot
from metaadv_tf.msd import MultiSteepestDescent
from metaadv_tf.training.config import META_METHODS, TrainConfig


@dataclasses.dataclass
class StepResult:
    """What one method step returns (per replica under a distribution strategy)."""

    grads: Params
    state: Params
    loss: tf.Tensor
    task_losses: tf.Tensor  # one per sampled task; empty for single-task methods
    task_weights: tf.Tensor  # each task's weight in the meta-loss (1/N, or attention's α)


# {"tasks": int32 [N], "codes": int32 [N]}: a step's task ids and task codes; with a perturbation
# memory also "indices": the batch images' training-set indices
Sample = dict
AttackFn = Callable[[ModelFn, tf.Tensor, tf.Tensor], tf.Tensor]  # an Attack, or MSD


class Method(abc.ABC):
    """A training method: gradients for θ from one batch."""

    def __init__(self, model: keras.Model, config: TrainConfig) -> None:
        self.model = model
        self.config = config
        self.attack_model = precision_twin(model, config.attack_precision)  # what attacks run through

    @property
    def num_sampled_tasks(self) -> int:
        """Tasks sampled per step (0 for methods without task sampling)."""
        return 0

    @property
    def modules(self) -> dict[str, tf.Module]:
        """The method's own trained state (e.g. task attention), by name, for the checkpoint."""
        return {}

    def sample_tasks(self, generator: tf.random.Generator) -> Sample:
        """Tasks for one step, drawn in cross-replica context so every replica agrees."""
        del generator
        empty = tf.zeros([0], tf.int32)
        return {"tasks": empty, "codes": empty}

    @abc.abstractmethod
    def step(self, params: Params, state: Params, x: tf.Tensor, y: tf.Tensor, sample: Sample
             ) -> StepResult:
        """Gradients, new state and loss for the batch (x, y)."""


class LossMethod(Method):
    """A method whose gradient is the gradient of a loss (all but Reptile)."""

    def step(self, params, state, x, y, sample):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, state, task_losses, task_weights = self.loss(params, state, x, y, sample, tape)
        grads, own_grads = tape.gradient(loss, (params, self.own_parameters))
        self.update_own(own_grads)
        return StepResult(dense_gradients(grads, params), state, loss, task_losses, task_weights)

    @property
    def own_parameters(self) -> list[tf.Variable]:
        """Variables of the method itself (not the model's) that the loss's gradient trains."""
        return []

    def update_own(self, grads: list[tf.Tensor | None]) -> None:
        """Trains ``own_parameters`` with their gradients (nothing to do without any)."""
        del grads

    @abc.abstractmethod
    def loss(self, params: Params, state: Params, x: tf.Tensor, y: tf.Tensor, sample: Sample,
             tape: tf.GradientTape) -> tuple[tf.Tensor, Params, tf.Tensor, tf.Tensor]:
        """(loss, new state, per-task losses, per-task weights) recorded on ``tape``."""


class AttackMethod(LossMethod):
    """Cross-entropy on inputs made by a list of attacks (none: clean), reduced over attacks."""

    def __init__(self, model: keras.Model, config: TrainConfig, attacks: Sequence[AttackFn],
                 reduce: str = "mean") -> None:
        super().__init__(model, config)
        self.attacks = list(attacks)
        self.reduce = reduce

    def examples(self, params: Params, state: Params, x: tf.Tensor, y: tf.Tensor, sample: Sample
                 ) -> list[tf.Tensor]:
        """The batches the loss is taken on: one per attack (the clean batch when none)."""
        del sample
        model = model_fn(self.attack_model, params, state)
        return [attack(model, x, y) for attack in self.attacks] or [x]

    def loss(self, params, state, x, y, sample, tape):
        with tape.stop_recording():
            inputs = self.examples(params, state, x, y, sample)
        logits, state = apply(self.model, params, state, tf.concat(inputs, 0), training=True)
        loss = multi_attack_loss(logits, y, len(inputs), self.reduce)
        task_losses = tf.fill([self.num_sampled_tasks], loss)  # sampled tasks share the batch
        return loss, state, task_losses, tf.ones_like(task_losses)


class SampledAttackMethod(AttackMethod):
    """``sat``: the whole batch attacked by one task sampled per step from ``tasks``."""

    def __init__(self, model: keras.Model, config: TrainConfig, tasks: TaskDistribution) -> None:
        super().__init__(model, config, [])
        self.tasks = tasks

    @property
    def num_sampled_tasks(self) -> int:
        return 1

    def sample_tasks(self, generator):
        tasks = self.tasks.sample(generator, 1)
        return {"tasks": tasks, "codes": tasks}

    def examples(self, params, state, x, y, sample):
        return [self.tasks.attack(sample["tasks"][0], model_fn(self.attack_model, params, state), x, y)]


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
        self.memory: ContinuedAttacks | None = None  # set by the trainer for a perturbation memory
        slot = task_code_slot(model)
        self.conditioning = TaskConditioning(slot, len(tasks)) if slot is not None else None

    @property
    def num_sampled_tasks(self) -> int:
        return self.config.meta.num_tasks

    def sample_tasks(self, generator):
        tasks = self.tasks.sample(generator, self.config.meta.num_tasks)
        unknown = generator.uniform(tasks.shape) < self.config.meta.unknown_task_rate
        codes = tf.where(unknown, len(self.tasks), tasks) if self.conditioning else tasks
        return {"tasks": tasks, "codes": codes}

    def split(self, x: tf.Tensor, y: tf.Tensor, sample: Sample) -> TaskBatch:
        """Splits a batch of num_tasks x (support + query) examples into per-task support/query."""
        per_task = self.support + self.query
        x = tf.reshape(x, [self.num_sampled_tasks, per_task, *x.shape[1:]])
        y = tf.reshape(y, [self.num_sampled_tasks, per_task])
        batch = TaskBatch(sample["tasks"], sample["codes"], x[:, : self.support], y[:, : self.support],
                          x[:, self.support:], y[:, self.support:])
        if "indices" in sample:
            indices = tf.reshape(sample["indices"], [self.num_sampled_tasks, per_task])
            batch.support_indices, batch.query_indices = indices[:, : self.support], indices[:, self.support:]
        return batch


class MamlMethod(MetaMethod, LossMethod):
    """MAML (``mat``, second order) and FOMAML: the mean, or attention-weighted, query loss.

    With ``pre_adaptation_weight`` w > 0 each task's term is L_query(θ'_i) + w · L_support(θ): the
    deployed θ is trained on the task's adversarial examples too, not only through θ'_i. With
    ``consistency_weight`` c > 0 it adds c · KL(f_θ'_i ‖ f_θ) on the query batch (θ'_i's
    predictions held constant): θ is pulled toward what adaptation reaches. ``cross_task_query``
    scores each task's adaptation on the next task's attack (MLDG), ``worst_case_query`` on the
    worst of every task's attack per example (plus ``variation_weight`` · their logit variation);
    ``worst_case_anchor`` scores θ's support loss the same way, against θ.
    ``learn_inner_rates`` learns each task's inner learning rates (Meta-SGD,
    `metaadv_tf.meta.inner_rates`).
    """

    def __init__(self, model: keras.Model, config: TrainConfig, tasks: TaskDistribution,
                 num_replicas: int = 1) -> None:
        super().__init__(model, config, tasks, num_replicas)
        meta = config.meta
        self.attention = TaskAttention(
            len(tasks), learning_rate=meta.attention_learning_rate,
            entropy_weight=meta.attention_entropy, num_replicas=num_replicas,
        ) if meta.task_attention else None
        self.rates = LearnedInnerRates(
            len(tasks), len(model.trainable_variables), meta.inner_learning_rate,
            meta.inner_rates_learning_rate, num_replicas,
        ) if meta.learn_inner_rates else None

    @property
    def modules(self):
        named = {"attention": self.attention, "inner_rates": self.rates}
        return {name: module for name, module in named.items() if module is not None}

    @property
    def own_parameters(self):
        return self.rates.parameters if self.rates else []

    def update_own(self, grads):
        if self.rates:
            self.rates.update(grads)

    def step(self, params, state, x, y, sample):
        result = super().step(params, state, x, y, sample)
        if self.attention:
            self.attention.update(sample["tasks"], result.task_losses)
        return result

    def loss(self, params, state, x, y, sample, tape):
        meta = self.config.meta
        terms = maml_task_losses(
            self.model, params, state, self.tasks, self.split(x, y, sample), self.inner, tape,
            self.adversarial, self.conditioning, self.memory, self.rates, meta.consistency_weight > 0,
            meta.cross_task_query, meta.worst_case_query, meta.variation_weight, meta.worst_case_anchor,
            self.attack_model,
        )
        task_losses, state = tf.stack(terms.query), terms.state
        objective = task_losses + meta.pre_adaptation_weight * tf.stack(terms.support)
        if terms.consistency:
            objective += meta.consistency_weight * tf.stack(terms.consistency)
        if self.attention:
            weights = tf.stop_gradient(self.attention.weights(sample["tasks"]))
        else:
            weights = tf.fill([self.num_sampled_tasks], 1.0 / self.num_sampled_tasks)
        return tf.reduce_sum(tf.cast(weights, objective.dtype) * objective), state, task_losses, weights


class ReptileMethod(MetaMethod):
    """Reptile: the pseudo-gradient θ − mean_i θ'_i."""

    def step(self, params, state, x, y, sample):
        direction, state, losses = reptile_direction(
            self.model, params, state, self.tasks, self.split(x, y, sample), self.inner,
            self.adversarial, self.conditioning, self.attack_model,
        )
        task_losses = tf.stack(losses)
        weights = tf.fill([self.num_sampled_tasks], 1.0 / self.num_sampled_tasks)
        return StepResult(direction, state, tf.reduce_mean(task_losses), task_losses, weights)


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
    if config.method == "sat":
        return SampledAttackMethod(model, config, tasks)
    if config.method == "msd":
        msd = MultiSteepestDescent(tuple(a for a in attacks if a.norm is not None))
        return AttackMethod(model, config, [msd, *(a for a in attacks if a.norm is None)], reduce="max")
    assert config.method in META_METHODS
    method_class = ReptileMethod if config.method == "reptile" else MamlMethod
    return method_class(model, config, tasks, num_replicas)
