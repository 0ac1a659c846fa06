"""MAT extensions: task encoding, Meta-BatchNorm, Meta-Dropout, task attention."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.meta.attention import TaskAttention
from metaadv_tf.meta.maml import InnerLoop, TaskBatch, TaskConditioning, maml_task_losses
from metaadv_tf.models import SmallCNN
from metaadv_tf.models.task_layers import MetaBatchNorm, MetaDropout, TaskBias, task_code_slot
from metaadv_tf.training import MetaConfig, TrainConfig, Trainer
from metaadv_tf.training.methods import build_method

EXTENSIONS = {
    "task_encoding": dict(task_encoding=True),
    "meta_batchnorm": dict(meta_batchnorm=True),
    "meta_dropout": dict(meta_dropout=True),
    "all": dict(task_encoding=True, meta_batchnorm=True, meta_dropout=True),
}


def conditioned_cnn(**extension) -> SmallCNN:
    return SmallCNN(input_shape=(8, 8, 1), num_classes=3, width=2, num_tasks=2, **extension)


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, 8, 8, 1)).astype("float32")


@pytest.mark.parametrize("name", EXTENSIONS)
def test_conditioned_models_take_images_alone_and_round_trip(name):
    model = conditioned_cnn(**EXTENSIONS[name])
    assert model(images()).shape == (6, 3)
    slot = task_code_slot(model)
    np.testing.assert_array_equal(model.non_trainable_variables[slot].numpy(), [0, 0, 1])  # unknown
    clone = SmallCNN.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(images()), model(images()), rtol=1e-6)


def test_switched_off_extensions_add_no_layers_and_no_task_code():
    model = SmallCNN(input_shape=(8, 8, 1), num_classes=3, width=2)
    kinds = {type(layer) for layer in model.layers}
    assert not kinds & {TaskBias, MetaBatchNorm, MetaDropout}
    assert task_code_slot(model) is None


def test_extensions_at_their_neutral_values_compute_the_plain_network():
    """Zero task projection, equal Meta-BN rows and the inference-mode Meta-Dropout leave the
    plain network's function unchanged: the extensions start from the basic model exactly."""
    keras.utils.set_random_seed(0)
    plain = SmallCNN(input_shape=(8, 8, 1), num_classes=3, width=2)
    conditioned = conditioned_cnn(**EXTENSIONS["all"])
    plain_layers = [l for l in plain.layers if l.weights]
    conditioned_layers = [l for l in conditioned.layers if l.weights and not isinstance(l, (TaskBias, MetaDropout))]
    conditioned_layers = [l for l in conditioned_layers if type(l).__name__ != "TaskCode"]
    for source, target in zip(plain_layers, conditioned_layers):
        if isinstance(target, MetaBatchNorm):
            gamma, beta, mean, variance = [w.numpy() for w in source.weights]
            target.set_weights([np.tile(gamma, (3, 1)) * 1.5, np.tile(beta, (3, 1)) + 0.1, mean, variance])
            source.set_weights([gamma * 1.5, beta + 0.1, mean, variance])
        else:
            target.set_weights(source.get_weights())
    for training in (False, True):
        if training:  # Meta-Dropout is random in training: compare with its noise scale at ~0
            for layer in conditioned.layers:
                if isinstance(layer, MetaDropout):
                    layer.rho.assign(tf.fill(layer.rho.shape, -30.0))
        np.testing.assert_allclose(conditioned(images(), training=training),
                                   plain(images(), training=training), rtol=1e-5, atol=1e-6)


def _maml_gradients(model, inner, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(size=(2, 8, 8, 8, 1)))
    y = tf.constant(rng.integers(0, 3, size=(2, 8)), tf.int32)
    ids = tf.constant([1, 0])
    batch = TaskBatch(ids, ids, x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])
    conditioning = TaskConditioning(task_code_slot(model), 2)
    state = [tf.identity(v.value) for v in model.non_trainable_variables]

    def meta_loss(params):
        with tf.GradientTape() as tape:
            tape.watch(params)
            losses, _, _, new_state = maml_task_losses(model, params, state, None, batch, inner, tape,
                                                 adversarial=False, conditioning=conditioning)
            loss = tf.reduce_mean(tf.stack(losses))
        return loss, tape.gradient(loss, params), new_state

    return meta_loss




