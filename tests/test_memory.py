"""Perturbation memory: compact storage, continued attacks, and training that continues it."""
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.attacks import get_attack
from metaadv_tf.meta.memory import ContinuedAttacks, PerturbationMemory
from metaadv_tf.meta.tasks import TaskDistribution
from metaadv_tf.training import MetaConfig, Trainer

from test_training import tiny_config


def linear_model(seed: int = 0):
    weights = tf.random.stateless_normal([28 * 28, 10], seed=[seed, 1])
    return lambda x: tf.reshape(x, [tf.shape(x)[0], -1]) @ weights


def test_memory_stores_perturbations_to_int8_precision():
    memory = PerturbationMemory(10, [4, 4, 1])
    delta = tf.random.stateless_uniform([3, 4, 4, 1], seed=[0, 0], minval=-0.1, maxval=0.1)
    memory.write(tf.constant([7, 2, 5]), delta)
    read = memory.read(tf.constant([2, 5, 7, 0])).numpy()
    scale = np.abs(delta.numpy()).max(axis=(1, 2, 3))
    np.testing.assert_allclose(read[:3], delta.numpy()[[1, 2, 0]], atol=scale.max() / 254 + 1e-7)
    assert not np.array_equal(read[:3], delta.numpy()[[1, 2, 0]])  # really quantized
    assert np.all(read[3] == 0)  # never written
    assert memory.codes.dtype == tf.int8 and PerturbationMemory.nbytes(10, [4, 4, 1]) == 10 * 20


@pytest.mark.parametrize("name", ["pgd_linf", "pgd_l2", "pgd_l1"])
def test_continuing_from_the_last_iterate_equals_running_longer(name):
    model = linear_model()
    x = tf.random.stateless_uniform([8, 28, 28, 1], seed=[1, 2])
    y = tf.constant([0, 1, 2, 3, 4, 5, 6, 7])
    attack = get_attack(name, steps=3, rand_init=False)
    two = get_attack(name, steps=2, rand_init=False, step_size=attack.settings["step_size"])(model, x, y)
    np.testing.assert_allclose(attack.continue_from(model, x, y, two, steps=1), attack(model, x, y), atol=1e-5)


def test_spatial_attacks_cannot_continue():
    attack = get_attack("spatial", samples=2)
    assert not attack.can_continue
    with pytest.raises(ValueError, match=r"'spatial' cannot continue .* pgd_linf"):
        attack.continue_from(linear_model(), tf.zeros([1, 28, 28, 1]), None, tf.zeros([1, 28, 28, 1]), 1)


def test_continued_attacks_accumulate_in_memory_and_skip_spatial():
    model = linear_model()
    x = tf.random.stateless_uniform([4, 28, 28, 1], seed=[3, 4])
    y = tf.constant([1, 2, 3, 4])
    tasks = TaskDistribution([get_attack("pgd_linf", steps=5), get_attack("spatial", samples=2)])
    continued = ContinuedAttacks(PerturbationMemory(20, [28, 28, 1]), steps=1)
    indices = tf.constant([3, 9, 0, 17])
    one = continued.attack(tasks, tf.constant(0), model, x, y, indices)
    stored = continued.memory.read(indices)
    np.testing.assert_allclose(stored, one - x, atol=0.1 / 254 + 1e-6)
    two = continued.attack(tasks, tf.constant(0), model, x, y, indices)
    step = get_attack("pgd_linf", steps=5).settings["step_size"]  # 0.05: two steps reach eps 0.1
    assert np.abs((one - x).numpy()).max() == pytest.approx(step, abs=1e-3)
    assert np.abs((two - x).numpy()).max() == pytest.approx(0.1, abs=1e-3)
    continued.attack(tasks, tf.constant(1), model, x, y, indices)  # spatial: memory untouched
    np.testing.assert_allclose(continued.memory.read(indices), two - x, atol=0.1 / 254 + 1e-6)


def test_per_task_memory_keeps_each_tasks_own_perturbation():
    model = linear_model()
    x = tf.random.stateless_uniform([4, 28, 28, 1], seed=[5, 6])
    y = tf.constant([1, 2, 3, 4])
    tasks = TaskDistribution([get_attack("pgd_linf", steps=5), get_attack("pgd_l2", steps=5)])
    continued = ContinuedAttacks(PerturbationMemory(20, [28, 28, 1], slots=2), steps=1, per_task=True)
    indices = tf.constant([3, 9, 0, 19])
    linf = continued.attack(tasks, tf.constant(0), model, x, y, indices)
    l2 = continued.attack(tasks, tf.constant(1), model, x, y, indices)
    np.testing.assert_allclose(continued.memory.read(indices, slot=0), linf - x, atol=0.05 / 254 + 1e-6)
    np.testing.assert_allclose(continued.memory.read(indices, slot=1), l2 - x, atol=1.5 / 254 + 1e-6)
    fresh_l2 = get_attack("pgd_l2", steps=5)  # from zero, not from the Linf perturbation: one step
    one_step = get_attack("pgd_l2", steps=1, rand_init=False, step_size=fresh_l2.settings["step_size"])
    np.testing.assert_allclose(l2, one_step(model, x, y), atol=1e-5)
    assert continued.memory.codes.shape == (40, 28 * 28) and PerturbationMemory.nbytes(20, [28, 28, 1], 2) == 40 * 788


def test_training_with_memory_fills_it_and_resumes_it(tmp_path):
    config = tiny_config("mat", steps=4, train_attacks="pgd_linf(steps=2),pgd_l2(steps=2)",
                         meta=MetaConfig(support_size=4, query_size=4, memory_steps=1))
    trainer = Trainer(config, str(tmp_path))
    trainer.train(progress=False)
    assert trainer.train_step.experimental_get_tracing_count() == 1
    written = np.flatnonzero(trainer.memory.scales.numpy())
    assert len(written) == 4 * 16  # every image of the 4 batches of 16, once each
    resumed = Trainer(config, str(tmp_path))
    resumed.restore()
    np.testing.assert_array_equal(resumed.memory.codes.numpy(), trainer.memory.codes.numpy())
    np.testing.assert_array_equal(resumed.memory.scales.numpy(), trainer.memory.scales.numpy())


def test_training_with_a_per_task_memory_writes_each_tasks_slot(tmp_path):
    config = tiny_config("mat", steps=4, train_attacks="pgd_linf(steps=2),pgd_l2(steps=2)",
                         meta=MetaConfig(support_size=4, query_size=4, memory_steps=1, memory_per_task=True))
    trainer = Trainer(config, str(tmp_path))
    trainer.train(progress=False)
    scales = trainer.memory.scales.numpy().reshape(2, -1)  # slot (task) x image
    assert np.count_nonzero(scales) == 4 * 16  # every image once, in the slot of the task it was given
    assert np.count_nonzero(scales[0]) > 0 and np.count_nonzero(scales[1]) > 0
    assert not np.any((scales[0] != 0) & (scales[1] != 0))


@pytest.mark.parametrize(
    "method, meta, message",
    [
        ("avg", dict(memory_steps=1), r"memory .* works with the methods mat and fomaml"),
        ("mat", dict(memory_steps=1, pool_size=16), r"memory or adversarial pools, not both"),
        ("mat", dict(memory_steps=-1), r"memory_steps must be an integer >= 0"),
        ("mat", dict(memory_per_task=True), r"memory_per_task .* needs memory_steps >= 1"),
    ],
)
def test_bad_memory_settings_are_rejected(method, meta, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_config(method, meta=MetaConfig(support_size=4, query_size=4, **meta)), str(tmp_path))
