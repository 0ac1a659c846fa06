"""Training attacks in bfloat16: a twin of the model over its float32 weights, with float32 logits
and BatchNorm statistics; the weight updates stay float32."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.meta.functional import current_values
from metaadv_tf.models import BatchNorm, build_model, precision_twin
from metaadv_tf.training import MetaConfig, TrainConfig, Trainer, read_run_config

EXTENSIONS = {"task_encoding": True, "meta_batchnorm": True, "meta_dropout": True}


@pytest.mark.parametrize("arguments", [{}, {"num_tasks": 2, **EXTENSIONS}])
def test_bfloat16_twin_computes_in_bfloat16_over_the_models_float32_weights(arguments):
    model = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4, **arguments)
    twin = precision_twin(model, "mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert precision_twin(model, "float32") is model
    convolutions = [layer for layer in twin.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions and all(layer.compute_dtype == "bfloat16" for layer in convolutions)
    assert {v.dtype for v in twin.weights} == {"float32"}
    images = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
    expected, _ = model.stateless_call(*current_values(model), images, training=True)
    logits, state = twin.stateless_call(*current_values(model), images, training=True)
    assert logits.dtype == "float32"
    statistics = [layer.moving_variance for layer in twin.layers if isinstance(layer, BatchNorm)]
    assert statistics and all(v.dtype == "float32" for v in statistics)
    assert [s.dtype.name for s in state] == [v.dtype for v in model.non_trainable_variables]
    assert np.abs(logits.numpy() - expected.numpy()).max() < 0.05 * np.abs(expected.numpy()).max()


def test_unknown_precision_is_rejected_with_the_choices():
    model = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
    with pytest.raises(ValueError, match="Unknown precision 'float16'.*Expected one of: float32, mixed_bfloat16"):
        precision_twin(model, "float16")
    with pytest.raises(ValueError, match="Unknown attack_precision 'bf16'"):
        TrainConfig(attack_precision="bf16")


def one_step_change(config: TrainConfig, workdir: str, attack_seed: int) -> np.ndarray:
    """The flat change of the trainable weights after one training step of ``config``, its attacks'
    random starts drawn after ``tf.random.set_seed(attack_seed)``."""
    trainer = Trainer(config, workdir)
    before = [np.array(v.value) for v in trainer.model.trainable_variables]
    batches = trainer.batches()
    tf.random.set_seed(attack_seed)
    trainer.next_step(batches)
    return np.concatenate([(np.array(v.value) - b).ravel() for v, b in zip(trainer.model.trainable_variables, before)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("method,meta", [
    ("max", {}),
    ("mat", {"worst_case_query": True, "worst_case_anchor": True, "pre_adaptation_weight": 1.0, "inner_steps": 2}),
    ("mat", EXTENSIONS),
    ("reptile", {}),
])
def test_bfloat16_attacks_move_the_step_less_than_a_new_random_start_does(method, meta, tmp_path):
    # A step in bfloat16 throughout points MAT elsewhere (its inner updates fall below bfloat16's
    # resolution: cosine -0.9 to 0.87 with the float32 step); with only the attacks in bfloat16 the
    # step stays as close to the float32 one as the attacks' own randomness allows.
    config = TrainConfig(
        method=method, model="cnn", model_args={"width": 4}, train_examples=256, steps=1, epochs=None,
        batch_size=16, train_attacks="pgd_linf(steps=2),pgd_l2(steps=2)", optimizer="sgd", learning_rate=0.05,
        meta=MetaConfig(num_tasks=2, support_size=8, query_size=8, **meta),
    )
    reference = one_step_change(config, str(tmp_path / "float32"), attack_seed=5)
    assert cosine(one_step_change(config, str(tmp_path / "again"), attack_seed=5), reference) > 0.999
    new_start = cosine(one_step_change(config, str(tmp_path / "new_start"), attack_seed=6), reference)
    twin = dataclasses.replace(config, attack_precision="mixed_bfloat16")
    change = one_step_change(twin, str(tmp_path / "bfloat16"), attack_seed=5)
    assert cosine(change, reference) > min(new_start, 0.9), (cosine(change, reference), new_start)
    assert not np.array_equal(change, reference)  # the attacks did run in bfloat16


def test_run_with_bfloat16_attacks_records_it_and_resumes(tmp_path):
    config = TrainConfig(
        method="mat", model="cnn", model_args={"width": 4}, train_examples=256, steps=2, epochs=None,
        batch_size=16, train_attacks="fgsm,pgd_linf(steps=2)", attack_precision="mixed_bfloat16",
        checkpoint_every=1, meta=MetaConfig(num_tasks=2, support_size=4, query_size=4),
    )
    result = Trainer(config, str(tmp_path)).train(progress=False)
    assert np.isfinite(result.last_loss)
    assert read_run_config(str(tmp_path)).attack_precision == "mixed_bfloat16"
    assert {v.dtype for v in Trainer(config, str(tmp_path)).model.weights} == {"float32"}
    with pytest.raises(ValueError, match="attack_precision: 'mixed_bfloat16' -> 'float32'"):
        Trainer(dataclasses.replace(config, attack_precision="float32"), str(tmp_path))
