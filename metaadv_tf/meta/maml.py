"""MAML over attack tasks (second order, or first order = FOMAML).

For each sampled task: the task's attack makes a support batch against θ, ``inner_steps`` SGD steps
on it give fast weights θ'_i, the attack makes a query batch against θ'_i, and the query loss of
f_θ'_i is the task's meta-loss. With a cross-task query, the query batch is made by the next
sampled task's attack instead (as MLDG, Li et al. 2018, meta-tests on a domain the inner step did
not see): adapting to one threat model is rewarded for what it does against another. The support
loss of θ itself (the first inner step's loss) comes back too, for outer objectives that also train
the deployed, unadapted θ. The caller combines the task losses (mean, or task attention) and
differentiates back to θ through the inner steps with its outer tape.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import keras
import tensorflow as tf

from metaadv_tf.meta.functional import (ModelFn, Params, adapt, apply, cross_entropy, model_fn,
                                        multi_attack_loss)
from metaadv_tf.meta.inner_rates import LearnedInnerRates
from metaadv_tf.meta.memory import ContinuedAttacks
from metaadv_tf.meta.tasks import TaskDistribution


@dataclasses.dataclass(frozen=True)
class InnerLoop:
    """Settings of the inner loop: SGD steps, their learning rate, and first or second order."""

    steps: int = 1
    learning_rate: float = 0.05
    first_order: bool = False


@dataclasses.dataclass
class TaskBatch:
    """One meta-step's tasks and their clean data (tensors shaped [num_tasks, examples, ...]).

    ``codes`` are the task codes the model is conditioned on (a task's index, or the unknown
    index ``len(tasks)``); they matter only for task-conditioned models. ``support_indices`` and
    ``query_indices`` are the images' training-set indices (for a perturbation memory), or None.
    """

    task_ids: tf.Tensor
    codes: tf.Tensor
    support_x: tf.Tensor
    support_y: tf.Tensor
    query_x: tf.Tensor
    query_y: tf.Tensor
    support_indices: tf.Tensor | None = None
    query_indices: tf.Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return int(self.task_ids.shape[0])


@dataclasses.dataclass(frozen=True)
class TaskConditioning:
    """Where a task-conditioned model keeps its task code in its state, and how many tasks."""

    slot: int
    num_tasks: int

    def condition(self, state: Sequence[tf.Tensor], code: tf.Tensor) -> Params:
        """``state`` with the one-hot of ``code`` as the model's current task."""
        state = list(state)
        state[self.slot] = tf.one_hot(code, self.num_tasks + 1, dtype=state[self.slot].dtype)
        return state

    def keep_code(self, state: Sequence[tf.Tensor], original: Sequence[tf.Tensor]) -> Params:
        """``state`` with the task code of ``original`` (undoing ``condition``)."""
        state = list(state)
        state[self.slot] = original[self.slot]
        return state


def per_task_states(state: Sequence[tf.Tensor], conditioning: TaskConditioning | None,
                    code: tf.Tensor) -> Params:
    """The state a task's forward passes start from (conditioned on ``code`` when the model is)."""
    return conditioning.condition(state, code) if conditioning else list(state)


class TaskLosses(NamedTuple):
    """Per task: the query loss of θ'_i, the support loss of θ, and (when asked) the consistency
    KL(f_θ'_i ‖ f_θ) on the query batch, θ'_i's predictions held constant; and the new state."""

    query: list[tf.Tensor]
    support: list[tf.Tensor]
    consistency: list[tf.Tensor]
    state: Params


