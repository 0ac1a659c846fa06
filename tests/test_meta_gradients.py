"""The second-order meta-gradient is exact (central finite differences, float64); FOMAML is not."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.meta.functional import adapt, cross_entropy, logit_variation, task_loss
from metaadv_tf.meta.maml import InnerLoop, TaskBatch, maml_task_losses
from metaadv_tf.meta.reptile import reptile_direction
from metaadv_tf.models import SmallCNN
from metaadv_tf.training import MetaConfig, TrainConfig
from metaadv_tf.training.methods import build_method




def _setup(batchnorm: bool, seed: int = 0):
    keras.utils.set_random_seed(seed)
    model = SmallCNN(input_shape=(8, 8, 1), num_classes=3, width=2, batchnorm=batchnorm)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(size=(2, 12, 8, 8, 1)))  # 2 tasks x (6 support + 6 query)
    y = tf.constant(rng.integers(0, 3, size=(2, 12)), tf.int32)
    ids = tf.constant([0, 1])
    batch = TaskBatch(ids, ids, x[:, :6], y[:, :6], x[:, 6:], y[:, 6:])
    params = [tf.identity(v.value) for v in model.trainable_variables]
    state = [tf.identity(v.value) for v in model.non_trainable_variables]
    return model, batch, params, state


def _meta_loss_and_grad(model, batch, params, state, inner: InnerLoop):
    with tf.GradientTape() as tape:
        tape.watch(params)
        losses, _, _, _ = maml_task_losses(model, params, state, None, batch, inner, tape, adversarial=False)
        loss = tf.reduce_mean(tf.stack(losses))
    return loss, tape.gradient(loss, params)


def _directional_finite_difference(model, batch, params, state, inner, direction, h=1e-5):
    def at(sign):
        shifted = [p + sign * h * d for p, d in zip(params, direction)]
        return _meta_loss_and_grad(model, batch, shifted, state, inner)[0]

    return float((at(1.0) - at(-1.0)) / (2 * h))


@pytest.mark.parametrize("batchnorm", [False, True], ids=["no_bn", "metaadv_batchnorm"])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(float64, batchnorm, inner_steps):
    model, batch, params, state = _setup(batchnorm)
    second = InnerLoop(steps=inner_steps, learning_rate=0.5, first_order=False)
    _, grads = _meta_loss_and_grad(model, batch, params, state, second)
    rng = np.random.default_rng(1)
    direction = [tf.constant(rng.normal(size=p.shape)) for p in params]
    analytic = float(sum(tf.reduce_sum(g * d) for g, d in zip(grads, direction)))
    numeric = _directional_finite_difference(model, batch, params, state, second, direction)
    assert abs(analytic - numeric) / abs(numeric) < 1e-6

    first = InnerLoop(steps=inner_steps, learning_rate=0.5, first_order=True)
    _, fo_grads = _meta_loss_and_grad(model, batch, params, state, first)
    fo_analytic = float(sum(tf.reduce_sum(g * d) for g, d in zip(fo_grads, direction)))
    assert abs(fo_analytic - numeric) / abs(numeric) > 1e-3  # FOMAML drops the second-order term


def test_keras_batchnorm_second_derivative_is_wrong_but_ours_is_exact(float64):
    """Why metaadv_tf ships its own BatchNorm: Keras' stops a gradient inside the variance."""
    from metaadv_tf.models import BatchNorm

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, 3)))
    errors = {}
    for name, layer in {"keras": keras.layers.BatchNormalization(), "ours": BatchNorm()}.items():
        def hessian_vector(inputs, vector):
            with tf.GradientTape() as outer:
                outer.watch(inputs)
                with tf.GradientTape() as inner:
                    inner.watch(inputs)
                    out = tf.reduce_sum(tf.sin(layer(inputs, training=True)))
                grad = inner.gradient(out, inputs)
                directional = tf.reduce_sum(grad * vector)
            return outer.gradient(directional, inputs), grad

        vector = tf.constant(rng.normal(size=(16, 3)))
        hv, _ = hessian_vector(x, vector)
        h = 1e-5
        numeric = (hessian_vector(x + h * vector, vector)[1] - hessian_vector(x - h * vector, vector)[1]) / (2 * h)
        errors[name] = float(tf.norm(hv - numeric) / tf.norm(numeric))
    assert errors["ours"] < 1e-6
    assert errors["keras"] > 1e-3


