"""Attack tests, parametrized over ``list_attacks()`` so that a new attack is covered."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.attack_specs import format_attack, parse_attack
from metaadv_tf.attacks import (
    L1_EPS, L2_EPS, LINF_EPS, Attack, default_settings, get_attack, list_attacks,
)

ATTACKS = list_attacks()
TOLERANCE = 1e-5
MIN_ACCURACY_DROP = 0.25
# Few steps and samples, for tests of properties that do not depend on attack strength.
CHEAP = {"steps": 2, "binary_search_steps": 2, "num_samples": 8, "queries": 10, "target_classes": 2,
         "angles": 3, "shifts": 3}


def cheap_attack(name: str) -> Attack:
    defaults = default_settings(name)
    return get_attack(name, **{key: v for key, v in CHEAP.items() if key in defaults})


def distances(attack: Attack, x: np.ndarray, x_adv: np.ndarray) -> np.ndarray:
    """Per-example distance in the attack's norm."""
    return np.linalg.norm((np.asarray(x_adv) - x).reshape(len(x), -1), ord=attack.norm, axis=1)


def assert_within_eps(attack: Attack, x: np.ndarray, x_adv: np.ndarray) -> None:
    """Every example within the attack's eps ball; spatial attacks (no norm) have no ball."""
    if attack.norm is not None:
        assert distances(attack, x, x_adv).max() <= attack.eps + TOLERANCE


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model(x), axis=1) == y))


def loss(model, x, y) -> float:
    """Mean cross-entropy of the model's logits on (x, y)."""
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x))))


@pytest.fixture(scope="module")
def adversarial(trained_cnn):
    """``adversarial(name)``: default-settings examples of the 200 test images, compiled, cached."""
    model, x, y = trained_cnn
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            attack = get_attack(name)
            compiled = tf.function(lambda a, b: attack(model, a, b), autograph=False)
            cache[name] = compiled(x, y).numpy()
        return cache[name]

    return get


def test_required_attacks_are_registered():
    assert {"fgsm", "pgd_linf", "pgd_l2", "bim", "mim", "cw_l2", "spsa"} <= set(ATTACKS)


# Defaults written out by hand, from the numbers attacks.py documents: changing one shows here.
DOCUMENTED_DEFAULTS = {
    "fgsm": {"eps": 0.1, "norm": "inf"},
    "pgd_linf": {"eps": 0.1, "norm": "inf", "steps": 10, "step_size": 0.025, "rand_init": True},
    "pgd_l2": {"eps": 1.5, "norm": 2, "steps": 10, "step_size": 0.375, "rand_init": True},
    "bim": {"eps": 0.1, "norm": "inf", "steps": 10, "step_size": 0.025, "rand_init": False},
    "mim": {"eps": 0.1, "norm": "inf", "steps": 10, "step_size": 0.01, "decay": 1.0},
    "cw_l2": {"eps": 1.5, "norm": 2, "steps": 50, "learning_rate": 0.1, "binary_search_steps": 4,
              "confidence": 0.0, "initial_const": 0.1},
    "spsa": {"eps": 0.1, "norm": "inf", "steps": 10, "learning_rate": 0.02, "num_samples": 64, "delta": 0.01},
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED_DEFAULTS))
def test_documented_defaults(name):
    assert get_attack(name).settings == pytest.approx(DOCUMENTED_DEFAULTS[name])
    assert default_settings(name) == pytest.approx(DOCUMENTED_DEFAULTS[name])


def other_value(key: str, value):
    """A valid value other than a setting's default (the norm stays: each attack allows its own;
    so does APGD's largereps, which needs norm 1 where the default norm is Linf)."""
    if key in ("norm", "largereps"):
        return value
    if isinstance(value, bool):
        return not value
    return value + 2 if isinstance(value, int) else value / 2


@pytest.mark.parametrize("name", ATTACKS)
def test_defaults_fill_every_setting(name):
    attack = get_attack(name)
    assert None not in attack.settings.values()  # derived defaults (eps, step_size) are filled in
    assert get_attack(name, **default_settings(name)) == attack  # every setting given explicitly
    assert parse_attack(format_attack(attack)) == attack  # the spec written into cards and flags
    varied = get_attack(name, **{key: other_value(key, value)
                                 for key, value in default_settings(name).items()})
    assert varied != attack and parse_attack(format_attack(varied)) == varied
    assert attack.eps == {np.inf: LINF_EPS, 2.0: L2_EPS, 1.0: L1_EPS}.get(attack.norm)  # None: spatial


@pytest.mark.parametrize("name", ATTACKS)
def test_shape_dtype_ball_and_range(name, trained_cnn, adversarial):
    _, x, _ = trained_cnn
    attack, x_adv = get_attack(name), adversarial(name)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert_within_eps(attack, x, x_adv)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("name", ATTACKS)
def test_lowers_accuracy(name, trained_cnn, adversarial):
    model, x, y = trained_cnn
    clean, robust = accuracy(model, x, y), accuracy(model, adversarial(name), y)
    assert clean > 0.6, f"the fixture model is undertrained: clean accuracy {clean}"
    assert robust <= clean - MIN_ACCURACY_DROP, f"{name}: clean {clean:.3f}, robust {robust:.3f}"


