"""Auto-PGD (Croce & Hein 2020; L1: Croce & Hein 2021) in TensorFlow, as ``fra31/auto-attack``.

APGD is PGD with a step-size schedule instead of a step size. Linf and L2: the step starts at
2 eps, with momentum 0.75; at checkpoints at fractions 0.22, 0.41, 0.57, 0.70, ... of the
iterations (p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)), an example's step is halved, and
it restarts from its best point, when at most ``rho`` of the steps since the last checkpoint
raised its loss (``<=``, as the reference code), or when its step was not halved at the last
checkpoint and its best loss has not risen since. L1 (APGD-L1, "Mind the box"): each step moves
the top-k coordinates of the gradient by their signs, scaled to L1 size ``step``, and projects
onto the L1 ball intersected with [0, 1]; every 4 % of the iterations, k follows the sparsity of
the best point, and the step (from eps, within [eps / 10, eps]) resets to eps with a restart
from the best point where that sparsity fell by 5 %, and shrinks by 1.5 elsewhere.

Losses: cross-entropy, DLR ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` (``apgd_dlr``), and
targeted DLR ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (``apgd_t``, one run per target
class: the classes of highest clean logits other than ``y``). Restarts and target classes run
in turn on the examples no earlier run has misclassified; an example the model already
misclassifies is returned as it is. Per example, the result is the adversarial point found, else
the point of highest loss. Restart ``r`` of target ``t`` starts from a stateless random point
seeded ``(seed + r, t)``, so a seed fixes the result. The iterations and the runs are
``tf.while_loop`` s: the attack traces once and accepts a batch of unknown size.

``largereps`` (L1 only, as AutoAttack's ``use_largereps``, which its standard L1 version turns
on): each run goes through three stages, at 3 eps, 2 eps and eps, of ``ceil(0.3 steps)``,
``ceil(0.3 steps)`` and the remaining iterations (``decr_eps_pgd`` in ``autopgd_base.py``). The
random start is drawn in the 3 eps ball; each later stage starts from the previous stage's point
of highest loss, projected into its own ball, and every stage sets its L1 top-k from the sparsity
of its start. Only the last stage, within eps, may find an adversarial example: earlier stages
keep every example running, as a point misclassified beyond eps does not count.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import ModelFn
from metaadv_tf.projections import per_example, flat, lp_norm, project, project_l1_box

Loss = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
"""``loss(logits, y, target) -> [N]``, per example, to maximize (untargeted: ignores ``target``)."""

MOMENTUM = 0.75
_TINY = 1e-12
# L1 schedule ("Mind the box"): the top-k fraction starts at 0.2; a checkpoint every 4 % of the
# iterations; a sparsity drop below 0.95 resets the step, else it shrinks by 1.5, down to eps / 10.
_L1_START_FRACTION, _L1_WINDOW, _L1_SPARSER = 0.2, 0.04, 0.95
_L1_SHRINK, _L1_MIN_STEP = 1.5, 0.1
# largereps: the stages' eps, as multiples of eps; the first two take this fraction of the steps.
_LARGEREPS_FACTORS, _LARGEREPS_FRACTION = (3.0, 2.0, 1.0), 0.3


def apgd_ce(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    restarts: int, rho: float, seed: int, largereps: bool = False,
) -> tf.Tensor:
    """APGD on the cross-entropy loss (APGD-CE)."""
    stages = _stages(_Config(norm, eps, steps, rho), largereps)
    return _search(model_fn, x, y, _cross_entropy, y[:, None], stages, restarts, seed)


def apgd_dlr(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    restarts: int, rho: float, seed: int, largereps: bool = False,
) -> tf.Tensor:
    """APGD on the difference-of-logits-ratio loss (APGD-DLR)."""
    stages = _stages(_Config(norm, eps, steps, rho), largereps)
    return _search(model_fn, x, y, _dlr, y[:, None], stages, restarts, seed)


def apgd_t(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, steps: int,
    restarts: int, rho: float, seed: int, target_classes: int, largereps: bool = False,
) -> tf.Tensor:
    """APGD on the targeted DLR loss (APGD-T), towards ``target_classes`` classes in turn."""
    targets = top_other_classes(model_fn(x), y, target_classes)
    stages = _stages(_Config(norm, eps, steps, rho), largereps)
    return _search(model_fn, x, y, _targeted_dlr, targets, stages, restarts, seed)


def top_other_classes(logits: tf.Tensor, y: tf.Tensor, count: int) -> tf.Tensor:
    """Per example, the ``count`` classes other than ``y`` of highest logits, highest first
    ([N, min(count, classes - 1)])."""
    return tf.math.top_k(_without(logits, y), min(count, logits.shape[-1] - 1)).indices


@dataclasses.dataclass(frozen=True)
class _Config:
    norm: float
    eps: float
    steps: int
    rho: float
    # L1: the top-k fraction starts from the sparsity of the start point (AutoAttack with an
    # ``x_init``), not at 20 %.
    sparsity_from_start: bool = False

    @property
    def max_step(self) -> float:
        """The initial step: 2 eps (Linf, L2), eps (L1)."""
        return (1.0 if self.norm == 1 else 2.0) * self.eps

    def windows(self) -> np.ndarray:
        """Per iteration, the iterations since the last checkpoint if it is a checkpoint, else 0."""
        if self.norm == 1:
            length, shrink, shortest = max(int(_L1_WINDOW * self.steps), 1), 0, 1
        else:
            length = max(int(0.22 * self.steps), 1)
            shrink, shortest = max(int(0.03 * self.steps), 1), max(int(0.06 * self.steps), 1)
        windows, end = np.zeros(self.steps, np.int32), length - 1
        while end < self.steps:
            windows[end] = length
            length = max(length - shrink, shortest)
            end += length
        return windows


def _stages(config: _Config, largereps: bool) -> list[_Config]:
    """The configs of a run's stages: ``config`` alone, or AutoAttack's ``use_largereps`` stages
    (3 eps, 2 eps, eps; see the module docstring). Raises ValueError for largereps with Linf, L2."""
    if not largereps:
        return [config]
    if config.norm != 1:
        raise ValueError(f"largereps applies to norm 1 only. Received: largereps={largereps!r}"
                         f" with norm={config.norm!r}")
    early = math.ceil(_LARGEREPS_FRACTION * config.steps)
    # As AutoAttack; 1 step (where AutoAttack fails) runs 1 + 1 + 0 iterations.
    steps = (early, early, max(config.steps - 2 * early, 0))
    return [
        dataclasses.replace(config, eps=factor * config.eps, steps=count, sparsity_from_start=True)
        for factor, count in zip(_LARGEREPS_FACTORS, steps)
    ]


class _State(NamedTuple):
    """A run's loop state for the examples it still attacks: [N] or shaped like the images."""

    x_adv: tf.Tensor  # the current point
    x_prev: tf.Tensor  # the point before it (for momentum)
    grad: tf.Tensor  # the loss gradient at x_adv
    loss: tf.Tensor  # the loss at x_adv
    x_best: tf.Tensor
    grad_best: tf.Tensor
    loss_best: tf.Tensor
    step: tf.Tensor
    # Linf, L2: (steps that raised the loss since the checkpoint, best loss then, halved then);
    # L1: (top-k fraction, nonzero coordinates of the best point at the checkpoint).
    schedule: tuple[tf.Tensor, ...]