def test_adapt_first_step_is_plain_sgd():
    model, batch, params, state = _setup(batchnorm=False)
    x, y = batch.support_x[0], batch.support_y[0]
    fast, _, loss = adapt(model, params, state, x, y, steps=1, learning_rate=0.1, first_order=False)
    with tf.GradientTape() as tape:
        tape.watch(params)
        expected_loss, _ = task_loss(model, params, state, x, y)
    grads = tape.gradient(expected_loss, params)
    np.testing.assert_allclose(float(loss), float(expected_loss), rtol=1e-6)
    for f, p, g in zip(fast, params, grads):
        np.testing.assert_allclose(f.numpy(), (p - 0.1 * g).numpy(), rtol=1e-5, atol=1e-6)


def test_reptile_direction_is_mean_of_parameter_differences():
    model, batch, params, state = _setup(batchnorm=False)
    inner = InnerLoop(steps=2, learning_rate=0.1, first_order=True)
    direction, _, losses = reptile_direction(model, params, state, None, batch, inner,
                                             adversarial=False)
    adapted = []
    for i in range(2):
        x = tf.concat([batch.support_x[i], batch.query_x[i]], 0)
        y = tf.concat([batch.support_y[i], batch.query_y[i]], 0)
        adapted.append(adapt(model, params, state, x, y, steps=2, learning_rate=0.1, first_order=True)[0])
    for d, p, a0, a1 in zip(direction, params, *adapted):
        np.testing.assert_allclose(d.numpy(), (p - (a0 + a1) / 2).numpy(), rtol=1e-5, atol=1e-7)
    assert len(losses) == 2


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_pre_adaptation_weight_adds_the_support_loss_of_theta(float64, weight):
    """Each task's meta-loss is L_query(θ'_i) + w · L_support(θ), differentiated exactly."""
    model, batch, params, state = _setup(batchnorm=False)
    method = _pooled_method(model, "mat", inner_learning_rate=0.5, pre_adaptation_weight=weight)
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss, _, query_losses, _ = method.loss(params, state, *_step_inputs(batch), tape)
    grads = tape.gradient(loss, params)

    with tf.GradientTape() as tape:
        tape.watch(params)
        queries, supports, _, _ = maml_task_losses(model, params, state, None, batch,
                                                InnerLoop(steps=1, learning_rate=0.5), tape, adversarial=False)
        expected = tf.reduce_mean(queries) + weight * tf.reduce_mean(supports)
    np.testing.assert_allclose(query_losses.numpy(), tf.stack(queries).numpy(), rtol=1e-10)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-10)
    for g, e in zip(grads, tape.gradient(expected, params)):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-8, atol=1e-12)
    for i, support_loss in enumerate(supports):  # θ's own loss, before any inner step
        np.testing.assert_allclose(float(support_loss), float(task_loss(
            model, params, state, batch.support_x[i], batch.support_y[i])[0]), rtol=1e-10)


def test_learned_inner_rates_get_the_meta_gradient_of_their_task(float64):
    """Meta-SGD, one first-order inner step: dL_q(θ − α g_s)/d log α_k = −α_k ∇_k L_q(θ') · g_s,k,
    for the sampled task's rates only."""
    model, batch, params, state = _setup(batchnorm=False)
    method = _pooled_method(model, "fomaml", inner_learning_rate=0.3, learn_inner_rates=True)
    with tf.GradientTape() as tape:
        tape.watch(params)
        terms = maml_task_losses(model, params, state, None, batch, method.inner, tape, adversarial=False,
                                 rates=method.rates)
        loss = terms.query[0]  # task ids are [0, 1]: task 0's query loss
    rate_grads = tf.convert_to_tensor(tape.gradient(loss, method.rates.parameters)[0])
    with tf.GradientTape() as tape:
        tape.watch(params)
        support_loss = task_loss(model, params, state, batch.support_x[0], batch.support_y[0])[0]
    support_grads = tape.gradient(support_loss, params)
    fast = [p - 0.3 * g for p, g in zip(params, support_grads)]
    with tf.GradientTape() as tape:
        tape.watch(fast)
        query_loss = task_loss(model, fast, state, batch.query_x[0], batch.query_y[0])[0]
    expected = [-0.3 * float(tf.reduce_sum(q * s)) for q, s in zip(tape.gradient(query_loss, fast), support_grads)]
    np.testing.assert_allclose(rate_grads.numpy()[0], expected, rtol=2e-3, atol=1e-7)
    assert np.all(rate_grads.numpy()[1] == 0)  # task 1's rates play no part in task 0's loss


