"""Auto-PGD (``apgd_ce``, ``apgd_dlr``, ``apgd_t``): agreement with ART, L1, targets, seeds,
batches of unknown size, the L1-box projection, the step-size schedule and L1 ``largereps``.
test_attacks.py covers what every attack must do (shape, range, ball, accuracy drop, stopped
gradient)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf import autopgd
from metaadv_tf.art_bridge import art_apgd, art_classifier
from metaadv_tf.attack_specs import format_attack, parse_attack
from metaadv_tf.attacks import L1_EPS, get_attack
from metaadv_tf.autopgd import _Config, _stages, top_other_classes
from metaadv_tf.projections import project_l1_ball, project_l1_box

IMAGES = tf.TensorSpec([None, 28, 28, 1], tf.float32)
LABELS = tf.TensorSpec([None], tf.int32)
EXAMPLES = 100  # the first test images, for the comparisons
STEPS = 25  # ART takes 0.1-0.3 s per iteration on 100 images
ART_MARGIN = 0.02  # robust accuracy may exceed ART's by 2 points at most
ART_LOSSES = {"apgd_ce": "cross_entropy", "apgd_dlr": "difference_logits_ratio"}


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model(x), axis=1) == y))


def compiled(attack, model):
    """``attack`` against ``model`` in a ``tf.function`` with an unknown batch size."""
    return tf.function(
        lambda x, y: attack(model, x, y), input_signature=[IMAGES, LABELS], autograph=False
    )


def art_robust_accuracy(model, x, y, *, loss_type: str, norm: float, eps: float) -> float:
    """Robust accuracy under ART's AutoProjectedGradientDescent (1 start, ``STEPS`` iterations)."""
    attack = art_apgd(art_classifier(model), norm, eps, STEPS, batch_size=len(x), loss=loss_type)
    return accuracy(model, attack.generate(x, y), y)


@pytest.mark.parametrize(
    "name, norm, eps",
    [
        ("apgd_ce", "inf", 0.1), ("apgd_dlr", "inf", 0.1),
        ("apgd_ce", 2, 1.5), ("apgd_dlr", 2, 1.5),
        # The default eps leave the fixture model almost nothing; these leave it about half.
        ("apgd_ce", "inf", 0.02), ("apgd_dlr", 2, 0.5),
    ],
)
def test_at_least_as_strong_as_art(name, norm, eps, trained_cnn):
    model, x, y = trained_cnn
    x, y = x[:EXAMPLES], y[:EXAMPLES]
    attack = get_attack(name, norm=norm, eps=eps, steps=STEPS)
    ours = accuracy(model, compiled(attack, model)(x, y), y)
    art = art_robust_accuracy(model, x, y, loss_type=ART_LOSSES[name], norm=attack.norm, eps=eps)
    print(f"{name} {attack.threat_model} eps={eps}: ours {ours:.2f}, ART {art:.2f}")
    assert ours <= art + ART_MARGIN


def test_l1_stays_in_the_ball_and_the_box_and_lowers_accuracy(trained_cnn):
    model, x, y = trained_cnn
    x, y = x[:EXAMPLES], y[:EXAMPLES]
    x_adv = compiled(get_attack("apgd_ce", norm=1, steps=STEPS), model)(x, y).numpy()
    assert np.abs(x_adv - x).reshape(len(x), -1).sum(axis=1).max() <= L1_EPS + 1e-4
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert accuracy(model, x_adv, y) <= accuracy(model, x, y) - 0.4


def test_targeted_is_at_least_as_strong_as_cross_entropy(trained_cnn):
    """At a small eps, where some examples resist: APGD-T (DLR towards 9 classes) vs APGD-CE."""
    model, x, y = trained_cnn
    x, y = x[:EXAMPLES], y[:EXAMPLES]
    robust = {
        name: accuracy(model, compiled(get_attack(name, eps=0.02, steps=STEPS), model)(x, y), y)
        for name in ("apgd_ce", "apgd_t")
    }
    assert robust["apgd_ce"] < accuracy(model, x, y), robust
    assert robust["apgd_t"] <= robust["apgd_ce"] + ART_MARGIN, robust