class _Rows(NamedTuple):
    """The examples a run still attacks."""

    index: tf.Tensor  # their rows in the run's batch
    x: tf.Tensor
    y: tf.Tensor
    target: tf.Tensor


class _Result(NamedTuple):
    """A run's outcome per example of its batch."""

    x_adv: tf.Tensor  # the first adversarial point found, else the point of highest loss
    fooled: tf.Tensor
    loss: tf.Tensor  # the loss at x_adv


def _search(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, loss: Loss, targets: tf.Tensor,
    stages: list[_Config], restarts: int, seed: int,
) -> tf.Tensor:
    """Runs APGD once per restart and target (column of ``targets``), each on the examples still
    classified correctly; returns the first adversarial point per example, else the best one."""
    x = tf.stop_gradient(x)
    runs = targets.shape[1] * restarts

    def body(run, x_out, loss_out, robust):
        index = tf.where(robust)[:, 0]
        target = tf.gather(tf.gather(targets, run // restarts, axis=1), index)
        rows = _Rows(tf.range(tf.size(index)), tf.gather(x, index), tf.gather(y, index), target)
        run_seed = tf.stack([seed + run % restarts, run // restarts])
        result = _run_stages(model_fn, rows, loss, stages, run_seed)
        previous = tf.gather(loss_out, index)
        replace = result.fooled | (result.loss > previous)
        kept = _select(replace, result.x_adv, tf.gather(x_out, index))
        scatter = lambda values, new: tf.tensor_scatter_nd_update(values, index[:, None], new)
        return (run + 1, scatter(x_out, kept), scatter(loss_out, tf.maximum(result.loss, previous)),
                scatter(robust, ~result.fooled))

    start = (tf.constant(0), x, tf.fill(tf.shape(y), -np.inf), _predict(model_fn, x) == y)
    return tf.while_loop(
        lambda run, *state: (run < runs) & tf.reduce_any(state[-1]), body, start
    )[1]


def _run_stages(
    model_fn: ModelFn, rows: _Rows, loss: Loss, stages: list[_Config], seed: tf.Tensor
) -> _Result:
    """One APGD run from a random start in the first stage's ball, through ``stages`` in turn,
    each from the previous stage's best point projected into its ball (L1); the last stage's
    result."""
    x_start = _random_start(stages[0], rows.x, seed)
    for stage, following in zip(stages, stages[1:]):
        x_best = _run(model_fn, rows, loss, stage, x_start, last=False).x_adv
        x_start = project_l1_box(rows.x, x_best, following.eps)
    return _run(model_fn, rows, loss, stages[-1], x_start, last=True)


def _run(
    model_fn: ModelFn, rows: _Rows, loss: Loss, config: _Config, x_start: tf.Tensor, last: bool
) -> _Result:
    """One APGD run of ``config.steps`` iterations from ``x_start``. In the ``last`` stage, an
    example leaves the run at the first point the model misclassifies, and the run ends when
    none is left; before it (largereps), every example runs to the end, and the result is its
    point of highest loss."""

    def evaluate(x_adv: tf.Tensor, rows: _Rows) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = tf.cast(model_fn(x_adv), tf.float32)
            losses = loss(logits, rows.y, rows.target)
        wrong = _argmax(logits) != rows.y
        return losses, tape.gradient(losses, x_adv), wrong if last else tf.zeros_like(wrong)

    windows = tf.constant(config.windows())

    def body(i, rows, state, result):
        x_adv = _ascend(config, rows.x, state, first=tf.equal(i, 0))
        losses, grad, wrong = evaluate(x_adv, rows)
        better = losses > state.loss_best
        state = _State(
            x_adv, state.x_adv, grad, losses, _select(better, x_adv, state.x_best),
            _select(better, grad, state.grad_best), tf.where(better, losses, state.loss_best),
            state.step, _observe(config, state.schedule, state.loss, losses),
        )
        rows, state, result = _leave(result, rows, state, wrong)
        window = windows[i]
        checkpoint = lambda: _checkpoint(config, rows.x, state, window)
        state = tf.cond(window > 0, checkpoint, lambda: state)
        return i + 1, rows, state, result

    losses, grad, wrong = evaluate(x_start, rows)
    steps = tf.fill(tf.shape(losses), config.max_step)
    state = _State(
        x_start, x_start, grad, losses, x_start, grad, losses, steps,
        _start_schedule(config, losses, rows.x, x_start),
    )
    result = _Result(rows.x, tf.zeros_like(wrong), tf.fill(tf.shape(losses), -np.inf))
    _, rows, state, result = tf.while_loop(
        lambda i, rows, *_: (i < config.steps) & (tf.size(rows.index) > 0), body,
        (tf.constant(0), *_leave(result, rows, state, wrong)),
    )
    return _write(result, rows.index, state.x_best, tf.zeros_like(rows.y, tf.bool), state.loss_best)


def _leave(
    result: _Result, rows: _Rows, state: _State, fooled: tf.Tensor
) -> tuple[_Rows, _State, _Result]:
    """Records the ``fooled`` examples' current points as found, and drops them from the run."""
    index, x_adv, loss = (tf.boolean_mask(t, fooled) for t in (rows.index, state.x_adv, state.loss))
    result = _write(result, index, x_adv, tf.ones_like(index, tf.bool), loss)
    rows, state = tf.nest.map_structure(lambda t: tf.boolean_mask(t, ~fooled), (rows, state))
    return rows, state, result


def _write(
    result: _Result, index: tf.Tensor, x_adv: tf.Tensor, fooled: tf.Tensor, loss: tf.Tensor
) -> _Result:
    """``result`` with rows ``index`` replaced."""
    return _Result(*(
        tf.tensor_scatter_nd_update(old, index[:, None], new)
        for old, new in zip(result, (x_adv, fooled, loss))
    ))


def _random_start(config: _Config, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random point of the eps ball in [0, 1]: on the sphere then clipped (Linf, L2), or a
    Gaussian point projected onto the ball and box (L1)."""
    if config.norm == np.inf:
        noise = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
    else:
        noise = tf.random.stateless_normal(tf.shape(x), seed)
    if config.norm == 1:
        return project_l1_box(x, x + noise, config.eps)
    return tf.clip_by_value(x + config.eps * _normalize(noise, config.norm), 0.0, 1.0)


def _ascend(config: _Config, x: tf.Tensor, state: _State, first: tf.Tensor) -> tf.Tensor:
    """The next point: a projected step up the loss, with momentum (Linf, L2; none the first
    time) or a sparse step (L1)."""
    step = per_example(state.step, x)
    if config.norm == 1:
        direction = _sparse_sign(state.grad, state.schedule[0])
        return project_l1_box(x, state.x_adv + step * direction, config.eps)
    z = state.x_adv + step * _normalize(state.grad, config.norm)
    z = project(x, z, config.norm, config.eps)
    alpha = tf.where(first, 1.0, MOMENTUM)
    moved = state.x_adv + alpha * (z - state.x_adv) + (1.0 - alpha) * (state.x_adv - state.x_prev)
    return project(x, moved, config.norm, config.eps)


def _start_schedule(
    config: _Config, loss: tf.Tensor, x: tf.Tensor, x_start: tf.Tensor
) -> tuple[tf.Tensor, ...]:
    if config.norm == 1 and config.sparsity_from_start:
        nonzero = _nonzero(x_start - x)
        return nonzero / _features(x) / _L1_SHRINK, nonzero
    if config.norm == 1:
        return tf.fill(tf.shape(loss), _L1_START_FRACTION), tf.fill(tf.shape(loss), _features(x))
    return tf.zeros_like(loss), loss, tf.ones_like(loss, tf.bool)


def _observe(
    config: _Config, schedule: tuple[tf.Tensor, ...], loss: tf.Tensor, new_loss: tf.Tensor
) -> tuple[tf.Tensor, ...]:
    """Linf, L2: counts the step if it raised the loss."""
    if config.norm == 1:
        return schedule
    raised, best_then, halved_then = schedule
    return raised + tf.cast(new_loss > loss, tf.float32), best_then, halved_then


def _checkpoint(config: _Config, x: tf.Tensor, state: _State, window: tf.Tensor) -> _State:
    """Adapts each example's step (and L1 top-k), and moves back to the best point where the
    step was halved (Linf, L2) or reset (L1)."""
    if config.norm == 1:
        fraction, nonzero_then = state.schedule
        nonzero = _nonzero(state.x_best - x)
        restart = nonzero < _L1_SPARSER * nonzero_then
        step = tf.clip_by_value(
            tf.where(restart, config.max_step, state.step / _L1_SHRINK),
            _L1_MIN_STEP * config.max_step, config.max_step,
        )
        schedule = (nonzero / _features(x) / _L1_SHRINK, nonzero)
    else:
        raised, best_then, halved_then = state.schedule
        restart = (raised <= config.rho * tf.cast(window, tf.float32)) | (
            ~halved_then & (best_then >= state.loss_best)
        )
        step = tf.where(restart, state.step / 2.0, state.step)
        schedule = (tf.zeros_like(raised), state.loss_best, restart)
    return state._replace(
        x_adv=_select(restart, state.x_best, state.x_adv),
        grad=_select(restart, state.grad_best, state.grad), step=step, schedule=schedule,
    )


def _nonzero(delta: tf.Tensor) -> tf.Tensor:
    """The number of nonzero coordinates of each example, as floats ([N])."""
    return tf.cast(tf.math.count_nonzero(flat(delta), axis=1), tf.float32)


def _features(x: tf.Tensor) -> tf.Tensor:
    """The number of coordinates of an example, as a float."""
    return tf.cast(tf.shape(flat(x))[1], tf.float32)


def _sparse_sign(grad: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
    """The signs of the top ``fraction`` of each example's gradient coordinates (by magnitude),
    scaled to L1 norm 1."""
    values = flat(grad)
    magnitude = tf.abs(values)
    features = tf.shape(values)[1]
    rank = tf.cast((1.0 - fraction) * tf.cast(features, tf.float32), tf.int32)
    rank = tf.clip_by_value(rank, 0, features - 1)
    threshold = tf.gather(tf.sort(magnitude, axis=1), rank, batch_dims=1)
    signs = tf.sign(values) * tf.cast(magnitude >= threshold[:, None], values.dtype)
    signs /= tf.reduce_sum(tf.abs(signs), axis=1, keepdims=True) + 1e-10
    return tf.reshape(signs, tf.shape(grad))


def _normalize(values: tf.Tensor, norm: float) -> tf.Tensor:
    """The steepest-ascent direction of norm 1: the sign (Linf), ``values / ||values||_2`` (L2)."""
    if norm == np.inf:
        return tf.sign(values)
    return values / per_example(lp_norm(values, norm) + _TINY, values)


def _cross_entropy(logits: tf.Tensor, y: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    del target
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def _dlr(logits: tf.Tensor, y: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    del target
    top = tf.math.top_k(logits, 3).values
    margin = _logit(logits, y) - tf.reduce_max(_without(logits, y), axis=1)
    return -margin / (top[:, 0] - top[:, 2] + _TINY)


def _targeted_dlr(logits: tf.Tensor, y: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    top = tf.math.top_k(logits, 4).values
    margin = _logit(logits, y) - _logit(logits, target)
    return -margin / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2.0 + _TINY)


def _logit(logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    return tf.gather(logits, classes, batch_dims=1)


def _without(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """``logits`` with the logit of class ``y`` lowered below every other."""
    is_y = tf.one_hot(y, logits.shape[-1], on_value=True, off_value=False)
    return tf.where(is_y, logits.dtype.min, logits)


def _argmax(logits: tf.Tensor) -> tf.Tensor:
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def _predict(model_fn: ModelFn, x: tf.Tensor) -> tf.Tensor:
    return _argmax(model_fn(x))


def _select(mask: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Per example, ``a`` where ``mask`` ([N]) is true, else ``b``."""
    return tf.where(per_example(mask, a), a, b)