def test_cw_changes_only_examples_it_makes_adversarial(trained_cnn, adversarial):
    model, x, y = trained_cnn
    x_adv = adversarial("cw_l2")
    changed = np.any(x_adv != x, axis=(1, 2, 3))
    assert changed.any()
    assert np.all(np.argmax(model(x_adv[changed]), axis=1) != y[changed])


@pytest.mark.parametrize("name", ATTACKS)
def test_eager_with_predicted_labels(name, trained_cnn):
    model, x, _ = trained_cnn
    attack = cheap_attack(name)
    x_adv = attack(model, x[:8])
    assert x_adv.shape == (8, 28, 28, 1) and x_adv.dtype == tf.float32
    assert_within_eps(attack, x[:8], x_adv)
    # an attack, not the identity: it changed examples, and the loss of the predictions it attacked rose
    predicted = np.argmax(model(x[:8]), axis=1)
    assert np.any(np.asarray(x_adv) != x[:8])
    assert loss(model, x_adv, predicted) > loss(model, x[:8], predicted) + 0.02


@pytest.mark.parametrize("name", ATTACKS)
def test_gradient_is_stopped(name, trained_cnn):
    model, x, y = trained_cnn
    images = tf.constant(x[:4])
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(cheap_attack(name)(model, images, y[:4]))
    assert tape.gradient(total, images) is None


def test_predicted_labels_are_the_default(trained_cnn):
    model, x, _ = trained_cnn
    predicted = np.argmax(model(x[:16]), axis=1)
    attack = get_attack("fgsm")
    np.testing.assert_array_equal(attack(model, x[:16]), attack(model, x[:16], predicted))
    assert not np.array_equal(attack(model, x[:16]), attack(model, x[:16], (predicted + 1) % 10))


def test_fast_weights_model_fn(trained_cnn):
    """A ``stateless_call`` lambda (as in MAML) attacks like the model itself."""
    model, x, y = trained_cnn

    def fast_weights_fn(images):
        params, state = model.trainable_variables, model.non_trainable_variables
        return model.stateless_call(params, state, images)[0]

    attack = get_attack("fgsm")
    x_adv = attack(model, x[:16], y[:16])
    np.testing.assert_allclose(attack(fast_weights_fn, x[:16], y[:16]), x_adv, atol=1e-6)
    assert np.any(np.asarray(x_adv) != x[:16])


def test_fgsm_with_random_start(trained_cnn):
    """Wong et al.'s FGSM-RS: a step of 1.25 eps from a random start, projected back."""
    model, x, y = trained_cnn
    attack = get_attack("pgd_linf", steps=1, step_size=0.125, rand_init=True)
    x_adv = attack(model, x, y)
    assert distances(attack, x, x_adv).max() <= attack.eps + TOLERANCE
    assert accuracy(model, x_adv, y) <= accuracy(model, x, y) - MIN_ACCURACY_DROP


def test_step_size_follows_eps_and_steps():
    assert get_attack("pgd_linf", eps=0.2, steps=5).settings["step_size"] == pytest.approx(0.1)
    assert get_attack("pgd_linf", step_size=0.01).settings["step_size"] == 0.01


def test_l2_norm_changes_the_default_eps():
    attack = get_attack("bim", norm=2)
    assert attack.norm == 2.0 and attack.eps == L2_EPS
    assert get_attack("fgsm", norm=np.inf) == get_attack("fgsm", norm="inf")


def test_attacks_are_hashable_values():
    assert len({get_attack("mim"), get_attack("mim", decay=1.0), get_attack("mim", steps=5)}) == 2


def test_unknown_attack_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown attack 'pgd'") as error:
        get_attack("pgd")
    assert all(name in str(error.value) for name in ATTACKS)


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("pgd_linf", {"eps": -1}, r"eps must be a finite number > 0. Received: eps=-1"),
        ("fgsm", {"eps": 0}, r"Received: eps=0"),
        ("pgd_l2", {"steps": 0}, r"steps must be an integer >= 1. Received: steps=0"),
        ("mim", {"step_size": float("nan")}, r"Received: step_size=nan"),
        ("pgd_linf", {"rand_init": "yes"}, r"rand_init must be True or False"),
        ("spsa", {"num_samples": 7}, r"num_samples must be an even integer"),
        ("fgsm", {"norm": 1}, r"norm must be one of 'inf', 2 for attack 'fgsm'. Received: norm=1"),
        ("pgd_linf", {"norm": 2}, r"Received: norm=2"),
    ],
)
def test_invalid_setting_values(name, settings, message):
    with pytest.raises(ValueError, match=message):
        get_attack(name, **settings)


def test_unknown_setting_lists_the_choices():
    with pytest.raises(ValueError, match=r"Unknown pgd_linf setting 'epsilon'. Did you mean 'eps'"):
        get_attack("pgd_linf", epsilon=0.1)
    with pytest.raises(ValueError, match=r"Unknown fgsm setting 'steps'.*eps, norm"):
        get_attack("fgsm", steps=3)


def test_rejects_non_float32_images(trained_cnn):
    model, x, _ = trained_cnn
    with pytest.raises(ValueError, match="float32"):
        get_attack("fgsm")(model, (x[:2] * 255).astype(np.uint8))


def test_importing_attacks_does_not_import_cleverhans():
    code = "import sys, metaadv_tf.attacks; assert 'cleverhans' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