@pytest.mark.parametrize("norm, largereps", [("inf", False), (2, False), (1, False), (1, True)])
def test_a_seed_fixes_the_result(norm, largereps, trained_cnn):
    model, x, y = trained_cnn
    x, y = x[:16], y[:16]
    run = lambda seed: get_attack(
        "apgd_dlr", norm=norm, steps=3, seed=seed, largereps=largereps
    )(model, x, y).numpy()
    first = run(0)
    np.testing.assert_array_equal(first, run(0))
    assert not np.array_equal(first, run(1))


def test_unknown_batch_size_traces_once(trained_cnn):
    model, x, y = trained_cnn
    traces = []
    attack = get_attack("apgd_t", steps=3, target_classes=2)

    @tf.function(input_signature=[IMAGES, LABELS], autograph=False)
    def run(images, labels):
        traces.append(1)
        return attack(model, images, labels)

    for count in (7, 13):
        assert run(x[:count], y[:count]).shape == (count, 28, 28, 1)
    assert len(traces) == 1


def test_misclassified_examples_are_returned_unchanged(trained_cnn):
    model, x, y = trained_cnn
    wrong = np.argmax(model(x), axis=1) != y
    assert wrong.any()
    x_adv = compiled(get_attack("apgd_ce", steps=3), model)(x, y).numpy()
    np.testing.assert_array_equal(x_adv[wrong], x[wrong])


def test_top_other_classes_skip_the_label():
    logits = tf.constant([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 4.0, 6.0]])
    labels = tf.constant([0, 2])
    np.testing.assert_array_equal(top_other_classes(logits, labels, 2), [[2, 1], [3, 1]])
    assert top_other_classes(logits, labels, 9).shape == (2, 3)


def test_checkpoints_follow_the_paper():
    """Linf, L2: p_j = 0, 0.22, then p_j - p_{j-1} shrinks by 0.03 down to 0.06; L1: every 4 %."""
    windows = _Config(np.inf, 0.1, 100, 0.75).windows()
    assert list(np.flatnonzero(windows) + 1) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert list(windows[windows > 0]) == [22, 19, 16, 13, 10, 7, 6, 6]
    l1 = _Config(1.0, 10.0, 100, 0.75).windows()
    assert list(np.flatnonzero(l1) + 1) == list(range(4, 101, 4))
    assert list(np.flatnonzero(_Config(2.0, 1.0, 3, 0.75).windows())) == [0, 1, 2]


def bisection_projection(x: np.ndarray, x_adv: np.ndarray, eps: float) -> np.ndarray:
    """Projection onto the L1 ball ∩ [0, 1] by bisection on the soft threshold (float64)."""
    delta = x_adv - x
    magnitude, room = np.abs(delta), np.where(delta > 0, 1 - x, x)
    size = lambda level: np.clip(magnitude - level, 0, room).sum()
    low, high = 0.0, magnitude.max() if size(0.0) > eps else 0.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if size(middle) > eps else (low, middle)
    return x + np.sign(delta) * np.clip(magnitude - high, 0, room)


@pytest.mark.parametrize("scale, eps", [(1.0, 10.0), (0.05, 10.0), (3.0, 1.0), (0.01, 100.0)])
def test_l1_box_projection_is_exact(scale, eps):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 28, 28, 1))
    x[:, :10] = 0.0  # black background: the box binds
    x_adv = x + scale * rng.normal(size=x.shape)
    ours = project_l1_box(tf.constant(x, tf.float32), tf.constant(x_adv, tf.float32), eps).numpy()
    expected = np.stack([bisection_projection(a, b, eps) for a, b in zip(x, x_adv)])
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_l1_box_projection_inside_the_box_is_the_l1_ball_projection():
    x = tf.fill([4, 28, 28, 1], 0.5)
    delta = 0.01 * tf.random.stateless_normal([4, 28, 28, 1], seed=[0, 0])
    expected = x + project_l1_ball(delta, 0.5)
    np.testing.assert_allclose(project_l1_box(x, x + delta, 0.5), expected, atol=1e-6)


# largereps (AutoAttack's use_largereps, L1): stages at 3 eps, 2 eps, eps.
LARGEREPS_EPS = 2.0  # leaves the fixture model about half its accuracy (L1_EPS leaves it none)