@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_consistency_weight_adds_kl_from_adapted_to_deployed_predictions(float64, weight):
    model, batch, params, state = _setup(batchnorm=False)
    method = _pooled_method(model, "mat", inner_learning_rate=0.5, consistency_weight=weight)
    with tf.GradientTape() as tape:
        loss = method.loss(params, state, *_step_inputs(batch), tape)[0]
    expected = 0.0
    for i in range(2):
        fast, _, _ = adapt(model, params, state, batch.support_x[i], batch.support_y[i], steps=1,
                           learning_rate=0.5, first_order=False)
        adapted = tf.nn.softmax(model.stateless_call(fast, state, batch.query_x[i], training=True)[0]).numpy()
        deployed = tf.nn.softmax(model.stateless_call(params, state, batch.query_x[i], training=True)[0]).numpy()
        query = task_loss(model, fast, state, batch.query_x[i], batch.query_y[i])[0]
        kl = np.mean(np.sum(adapted * (np.log(adapted) - np.log(deployed)), axis=1))
        assert kl > 1e-6
        expected += 0.5 * (float(query) + weight * kl)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-8)


class _ShiftingTasks:
    """Task t's "attack" adds shifts[t] to the images, so a loss shows which task made its batch."""

    def __init__(self, shifts: list[float]) -> None:
        self.shifts = tf.constant(shifts, tf.float64)

    def attack(self, task, model_fn, x, y):
        return x + tf.gather(self.shifts, task)


@pytest.mark.parametrize("cross", [False, True], ids=["own_task", "cross_task"])
def test_cross_task_query_attacks_the_query_with_the_next_task(float64, cross):
    """Task i adapts on its own attack's support batch; its query batch comes from task i's attack,
    or with ``cross_task_query`` from task (i + 1) mod n's (MLDG)."""
    model, batch, params, state = _setup(batchnorm=False)
    tasks, shifts = _ShiftingTasks([0.0, 0.5]), [0.0, 0.5]

    def query_losses(cross_task_query: bool) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            return maml_task_losses(model, params, state, tasks, batch, InnerLoop(steps=1, learning_rate=0.5),
                                    tape, cross_task_query=cross_task_query).query

    queries = query_losses(cross)
    for i in range(2):
        fast, _, _ = adapt(model, params, state, batch.support_x[i] + shifts[i], batch.support_y[i], steps=1,
                           learning_rate=0.5, first_order=False)
        query_shift = shifts[(i + 1) % 2] if cross else shifts[i]
        expected = task_loss(model, fast, state, batch.query_x[i] + query_shift, batch.query_y[i])[0]
        np.testing.assert_allclose(float(queries[i]), float(expected), rtol=1e-10)
    assert abs(float(queries[0]) - float(query_losses(not cross)[0])) > 1e-6  # the shift shows in the loss


def test_cross_task_query_needs_two_tasks_and_no_pools():
    with pytest.raises(ValueError, match="num_tasks=1"):
        MetaConfig(num_tasks=1, cross_task_query=True)
    with pytest.raises(ValueError, match="pool_size=64"):
        MetaConfig(pool_size=64, cross_task_query=True)
    with pytest.raises(ValueError, match="reptile"):
        TrainConfig(method="reptile", steps=1, epochs=None, meta=MetaConfig(cross_task_query=True))


class _ShiftingDistribution(_ShiftingTasks):
    """The same shifts as a task distribution's tasks, which ``worst_case_query`` runs one by one."""

    @property
    def tasks(self) -> list:
        return [_ShiftTask(shift) for shift in self.shifts]