@pytest.mark.parametrize("name", EXTENSIONS)
def test_second_order_gradients_flow_and_reach_per_task_parameters(float64, name):
    keras.utils.set_random_seed(0)
    model = conditioned_cnn(**EXTENSIONS[name])
    for variable in model.trainable_variables:  # move off the neutral init so every term matters
        variable.assign(variable + 0.05 * tf.random.normal(variable.shape, dtype=variable.dtype))
    params = [tf.identity(v.value) for v in model.trainable_variables]
    meta_loss = _maml_gradients(model, InnerLoop(steps=1, learning_rate=0.5))
    _, grads, new_state = meta_loss(params)
    slot = task_code_slot(model)
    np.testing.assert_array_equal(new_state[slot].numpy(), [0, 0, 1])  # default stays "unknown"
    for variable, grad in zip(model.trainable_variables, grads):
        if len(variable.shape) == 2 and variable.shape[0] == 3 and "logits" not in variable.path:
            rows = np.abs(grad.numpy()).sum(axis=1)  # per-task tables: tasks 0 and 1 sampled
            assert rows[0] > 0 and rows[1] > 0 and rows[2] == 0, variable.path
    rng = np.random.default_rng(1)
    direction = [tf.constant(rng.normal(size=p.shape)) for p in params]
    analytic = float(sum(tf.reduce_sum(g * d) for g, d in zip(grads, direction)))
    h = 1e-7  # the tiny ReLU network has kinks within 1e-5 of some inputs
    numeric = float(meta_loss([p + h * d for p, d in zip(params, direction)])[0]
                    - meta_loss([p - h * d for p, d in zip(params, direction)])[0]) / (2 * h)
    assert abs(analytic - numeric) / abs(numeric) < 1e-6


def test_attention_starts_uniform_leans_to_hard_tasks_and_entropy_prevents_collapse():
    ids, losses = tf.constant([0, 1, 2]), tf.constant([0.5, 1.0, 3.0])
    attention = TaskAttention(3, learning_rate=0.05, entropy_weight=0.0)
    np.testing.assert_allclose(attention.weights(ids), [1 / 3] * 3, rtol=1e-6)
    for _ in range(200):
        attention.update(ids, losses)
    greedy = attention.weights(ids).numpy()
    assert greedy[2] > 0.9  # without entropy it collapses onto the hardest task
    regularized = TaskAttention(3, learning_rate=0.05, entropy_weight=2.0)
    for _ in range(200):
        regularized.update(ids, losses)
    alpha = regularized.weights(ids).numpy()
    assert alpha[0] < alpha[1] < alpha[2] < 0.8 and alpha.min() > 0.05


def tiny_meta_config(**meta) -> TrainConfig:
    return TrainConfig(
        method="mat", model="cnn", model_args={"width": 4}, train_examples=128, steps=2, epochs=None,
        train_attacks="fgsm,pgd_linf(steps=2)", log_every=1,
        meta=MetaConfig(num_tasks=2, support_size=4, query_size=4, **meta),
    )


EXTENSION_LAYERS = {"task_encoding": TaskBias, "meta_batchnorm": MetaBatchNorm, "meta_dropout": MetaDropout}
EXTENSION_VARIABLES = {"task_encoding": {"projection"}, "meta_batchnorm": {"task_gamma", "task_beta"},
                       "meta_dropout": {"task_noise"},
                       "task_attention": {"hidden_weights", "hidden_bias", "output_weights"}}


def extension_variables(trainer: Trainer) -> dict[str, tf.Variable]:
    """The extensions' own trainable variables, by path: their layers', and task attention's."""
    kinds = tuple(layer for name, layer in EXTENSION_LAYERS.items() if getattr(trainer.config.meta, name))
    own = {variable.path: variable for layer in trainer.model.layers if kinds and isinstance(layer, kinds)
           for variable in layer.trainable_weights}
    if trainer.method.attention:
        own.update({f"attention/{v.name.split(':')[0]}": v for v in trainer.method.attention.parameters})
    return own


