"""Protocol v2, the AutoAttack composite and the one-call benchmark."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf import benchmark
from metaadv_tf.attacks import get_attack
from metaadv_tf.autoattack import stages
from metaadv_tf.evaluation import clean_accuracy
from metaadv_tf.protocols import PROTOCOLS, Protocol, get_protocol, run_protocol, seen_threat_models

# AutoAttack with budgets small enough for a test; the stages and their order are the real ones.
CHEAP_AA = "autoattack(norm={norm}, eps={eps}, steps=10, target_classes=2, queries=50)"
TINY = Protocol(
    name="tiny",
    attacks={
        "Linf": CHEAP_AA.format(norm="'inf'", eps=0.1),
        "L2": CHEAP_AA.format(norm=2, eps=1.5),
        "spatial": "spatial(angles=3, shifts=3)",
    },
    num_examples=40,
    clean_examples=60,
    batch_size=20,
    unions={"Lp": ["Linf", "L2"]},
)


def predictions(model, images: np.ndarray) -> np.ndarray:
    return np.argmax(model(images, training=False), axis=1)


def test_v2_is_registered_with_every_threat_model_and_the_issue_radii():
    v2 = get_protocol("v2")
    assert list(v2.attacks) == ["Linf", "L2", "L1", "spatial"]
    eps = {tm: get_attack_from(spec).eps for tm, spec in v2.attacks.items()}
    assert eps == {"Linf": 0.1, "L2": 1.5, "L1": 10.0, "spatial": None}
    assert v2.num_examples >= 1000 and v2.clean_examples == 10000
    assert "v2" in PROTOCOLS


def get_attack_from(spec: str):
    from metaadv_tf.attack_specs import parse_attack

    return parse_attack(spec)


@pytest.mark.parametrize("norm, names", [
    ("inf", ["apgd_ce", "apgd_t", "square"]),
    (2, ["apgd_ce", "apgd_t", "square"]),
    (1, ["apgd_ce", "apgd_t"]),
])
def test_autoattack_stages_by_norm(norm, names):
    attack = get_attack("autoattack", norm=norm)
    assert attack.settings["largereps"] == (norm == 1)  # AutoAttack's standard: L1 only
    found = stages(attack.norm, attack.eps, 100, 1, 9, 5000, 0, attack.settings["largereps"])
    assert [stage.name for stage in found] == names
    assert all(stage.eps == attack.eps and stage.norm == attack.norm for stage in found)
    apgd = [stage for stage in found if stage.name.startswith("apgd")]
    assert all(stage.settings["largereps"] == (norm == 1) for stage in apgd)


def test_protocol_v2_l1_is_autoattack_with_large_radii_first():
    assert "largereps=True" in get_protocol("v2").settings(["Linf"])["attacks"]["L1"]


def test_autoattack_is_at_least_as_strong_as_each_of_its_stages(trained_cnn):
    """Per-example worst case over the stages: no stage alone leaves clearly more examples robust.

    (Stages after the first run on the survivors only, whose random starts differ from a run on
    the whole batch, so the comparison allows one example of slack.)
    """
    model, x, y = trained_cnn
    x, y = x[:60], y[:60]
    composite = get_attack("autoattack", steps=10, target_classes=2, queries=50)
    x_adv = composite(model, x, y).numpy()
    survived = predictions(model, x_adv) == y
    clean = predictions(model, x) == y
    alone = [np.mean(clean & (predictions(model, stage(model, x, y).numpy()) == y))
             for stage in stages(composite.norm, composite.eps, 10, 1, 2, 50, 0)]
    assert not np.any(survived & ~clean)
    assert survived.mean() <= min(alone) + 1 / len(x)
    assert survived.mean() < clean.mean() - 0.2
    assert np.abs(x_adv - x).max() <= composite.eps + 1e-6


def test_autoattack_compiles_for_a_batch_of_unknown_size(trained_cnn):
    model, x, y = trained_cnn
    attack = get_attack("autoattack", steps=5, target_classes=1, queries=20)
    compiled = tf.function(lambda a, b: attack(model, a, b), input_signature=[
        tf.TensorSpec([None, 28, 28, 1]), tf.TensorSpec([None], tf.int32)])
    for size in (7, 12):
        assert compiled(x[:size], y[:size]).shape == (size, 28, 28, 1)


def test_run_protocol_unions_match_flags_computed_independently(trained_cnn, tmp_path, monkeypatch):
    model, _, _ = trained_cnn
    from metaadv_tf import data

    x_all, y_all = data.load_arrays("fashion_mnist", "test", TINY.clean_examples)
    settings = TINY.settings(seen=["Linf"])
    assert settings["seen"] == ["Linf"] and settings["unseen"] == ["L2", "spatial"]
    metrics = run_protocol(model, "fashion_mnist", settings, cache_path=str(tmp_path / "cache.json"))

    x, y = x_all[:TINY.num_examples], y_all[:TINY.num_examples]
    clean = predictions(model, x) == y
    flags = {}
    for tm, spec in settings["attacks"].items():
        attack = get_attack_from(spec)
        keras.utils.set_random_seed(TINY.seed)
        adversarial = np.concatenate([attack(model, x[i:i + 20], y[i:i + 20]).numpy()
                                      for i in range(0, len(x), 20)])
        flags[tm] = clean & (predictions(model, adversarial) == y)
        assert metrics["robust_accuracy"][tm] == pytest.approx(flags[tm].mean())
    assert metrics["union"]["seen"] == pytest.approx(flags["Linf"].mean())
    assert metrics["union"]["unseen"] == pytest.approx((flags["L2"] & flags["spatial"]).mean())
    assert metrics["union"]["Lp"] == pytest.approx((flags["Linf"] & flags["L2"]).mean())
    assert metrics["clean_accuracy"] == pytest.approx(np.mean(predictions(model, x_all) == y_all))
    assert metrics["clean_accuracy_attacked"] == pytest.approx(clean.mean())

    # a rerun reads every attack from the cache: no attack runs again
    monkeypatch.setattr("metaadv_tf.evaluation._attack_step", _fail_if_called)
    again = run_protocol(model, "fashion_mnist", settings, cache_path=str(tmp_path / "cache.json"))
    assert again["robust_accuracy"] == metrics["robust_accuracy"]


def _fail_if_called(*args, **kwargs):
    raise AssertionError("an attack ran although its result was cached")


def test_protocol_settings_reject_unknown_threat_models():
    with pytest.raises(ValueError, match=r"Unknown threat model 'Linfinity'.*Linf"):
        TINY.settings(seen=["Linfinity"])
    with pytest.raises(ValueError, match="list of threat models"):
        TINY.settings(seen="Linf")


def test_protocol_settings_take_another_image_count():
    assert TINY.settings(["Linf"], 3) == {**TINY.settings(["Linf"]), "num_examples": 3}
    with pytest.raises(ValueError, match="num_examples must be a positive number of images. Received: 0"):
        TINY.settings(["Linf"], 0)


def test_clean_accuracy_counts_correct_predictions(trained_cnn):
    model, x, y = trained_cnn
    assert clean_accuracy(model, x[:37], y[:37], batch_size=10) == pytest.approx(
        np.mean(predictions(model, x[:37]) == y[:37]))


def test_benchmark_returns_clean_and_robust_fractions(trained_cnn, monkeypatch):
    model, _, _ = trained_cnn
    monkeypatch.setitem(PROTOCOLS._items, "tiny", TINY)
    result = benchmark(model, threat_model="L2", eps=1.0, n_examples=20, protocol="tiny", progress=False)
    assert set(result) >= {"clean", "robust"}
    assert result["eps"] == 1.0 and "eps=1.0" in result["attack"] and result["n_examples"] == 20
    assert 0.0 <= result["robust"] < result["clean"] <= 1.0
    with pytest.raises(ValueError, match="Unknown threat model 'L3'"):
        benchmark(model, threat_model="L3", protocol="tiny")
    with pytest.raises(ValueError, match="spatial threat model has no eps"):
        benchmark(model, threat_model="spatial", eps=0.1, protocol="tiny")


def test_seen_threat_models_follow_the_training_attacks():
    attacks = [get_attack("pgd_l2"), get_attack("fgsm"), get_attack("pgd_linf")]
    assert seen_threat_models(attacks) == ["Linf", "L2"]


def test_protocol_is_frozen_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.num_examples = 5  # type: ignore[misc]