class _ShiftTask:
    def __init__(self, shift: tf.Tensor) -> None:
        self.shift = shift

    def attack(self, model_fn, x, y):
        return x + self.shift


def _mean_worst_loss(model, weights, state, x, y, shifts) -> float:
    """Mean over the examples of their largest cross-entropy over the shifted versions of x (checking
    that no one shift is the worst for every example, so the max matters)."""
    per_shift = [cross_entropy(model.stateless_call(weights, state, x + shift, training=True)[0], y).numpy()
                 for shift in shifts]
    assert np.argmax(per_shift, 0).min() != np.argmax(per_shift, 0).max()
    return float(np.mean(np.max(per_shift, 0)))


@pytest.mark.parametrize("worst_query", [False, True], ids=["own_query", "worst_query"])
@pytest.mark.parametrize("worst_anchor", [False, True], ids=["own_anchor", "worst_anchor"])
def test_worst_case_query_and_anchor_score_each_example_by_its_worst_task_attack(float64, worst_query,
                                                                                 worst_anchor):
    """Task i adapts on its own attack's support batch. With ``worst_case_query`` every task of the
    distribution attacks its query batch and each example counts with its largest loss at θ'_i; with
    ``worst_case_anchor`` the same holds for θ's support loss, at θ. Otherwise task i's own attack."""
    model, batch, params, state = _setup(batchnorm=False)
    shifts = [0.0, 0.5, -0.5]
    with tf.GradientTape() as tape:
        terms = maml_task_losses(model, params, state, _ShiftingDistribution(shifts), batch,
                                 InnerLoop(steps=1, learning_rate=0.5), tape, worst_case_query=worst_query,
                                 worst_case_anchor=worst_anchor)
    for i in range(2):
        fast, _, own_support = adapt(model, params, state, batch.support_x[i] + shifts[i], batch.support_y[i],
                                     steps=1, learning_rate=0.5, first_order=False)
        support = (_mean_worst_loss(model, params, state, batch.support_x[i], batch.support_y[i], shifts)
                   if worst_anchor else float(own_support))
        query = (_mean_worst_loss(model, fast, state, batch.query_x[i], batch.query_y[i], shifts) if worst_query
                 else float(task_loss(model, fast, state, batch.query_x[i] + shifts[i], batch.query_y[i])[0]))
        np.testing.assert_allclose(float(terms.support[i]), support, rtol=1e-10)
        np.testing.assert_allclose(float(terms.query[i]), query, rtol=1e-10)


def test_variation_weight_adds_the_largest_logit_distance_between_the_query_attacks(float64):
    """With ``variation_weight`` v, a task's query loss grows by v · mean over the query examples of
    the largest L2 distance between two of their logit vectors under the distribution's attacks."""
    model, batch, params, state = _setup(batchnorm=False)
    shifts = [0.0, 0.5, -0.5]

    def query_losses(weight: float) -> list[float]:
        with tf.GradientTape() as tape:
            terms = maml_task_losses(model, params, state, _ShiftingDistribution(shifts), batch,
                                     InnerLoop(steps=1, learning_rate=0.5), tape, worst_case_query=True,
                                     variation_weight=weight)
        return [float(loss) for loss in terms.query]

    plain, regularized = query_losses(0.0), query_losses(0.5)
    for i in range(2):
        fast, _, _ = adapt(model, params, state, batch.support_x[i] + shifts[i], batch.support_y[i], steps=1,
                           learning_rate=0.5, first_order=False)
        logits = [model.stateless_call(fast, state, batch.query_x[i] + shift, training=True)[0].numpy()
                  for shift in shifts]
        pairs = [np.linalg.norm(logits[a] - logits[b], axis=-1) for a, b in ((0, 1), (0, 2), (1, 2))]
        assert np.argmax(pairs, 0).min() != np.argmax(pairs, 0).max()  # no pair is farthest for all
        np.testing.assert_allclose(regularized[i] - plain[i], 0.5 * np.mean(np.max(pairs, 0)), rtol=1e-8)