@pytest.mark.parametrize("meta", [*EXTENSIONS.values(), dict(task_attention=True),
                                  dict(pre_adaptation_weight=1.0)],
                         ids=[*EXTENSIONS, "task_attention", "pre_adaptation_weight"])
def test_each_extension_trains_in_the_loop(meta, tmp_path):
    # attacks without a random start: the two objectives compared below see the same examples
    config = dataclasses.replace(tiny_meta_config(**meta), train_attacks="fgsm,bim(steps=2)")
    trainer = Trainer(config, str(tmp_path))
    own = extension_variables(trainer)
    expected = {name for extension, names in EXTENSION_VARIABLES.items() if getattr(config.meta, extension)
                for name in names}
    assert {path.rsplit("/", 1)[-1] for path in own} == expected
    before = {path: variable.numpy() for path, variable in own.items()}
    result = trainer.train(progress=False)
    assert result.steps == 2 and np.isfinite(result.last_loss)
    for path, variable in own.items():  # training moved every one of them
        assert not np.array_equal(variable.numpy(), before[path]), path

    # one more step, taken by hand: the meta-gradient reaches each of them
    x, y = next(trainer.batches())
    sample = trainer.method.sample_tasks(tf.random.Generator.from_seed(1))
    params = [tf.identity(v.value) for v in trainer.model.trainable_variables]
    state = [tf.identity(v.value) for v in trainer.model.non_trainable_variables]
    step = trainer.method.step(params, state, x, y, sample)
    grads = {v.path: g.numpy() for v, g in zip(trainer.model.trainable_variables, step.grads)}
    if trainer.method.attention:  # the attention network's gradient: of its α-weighted task losses
        with tf.GradientTape() as tape:
            objective = tf.reduce_sum(trainer.method.attention.weights(sample["tasks"]) * step.task_losses)
        parameters = trainer.method.attention.parameters
        grads.update({f"attention/{v.name.split(':')[0]}": g.numpy()
                      for v, g in zip(parameters, tape.gradient(objective, parameters))})
    for path in own:
        assert np.any(grads[path] != 0), path
    if meta.get("pre_adaptation_weight"):  # no variables of its own: a term of the objective
        assert float(step.loss) > float(tf.reduce_mean(step.task_losses)) + 1e-3  # + w · support losses
        without = build_method(trainer.model, dataclasses.replace(
            config, meta=dataclasses.replace(config.meta, pre_adaptation_weight=0.0)))
        plain = without.step(params, state, x, y, sample)
        np.testing.assert_allclose(plain.task_losses, step.task_losses, rtol=1e-5)  # same examples
        assert any(not np.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(plain.grads, step.grads))


def test_attention_off_and_uniform_attention_give_the_same_first_step(tmp_path):
    """α starts uniform, so the first θ update with attention equals the basic loop's."""
    weights = []
    for index, meta in enumerate([{}, dict(task_attention=True)]):
        trainer = Trainer(tiny_meta_config(**meta).__class__(**{
            **tiny_meta_config(**meta).__dict__, "steps": 1}), str(tmp_path / str(index)))
        trainer.train(progress=False)
        weights.append([v.numpy() for v in trainer.model.trainable_variables])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(method="avg", meta=MetaConfig(task_encoding=True)), r"task_encoding extend the meta methods"),
        (dict(method="pgd_at", meta=MetaConfig(pre_adaptation_weight=1.0)),
         r"pre_adaptation_weight extend the meta methods"),
        (dict(method="reptile", meta=MetaConfig(task_attention=True)), r"reptile does not have"),
        (dict(method="reptile", meta=MetaConfig(pre_adaptation_weight=1.0)),
         r"pre_adaptation_weight changes the meta-loss"),
        (dict(unknown_task_rate=1.0), r"unknown_task_rate must be in \[0, 1\)"),
    ],
)
def test_bad_extension_settings_are_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        if "method" in config:
            TrainConfig(steps=1, epochs=None, **config)
        else:
            MetaConfig(**config)