@pytest.mark.parametrize("name", ["apgd_ce", "apgd_t"])
def test_largereps_stays_in_the_l1_ball_and_the_box(name, trained_cnn):
    """The runner itself, without the projection ``Attack`` adds: only the last stage, within
    eps, may return a point, though the earlier stages fool the model at 3 eps and 2 eps."""
    model, x, y = trained_cnn
    x, y = x[:EXAMPLES], y[:EXAMPLES]
    targets = {"target_classes": 2} if name == "apgd_t" else {}
    x_adv = getattr(autopgd, name)(
        model, tf.constant(x), tf.constant(y, tf.int32), norm=1.0, eps=LARGEREPS_EPS, steps=10,
        restarts=1, rho=0.75, seed=0, largereps=True, **targets,
    ).numpy()
    assert np.abs(x_adv - x).reshape(len(x), -1).sum(axis=1).max() <= LARGEREPS_EPS + 1e-4
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert accuracy(model, x_adv, y) < accuracy(model, x, y)


def test_largereps_earlier_stages_run_every_example_to_the_end(trained_cnn):
    """A stage before the last (beyond eps) counts no example as fooled, and hands on each
    example's point of highest loss (AutoAttack's ``x_best``), not its first misclassified one."""
    model, x, y = trained_cnn
    x, y = tf.constant(x[:EXAMPLES]), tf.constant(y[:EXAMPLES], tf.int32)
    rows = autopgd._Rows(tf.range(EXAMPLES), x, y, y[:, None])
    first = _stages(_Config(1.0, LARGEREPS_EPS, STEPS, 0.75), True)[0]
    x_start = autopgd._random_start(first, x, tf.constant([0, 0]))
    result = autopgd._run(model, rows, autopgd._cross_entropy, first, x_start, last=False)
    assert not result.fooled.numpy().any()
    np.testing.assert_allclose(result.loss, autopgd._cross_entropy(model(result.x_adv), y, None),
                               rtol=1e-4, atol=1e-4)
    assert accuracy(model, result.x_adv, y.numpy()) < accuracy(model, x, y.numpy()) - 0.2


def test_largereps_is_at_least_as_strong(trained_cnn):
    model, x, y = trained_cnn
    x, y = x[:EXAMPLES], y[:EXAMPLES]
    robust = {
        largereps: accuracy(model, compiled(get_attack(
            "apgd_ce", norm=1, eps=LARGEREPS_EPS, steps=STEPS, largereps=largereps
        ), model)(x, y), y)
        for largereps in (False, True)
    }
    print(f"apgd_ce L1 eps={LARGEREPS_EPS}: robust accuracy {robust} (largereps False, True)")
    assert robust[False] < accuracy(model, x, y), robust
    assert robust[True] <= robust[False] + ART_MARGIN, robust


def test_largereps_stages_follow_autoattack():
    """``decr_eps_pgd``: 3 eps, 2 eps, eps for ceil(0.3 n), ceil(0.3 n) and the rest of n steps."""
    config = _Config(1.0, 10.0, 100, 0.75)
    assert _stages(config, False) == [config]
    stages = _stages(config, True)
    assert [(stage.eps, stage.steps) for stage in stages] == [(30.0, 30), (20.0, 30), (10.0, 40)]
    assert all(stage.sparsity_from_start for stage in stages)
    assert [stage.steps for stage in _stages(_Config(1.0, 10.0, 25, 0.75), True)] == [8, 8, 9]
    assert [stage.steps for stage in _stages(_Config(1.0, 10.0, 1, 0.75), True)] == [1, 1, 0]


@pytest.mark.parametrize("name", ["apgd_ce", "apgd_dlr", "apgd_t"])
def test_largereps_setting(name):
    attack = get_attack(name, norm=1, largereps=True)
    assert attack.settings["largereps"] is True and get_attack(name).settings["largereps"] is False
    assert parse_attack(format_attack(attack)) == attack
    with pytest.raises(ValueError, match="largereps must be True or False.*largereps='yes'"):
        get_attack(name, norm=1, largereps="yes")
    for norm in ("inf", 2):
        with pytest.raises(ValueError, match=f"norm=1 only.*largereps=True with norm={norm!r}"):
            get_attack(name, norm=norm, largereps=True)


def test_largereps_runner_refuses_other_norms(trained_cnn):
    model, x, y = trained_cnn
    with pytest.raises(ValueError, match="norm 1 only.*largereps=True with norm=inf"):
        autopgd.apgd_ce(model, x[:2], y[:2], norm=np.inf, eps=0.1, steps=3, restarts=1, rho=0.75,
                        seed=0, largereps=True)