def test_consistency_with_the_worst_case_query_covers_every_attacks_version(float64):
    """With ``worst_case_query``, task i's consistency term is KL(f_θ'_i ‖ f_θ) over the query batch's
    versions under every task of the distribution (MNG-AC's consistency, across threat models)."""
    model, batch, params, state = _setup(batchnorm=False)
    shifts = [0.0, 0.5, -0.5]
    with tf.GradientTape() as tape:
        terms = maml_task_losses(model, params, state, _ShiftingDistribution(shifts), batch,
                                 InnerLoop(steps=1, learning_rate=0.5), tape, worst_case_query=True, consistency=True)
    for i in range(2):
        fast, _, _ = adapt(model, params, state, batch.support_x[i] + shifts[i], batch.support_y[i], steps=1,
                           learning_rate=0.5, first_order=False)
        versions = np.concatenate([batch.query_x[i] + shift for shift in shifts])
        adapted = tf.nn.softmax(model.stateless_call(fast, state, versions, training=True)[0]).numpy()
        deployed = tf.nn.softmax(model.stateless_call(params, state, versions, training=True)[0]).numpy()
        kl = np.mean(np.sum(adapted * (np.log(adapted) - np.log(deployed)), axis=1))
        assert kl > 1e-6
        np.testing.assert_allclose(float(terms.consistency[i]), kl, rtol=1e-8)
        np.testing.assert_allclose(float(terms.query[i]),
                                   _mean_worst_loss(model, fast, state, batch.query_x[i], batch.query_y[i], shifts),
                                   rtol=1e-10)


def test_worst_case_anchor_needs_the_anchor_term_and_fresh_attacks():
    with pytest.raises(ValueError, match="pre_adaptation_weight=0.0"):
        MetaConfig(worst_case_anchor=True)
    for others in ({"memory_steps": 1}, {"pool_size": 64}):
        with pytest.raises(ValueError, match=f"{next(iter(others))}={next(iter(others.values()))}"):
            MetaConfig(worst_case_anchor=True, pre_adaptation_weight=1.0, **others)
    with pytest.raises(ValueError, match="reptile"):
        TrainConfig(method="reptile", steps=1, epochs=None,
                    meta=MetaConfig(worst_case_anchor=True, pre_adaptation_weight=1.0))


def test_logit_variation_of_identical_logits_is_zero_with_finite_gradients():
    logits = tf.constant([[1.0, 2.0], [3.0, -1.0]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        variation = logit_variation([logits, logits + 0.0])
    assert float(variation) == pytest.approx(0.0, abs=1e-5)
    assert np.all(np.isfinite(tape.gradient(variation, logits).numpy()))
    with pytest.raises(ValueError, match="at least 2 attacks. Received: 1"):
        logit_variation([logits])


def test_variation_weight_needs_the_worst_case_query():
    with pytest.raises(ValueError, match="needs worst_case_query"):
        MetaConfig(variation_weight=0.5)
    with pytest.raises(ValueError, match="variation_weight"):
        MetaConfig(worst_case_query=True, variation_weight=-1.0)


def test_worst_case_query_takes_fresh_attacks_alone():
    for others in ({"cross_task_query": True}, {"memory_steps": 1}, {"pool_size": 64}):
        with pytest.raises(ValueError, match=f"{next(iter(others))}="):
            MetaConfig(worst_case_query=True, **others)
    with pytest.raises(ValueError, match="reptile"):
        TrainConfig(method="reptile", steps=1, epochs=None, meta=MetaConfig(worst_case_query=True))


def _pooled_method(model, method: str, **meta):
    """``method`` for ``_setup``'s model and 2 x (6 + 6) task batches, taking them as already
    adversarial (as from pools)."""
    config = TrainConfig(method=method, model_args={"width": 2}, steps=1, epochs=None,
                         meta=MetaConfig(num_tasks=2, support_size=6, query_size=6, **meta))
    built = build_method(model, config)
    built.adversarial = False
    return built


def _step_inputs(batch: TaskBatch) -> tuple:
    """``_setup``'s task batch as a method step takes it: flat images, labels, sampled tasks."""
    x = tf.reshape(tf.concat([batch.support_x, batch.query_x], 1), [24, 8, 8, 1])
    y = tf.reshape(tf.concat([batch.support_y, batch.query_y], 1), [24])
    return x, y, {"tasks": batch.task_ids, "codes": batch.codes}
