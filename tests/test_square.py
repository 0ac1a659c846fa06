"""Square Attack tests: agreement with ART, the gradient-masking check, the reference's
building blocks, determinism, and compiled calls on batches of unknown size."""
from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.attacks import L2_EPS, LINF_EPS, Attack, get_attack
from metaadv_tf.square import pseudo_gaussian, square_sizes

QUERIES = 200  # a budget for the tests: a few seconds per run on 100 images
ART_EXAMPLES = 100
ART_TOLERANCE = 0.02  # robust accuracy may exceed ART's by at most 2 points
QUANTIZATION = 100.0  # the masked model rounds its logits to multiples of 1 / QUANTIZATION
MASKING_MARGIN = 0.3  # how much lower square's accuracy must be than PGD's on the masked model
TOLERANCE = 1e-5


def accuracy(model_fn, x, y) -> float:
    return float(np.mean(np.argmax(model_fn(x), axis=1) == y))


def compiled(attack: Attack, model_fn):
    """``attack`` on ``model_fn`` in a ``tf.function`` with the batch size unknown."""
    spec = [tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int32)]
    return tf.function(lambda x, y: attack(model_fn, x, y), input_signature=spec, autograph=False)


def quantized(model):
    """``model`` with its logits rounded to multiples of 1 / QUANTIZATION and a zero gradient: a
    gradient-masking defence that barely changes its predictions."""

    @tf.custom_gradient
    def round_logits(logits):
        return tf.round(logits * QUANTIZATION) / QUANTIZATION, tf.zeros_like

    return lambda images: round_logits(model(images))


@pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")  # ART's L2, below
@pytest.mark.parametrize("norm, eps", [("inf", LINF_EPS), (2, L2_EPS)])
def test_as_strong_as_art(norm, eps, trained_cnn):
    """Robust accuracy at most ART's plus 2 points, with one query fewer (``queries`` counts the
    start; ART's ``max_iter`` does not). ART's L2 attack divides its window update by the budget
    where the reference multiplies (and warns of divisions by zero), so ours is stronger there."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier

    model, x, y = trained_cnn
    x, y = x[:ART_EXAMPLES], y[:ART_EXAMPLES]
    classifier = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0)
    )
    np.random.seed(0)
    random.seed(0)  # ART's L2 attack draws from both
    art = SquareAttack(
        classifier, norm=np.inf if norm == "inf" else 2, eps=eps, max_iter=QUERIES, nb_restarts=1,
        verbose=False,
    )
    theirs = accuracy(model, art.generate(x, y), y)
    attack = get_attack("square", norm=norm, eps=eps, queries=QUERIES)
    ours = accuracy(model, compiled(attack, model)(x, y), y)
    assert ours <= theirs + ART_TOLERANCE, f"square {norm}: ours {ours:.2f}, ART {theirs:.2f}"


def test_finds_what_gradient_masking_hides(trained_cnn):
    """On a model with rounded logits and zero gradients, PGD fails and Square does not."""
    model, x, y = trained_cnn
    x, y = x[:ART_EXAMPLES], y[:ART_EXAMPLES]
    masked = quantized(model)
    clean = accuracy(masked, x, y)
    pgd = accuracy(masked, compiled(get_attack("pgd_linf"), masked)(x, y), y)
    found = accuracy(masked, compiled(get_attack("square", queries=QUERIES), masked)(x, y), y)
    assert pgd >= clean - 0.1, f"the gradient is not masked: clean {clean:.2f}, PGD {pgd:.2f}"
    assert found <= pgd - MASKING_MARGIN, f"clean {clean:.2f}, PGD {pgd:.2f}, square {found:.2f}"


@pytest.mark.parametrize("norm", ["inf", 2])
def test_same_seed_same_result(norm, trained_cnn):
    model, x, y = trained_cnn
    x, y = x[:32], y[:32]
    first, again, other = (
        compiled(get_attack("square", norm=norm, queries=50, seed=seed), model)(x, y).numpy()
        for seed in (0, 0, 1)
    )
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_batches_of_unknown_size_stay_in_the_ball(norm, trained_cnn):
    model, x, y = trained_cnn
    attack = get_attack("square", norm=norm, queries=50)
    run = compiled(attack, model)
    for size in (5, 16):
        x_adv = run(x[:size], y[:size]).numpy()
        distance = np.linalg.norm((x_adv - x[:size]).reshape(size, -1), ord=attack.norm, axis=1)
        assert x_adv.shape == (size, 28, 28, 1)
        assert distance.max() <= attack.eps + TOLERANCE
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_eager_and_misclassified_examples_unchanged(trained_cnn):
    model, x, y = trained_cnn
    x, y = x[:32], y[:32]
    wrong = np.argmax(model(x), axis=1) != y
    assert wrong.any()
    x_adv = get_attack("square", queries=20)(model, x, y).numpy()
    np.testing.assert_array_equal(x_adv[wrong], x[wrong])
    assert np.any(x_adv[~wrong] != x[~wrong])


def _reference_bump(rows: int, cols: int) -> np.ndarray:
    """``pseudo_gaussian_pert_rectangles`` as written in the reference: squares of growing
    radius around the centre, each adding 1 / (radius + 1)**2."""
    bump = np.zeros([rows, cols])
    centre_row, centre_col = rows // 2, cols // 2
    for radius in range(max(rows, cols) // 2 + 1):
        bump[max(centre_row - radius, 0):centre_row + radius + 1,
             max(centre_col - radius, 0):centre_col + radius + 1] += 1.0 / (radius + 1) ** 2
    return bump / np.linalg.norm(bump)


@pytest.mark.parametrize("size", [3, 4, 5, 8, 25])
def test_pseudo_gaussian_is_the_reference_update(size):
    expected = np.concatenate(
        [_reference_bump(size // 2, size), -_reference_bump(size - size // 2, size)]
    )
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(pseudo_gaussian(size).numpy(), expected, atol=1e-6)


def test_square_sizes_follow_the_schedule():
    linf = square_sizes(0.8, 10000, 28, 28, np.inf)
    l2 = square_sizes(0.8, 10000, 28, 28, 2.0)
    assert len(linf) == 9999
    assert linf[0] == linf[10] == 25 and linf[11] == 18  # p / 2 after 0.1 % of the queries
    assert linf[-1] == 1
    assert np.all(np.diff(linf) <= 0)
    assert np.all(l2 % 2 == 1) and l2.min() == 3
    assert square_sizes(1.0, 10, 28, 28, np.inf).max() == 27  # at most H - 1


@pytest.mark.parametrize("norm", ["inf", 2])
def test_colour_images_of_any_size(norm):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20, 24, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x = tf.random.stateless_uniform([12, 20, 24, 3], seed=[0, 0])
    y = tf.argmax(model(x), axis=1, output_type=tf.int32)
    attack = get_attack("square", norm=norm, queries=200)
    x_adv = tf.function(lambda a, b: attack(model, a, b), autograph=False)(x, y).numpy()
    distance = np.linalg.norm((x_adv - x.numpy()).reshape(12, -1), ord=attack.norm, axis=1)
    assert distance.max() <= attack.eps + TOLERANCE
    assert accuracy(model, x_adv, y.numpy()) < 0.5
