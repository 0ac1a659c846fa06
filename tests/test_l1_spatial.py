"""SLIDE (``pgd_l1``) and the rotation-translation attack (``spatial``); test_attacks.py covers
what every attack must do (shape, range, ball, accuracy drop, stopped gradient)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.attacks import get_attack
from metaadv_tf.meta.functional import model_fn as fast_weights_fn
from metaadv_tf.meta.tasks import TaskDistribution
from metaadv_tf.slide import random_l1_ball, sparse_l1_direction
from metaadv_tf.spatial import grid_transforms, transform_images, worst_transform

IMAGES = tf.TensorSpec([None, 28, 28, 1], tf.float32)
LABELS = tf.TensorSpec([None], tf.int32)


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model(x), axis=1) == y))


def compiled(attack, model):
    """``attack`` against ``model`` in a ``tf.function`` with an unknown batch size."""
    return tf.function(
        lambda x, y: attack(model, x, y), input_signature=[IMAGES, LABELS], autograph=False
    )


@pytest.fixture(scope="module")
def slide_examples(trained_cnn):
    model, x, y = trained_cnn
    return compiled(get_attack("pgd_l1"), model)(x, y).numpy()


def test_slide_stays_in_the_l1_ball_and_the_box(trained_cnn, slide_examples):
    _, x, _ = trained_cnn
    l1 = np.abs(slide_examples - x).reshape(len(x), -1).sum(axis=1)
    assert l1.max() <= get_attack("pgd_l1").eps + 1e-4
    assert slide_examples.min() >= 0.0 and slide_examples.max() <= 1.0


def test_slide_is_sparse(trained_cnn, slide_examples):
    _, x, _ = trained_cnn
    changed = np.mean(slide_examples != x, axis=(1, 2, 3))
    assert np.median(changed) < 0.1, f"median fraction of changed pixels {np.median(changed):.3f}"


def test_slide_lowers_accuracy(trained_cnn, slide_examples):
    model, x, y = trained_cnn
    assert accuracy(model, slide_examples, y) <= accuracy(model, x, y) - 0.4


def test_slide_direction_keeps_the_top_percentile_inside_the_box():
    grad = tf.constant([[0.1, -5.0, 3.0, -4.0, 0.2, 9.0, 0.0, 1.0]])[:, :, None, None]
    x_adv = tf.constant([[0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 0.5, 0.5]])[:, :, None, None]
    # 50th percentile of 8: the 4 largest |grad| that can move; 9.0 at x=1 pushes outwards.
    direction = sparse_l1_direction(grad, x_adv, 50.0).numpy().ravel()
    np.testing.assert_allclose(direction, [0, -0.25, 0.25, -0.25, 0, 0, 0, 0.25])


def test_slide_direction_of_a_zero_gradient_is_zero():
    zeros = tf.zeros([2, 4, 4, 1])
    np.testing.assert_array_equal(sparse_l1_direction(zeros, zeros + 0.5, 99.0), zeros)


def test_random_l1_start_is_in_the_ball_and_seeded():
    shape = tf.constant([64, 28, 28, 1])
    delta = random_l1_ball(shape, 10.0, seed=[3, 0]).numpy()
    l1 = np.abs(delta).reshape(64, -1).sum(axis=1)
    assert l1.max() <= 10.0 + 1e-4 and l1.min() > 9.0  # uniform in 784 dims: near the sphere
    np.testing.assert_array_equal(delta, random_l1_ball(shape, 10.0, seed=[3, 0]))
    assert not np.array_equal(delta, random_l1_ball(shape, 10.0, seed=[4, 0]))


def test_slide_with_random_start_is_deterministic(trained_cnn):
    model, x, y = trained_cnn
    attack = get_attack("pgd_l1", steps=3, rand_init=True, seed=1)
    first = attack(model, x[:16], y[:16])
    np.testing.assert_array_equal(first, attack(model, x[:16], y[:16]))
    l1 = np.abs(first - x[:16]).reshape(16, -1).sum(axis=1)
    assert l1.max() <= attack.eps + 1e-4


def test_both_attacks_are_training_tasks(trained_cnn):
    """As in MAT: one trace serves both tasks, over fast weights in training mode, under a tape."""
    model, x, y = trained_cnn
    tasks = TaskDistribution([get_attack("pgd_l1", steps=2), get_attack("spatial", samples=2)])
    params, state = model.trainable_variables, model.non_trainable_variables

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), IMAGES, LABELS])
    def attack_and_gradient(task, images, labels):
        with tf.GradientTape() as tape:
            x_adv = tasks.attack(task, fast_weights_fn(model, params, state), images, labels)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=model(x_adv))
            )
        return x_adv, tape.gradient(loss, params)

    for task in range(len(tasks)):
        x_adv, gradients = attack_and_gradient(tf.constant(task), x[:32], y[:32])
        assert all(gradient is not None for gradient in gradients)
        x_adv = x_adv.numpy()
        assert x_adv.shape == (32, 28, 28, 1)
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert not np.array_equal(x_adv, x[:32])


def test_spatial_identity_returns_the_input(trained_cnn):
    model, x, y = trained_cnn
    attack = get_attack("spatial", max_angle=0.0, max_shift=0.0, angles=1, shifts=1)
    np.testing.assert_array_equal(attack(model, x[:16], y[:16]), x[:16])


def roll_with_zero_fill(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``images`` shifted ``dx`` pixels right and ``dy`` down (at most 1), zeros shifted in."""
    rolled = np.roll(images, (dy, dx), axis=(1, 2))
    if dy:
        rolled[:, 0 if dy > 0 else -1] = 0.0
    if dx:
        rolled[:, :, 0 if dx > 0 else -1] = 0.0
    return rolled


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, -1), (-1, 1)])
def test_translation_is_a_shift_with_zero_fill(trained_cnn, dx, dy):
    _, x, _ = trained_cnn
    moved = transform_images(tf.constant(x[:4]), tf.constant([[0.0, dx, dy]], tf.float32))
    np.testing.assert_array_equal(moved, roll_with_zero_fill(x[:4], dx, dy))


def test_positive_angles_rotate_counter_clockwise(trained_cnn):
    _, x, _ = trained_cnn
    rotated = transform_images(tf.constant(x[:4]), tf.constant([[np.pi / 2, 0.0, 0.0]]))
    np.testing.assert_allclose(rotated, np.rot90(x[:4], k=1, axes=(1, 2)), atol=1e-5)


def test_grid_is_stronger_than_random_draws(trained_cnn):
    model, x, y = trained_cnn
    grid = compiled(get_attack("spatial"), model)(x, y)
    sampled = compiled(get_attack("spatial", samples=10), model)(x, y)
    assert accuracy(model, grid, y) <= accuracy(model, sampled, y) < accuracy(model, x, y)


def test_grid_search_with_and_without_compaction_agree(trained_cnn):
    """Dropping misclassified examples from the batch changes nothing in inference mode."""
    model, x, y = trained_cnn
    candidates = grid_transforms(8.0, 2.0, angles=5, shifts=3)
    labels = tf.constant(y[:64], tf.int32)
    compact = worst_transform(model, x[:64], labels, candidates, compact=True)
    full = worst_transform(model, x[:64], labels, candidates, compact=False)
    np.testing.assert_allclose(compact, full, atol=1e-6)


def test_spatial_samples_are_seeded(trained_cnn):
    model, x, y = trained_cnn
    def run(seed: int) -> np.ndarray:
        return get_attack("spatial", samples=3, seed=seed)(model, x[:32], y[:32]).numpy()

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))