def maml_task_losses(
    model: keras.Model,
    params: Sequence[tf.Tensor],
    state: Sequence[tf.Tensor],
    tasks: TaskDistribution,
    batch: TaskBatch,
    inner: InnerLoop,
    outer_tape: tf.GradientTape,
    adversarial: bool = True,
    conditioning: TaskConditioning | None = None,
    memory: ContinuedAttacks | None = None,
    rates: LearnedInnerRates | None = None,
    consistency: bool = False,
    cross_task_query: bool = False,
    worst_case_query: bool = False,
    variation_weight: float = 0.0,
    worst_case_anchor: bool = False,
    attack_model: keras.Model | None = None,
) -> TaskLosses:
    """Per task of ``batch``: query losses of θ'_i, support losses of θ, consistency terms (with
    ``consistency``, else empty); and the new state.

    ``adversarial=False`` takes the support and query batches as already adversarial (pools).
    With a ``memory``, attacks continue the images' remembered perturbations (the batch carries
    their indices). With ``rates``, each task's inner steps use its learned learning rates
    (Meta-SGD) instead of ``inner.learning_rate``. With ``cross_task_query``, task i's query batch is
    attacked by task (i + 1) mod n of the batch; with ``worst_case_query``, by every task of the
    distribution, each example scored by its largest loss (as ``max`` training, after adaptation;
    not with a memory), plus ``variation_weight`` times their logit variation across the tasks'
    attacks, and ``consistency`` is taken over every attack's version. With ``worst_case_anchor``,
    every task of the distribution attacks the support batch against θ: the support loss of θ scores
    each example by its worst loss (MAX's objective for the deployed θ) and the inner steps adapt on
    the task's own attack's version. Attacks run with the outer tape paused: their outputs are
    constants to the meta-gradient, and through ``attack_model`` (default: ``model``; a bfloat16
    twin, `metaadv_tf.models.precision_twin`) over the same weights. The returned state keeps the
    incoming task code (the model's default stays "unknown").
    """
    def against(weights: Sequence[tf.Tensor], state: Sequence[tf.Tensor]) -> ModelFn:
        return model_fn(attack_model or model, weights, state)

    def attack(task: tf.Tensor, target: ModelFn, x: tf.Tensor, y: tf.Tensor, indices: tf.Tensor | None
               ) -> tf.Tensor:
        with outer_tape.stop_recording():
            if memory is None:
                return tasks.attack(task, target, x, y)
            return memory.attack(tasks, task, target, x, y, indices)

    losses, support_losses, agreements, original = [], [], [], list(state)
    for i in range(batch.num_tasks):
        state = per_task_states(state, conditioning, batch.codes[i])
        support_x, query_x = batch.support_x[i], batch.query_x[i]
        anchor = None
        if adversarial and worst_case_anchor:
            with outer_tape.stop_recording():
                versions = worst_case_inputs(tasks, against(params, state), support_x, batch.support_y[i])
            logits, state = apply(model, params, state, tf.concat(versions, 0), training=True)
            anchor = multi_attack_loss(logits, batch.support_y[i], len(versions), reduce="max")
            support_x = tf.gather(tf.stack(versions), batch.task_ids[i])
        elif adversarial:
            support_x = attack(batch.task_ids[i], against(params, state), support_x, batch.support_y[i],
                               _row(batch.support_indices, i))
        fast, state, support_loss = adapt(
            model, params, state, support_x, batch.support_y[i], steps=inner.steps,
            learning_rate=rates.rates(batch.task_ids[i]) if rates else inner.learning_rate,
            first_order=inner.first_order,
        )
        support_losses.append(support_loss if anchor is None else anchor)
        if adversarial and worst_case_query:
            with outer_tape.stop_recording():
                versions = worst_case_inputs(tasks, against(fast, state), query_x, batch.query_y[i])
            query_x = tf.concat(versions, 0)
            logits, state = apply(model, fast, state, query_x, training=True)
            losses.append(multi_attack_loss(logits, batch.query_y[i], len(versions), reduce="max",
                                            variation_weight=variation_weight))
        else:
            if adversarial:
                query_task = batch.task_ids[(i + 1) % batch.num_tasks if cross_task_query else i]
                query_x = attack(query_task, against(fast, state), query_x, batch.query_y[i],
                                 _row(batch.query_indices, i))
            logits, state = apply(model, fast, state, query_x, training=True)
            losses.append(tf.reduce_mean(cross_entropy(logits, batch.query_y[i])))
        if consistency:
            deployed, state = apply(model, params, state, query_x, training=True)
            agreements.append(prediction_kl(tf.stop_gradient(logits), deployed))
    return TaskLosses(losses, support_losses, agreements,
                      conditioning.keep_code(state, original) if conditioning else state)


def worst_case_inputs(tasks: TaskDistribution, target: ModelFn, x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
    """Every task's adversarial examples of (x, y) against ``target``, in task order."""
    return [task.attack(target, x, y) for task in tasks.tasks]


def prediction_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
    """Mean KL(softmax(teacher) ‖ softmax(student)) over the batch."""
    teacher = tf.nn.log_softmax(teacher_logits)
    return tf.reduce_mean(tf.reduce_sum(tf.exp(teacher) * (teacher - tf.nn.log_softmax(student_logits)), -1))


def _row(indices: tf.Tensor | None, i: int) -> tf.Tensor | None:
    """Row ``i`` of per-task ``indices``, or None."""
    return None if indices is None else indices[i]
