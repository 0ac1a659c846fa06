"""evaluate() and EvaluationReport, on stand-in attacks whose outcome is known exactly."""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf.attack_specs import format_attack
from metaadv_tf.attacks import get_attack
from metaadv_tf.evaluation import EvaluationReport, evaluate
from metaadv_tf.models import SmallCNN

NUM_EXAMPLES = 10


def threshold_model(images: tf.Tensor) -> tf.Tensor:
    """Two-class logits: class 1 iff pixel (0, 0) is above 0.5."""
    pixel = images[:, 0, 0, 0]
    return tf.stack([0.5 - pixel, pixel - 0.5], axis=-1)


@dataclasses.dataclass
class FlipAttack:
    """Flips pixel (0, 0) of the examples whose id (pixel (0, 1) * 100) is in ``targets``."""

    name: str
    targets: tuple[int, ...]
    norm: Any = np.inf
    eps: float = 1.0
    settings: dict = dataclasses.field(default_factory=dict)
    eager_calls: list[bool] = dataclasses.field(default_factory=list)

    def __call__(self, model_fn, x, y=None):
        self.eager_calls.append(tf.executing_eagerly())
        ids = tf.cast(tf.round(x[:, 0, 1, 0] * 100), tf.int32)
        targets = tf.constant(self.targets or (-1,))
        hit = tf.reduce_any(tf.equal(ids[:, None], targets[None]), axis=1)
        corner = np.zeros((1,) + tuple(x.shape[1:]), np.float32)
        corner[0, 0, 0, 0] = 1.0
        return tf.where(hit[:, None, None, None], x + corner * (1.0 - 2.0 * x), x)


@pytest.fixture
def threshold_data() -> tuple[np.ndarray, np.ndarray]:
    """Images with ids 0..9 in pixel (0, 1); every label right except example 0's."""
    x = np.zeros((NUM_EXAMPLES, 4, 4, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(NUM_EXAMPLES) % 2 * 0.8 + 0.1
    x[:, 0, 1, 0] = np.arange(NUM_EXAMPLES) / 100
    y = (np.arange(NUM_EXAMPLES) % 2).astype(np.int32)
    y[0] = 1
    return x, y


@pytest.fixture(scope="module")
def cnn() -> SmallCNN:
    return SmallCNN(input_shape=(28, 28, 1), num_classes=10, width=4)


def test_worst_case_is_per_example_union(threshold_data):
    x, y = threshold_data
    a = FlipAttack("a", (1, 2))
    b = FlipAttack("b", (2, 3))
    c = FlipAttack("c", (0, 4))  # Flipping example 0 fixes it: still not robust.
    report = evaluate(
        threshold_model, x, y, [a, b, c], groups={"seen": ["a", "b"], "unseen": ["c"]}, batch_size=3
    )
    assert report.num_examples == NUM_EXAMPLES
    assert report.clean_accuracy == pytest.approx(0.9)
    assert report.robust_accuracy == pytest.approx({"a": 0.7, "b": 0.7, "c": 0.8})
    assert report.worst_case_accuracy == pytest.approx(0.5)
    assert report.worst_case_by_group == pytest.approx({"seen": 0.6, "unseen": 0.8})
    assert set(report.seconds) == {"a", "b", "c"}
    # Each attack is traced once: the last batch is padded to 3.
    assert a.eager_calls == [False]
    assert c.eager_calls == [False]


def test_same_attack_name_twice_is_labelled_by_eps(threshold_data):
    x, y = threshold_data
    attacks = [FlipAttack("pgd", (1,), eps=0.1), FlipAttack("pgd", (1, 2), eps=0.2)]
    report = evaluate(threshold_model, x, y, attacks, groups={"all_pgd": ["pgd"]})
    assert report.robust_accuracy == pytest.approx({"pgd(eps=0.1)": 0.8, "pgd(eps=0.2)": 0.7})
    assert report.worst_case_by_group == pytest.approx({"all_pgd": 0.7})


def test_clean_accuracy_matches_argmax(cnn):
    rng = np.random.default_rng(0)
    x = rng.random((7, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 7).astype(np.int32)
    expected = np.mean(np.argmax(cnn(x, training=False).numpy(), axis=-1) == y)
    report = evaluate(cnn, x, y, [FlipAttack("identity", ())], batch_size=4)
    assert report.clean_accuracy == pytest.approx(expected)
    assert report.robust_accuracy["identity"] == pytest.approx(expected)


def test_real_attacks_by_name_and_object(trained_cnn):
    """The accuracies equal flags computed by hand from the model's predictions on images the two
    (deterministic) attacks made, outside evaluate(), all 20 at once instead of batches of 8."""
    model, x, y = trained_cnn
    x, y = x[:20], y[:20]
    attacks = {"fgsm": get_attack("fgsm"), "pgd_l2": get_attack("pgd_l2", steps=2, rand_init=False)}
    report = evaluate(model, x, y, ["fgsm", attacks["pgd_l2"]], batch_size=8)

    def correct(images) -> np.ndarray:
        return np.argmax(model(images, training=False), axis=1) == y

    clean = correct(x)
    robust = {name: clean & correct(attack(model, x, y)) for name, attack in attacks.items()}
    worst = clean & robust["fgsm"] & robust["pgd_l2"]
    assert report.clean_accuracy == pytest.approx(clean.mean())
    assert report.robust_accuracy == pytest.approx({name: flags.mean() for name, flags in robust.items()})
    assert report.worst_case_accuracy == pytest.approx(worst.mean())
    assert max(flags.sum() for flags in robust.values()) < clean.sum()  # the attacks fooled some examples
    assert report.attack_settings["pgd_l2"]["steps"] == 2
    assert "| pgd_l2 | L2 | 1.5 |" in report.to_table()


def _images(shape=(2, 28, 28, 1), dtype=np.float32, fill=0.5) -> np.ndarray:
    return np.full(shape, fill, dtype)


@pytest.mark.parametrize(
    "x, y, attacks, match",
    [
        (_images((28, 28, 1)), [0, 1], None, "rank 4"),
        (_images((2, 32, 32, 1)), [0, 1], None, r"shape \[batch, 28, 28, 1\]"),
        (_images((2, 28, 28, 3)), [0, 1], None, r"shape \[batch, 28, 28, 1\]"),
        (_images(dtype=np.uint8, fill=255), [0, 1], None, "float32.*uint8"),
        (_images(fill=1.5), [0, 1], None, r"\[0, 1\]"),
        (np.where(np.arange(2)[:, None, None, None], np.nan, _images()).astype(np.float32),
         [0, 1], None, "NaN"),
        (_images((0, 28, 28, 1)), [], None, "at least one example"),
        (_images(), [0, 1, 2], None, r"shape \[2\]"),
        (_images(), [0, 10], None, r"\[0, 10\)"),
        (_images(), [0.0, 1.0], None, "integers"),
        (_images(), [0, 1], ["pgd_linff"], "Unknown attack 'pgd_linff'.*pgd_linf"),
        (_images(), [0, 1], [], "non-empty list"),
    ],
)
def test_invalid_inputs_raise(cnn, x, y, attacks, match):
    with pytest.raises(ValueError, match=match):
        evaluate(cnn, x, np.asarray(y), attacks if attacks is not None else [FlipAttack("a", ())])


def test_unknown_group_member_raises(threshold_data):
    x, y = threshold_data
    with pytest.raises(ValueError, match="Group 'seen': Unknown attack 'b'.*Expected one of: a"):
        evaluate(threshold_model, x, y, [FlipAttack("a", ())], groups={"seen": ["b"]})


def test_report_json_round_trip_and_table(tmp_path):
    report = EvaluationReport(
        num_examples=20,
        clean_accuracy=0.9,
        robust_accuracy={"fgsm": 0.5, "pgd_l2": 0.25},
        worst_case_accuracy=0.2,
        worst_case_by_group={"seen": 0.3},
        attack_settings={
            "fgsm": {"name": "fgsm", "norm": "inf", "eps": 0.1},
            "pgd_l2": {"name": "pgd_l2", "norm": 2, "eps": 1.5, "steps": 10},
        },
        seconds={"fgsm": 0.1, "pgd_l2": 1.0},
        metadata={"dataset": "fashion_mnist"},
    )
    path = tmp_path / "out" / "report.json"
    report.to_json(str(path))
    assert EvaluationReport.from_json(str(path)) == report
    assert os.listdir(path.parent) == ["report.json"]  # No temporary file left behind.
    table = report.to_table().splitlines()
    assert table[0] == "| attack | norm | eps | robust acc % |"
    assert table[2:] == [
        "| clean | - | - | 90.00 |",
        "| fgsm | Linf | 0.1 | 50.00 |",
        "| pgd_l2 | L2 | 1.5 | 25.00 |",
        "| worst case (all attacks) | - | - | 20.00 |",
        "| worst case (seen) | - | - | 30.00 |",
    ]


def test_evaluate_report_is_json_serializable(threshold_data, tmp_path):
    x, y = threshold_data
    attack = FlipAttack("a", (1,), settings={"steps": np.int64(3)})
    report = evaluate(threshold_model, x, y, [attack])
    report.to_json(str(tmp_path / "r.json"))
    loaded = EvaluationReport.from_json(str(tmp_path / "r.json"))
    assert loaded.attack_settings["a"] == {"name": "a", "norm": "inf", "eps": 1.0, "steps": 3}


@dataclasses.dataclass
class RandomFlipAttack(FlipAttack):
    """Flips pixel (0, 0) of a random half of the examples (a stateful random op)."""

    def __call__(self, model_fn, x, y=None):
        hit = tf.random.uniform(tf.shape(x)[:1]) < 0.5
        corner = np.zeros((1,) + tuple(x.shape[1:]), np.float32)
        corner[0, 0, 0, 0] = 1.0
        return tf.where(hit[:, None, None, None], x + corner * (1.0 - 2.0 * x), x)


def test_seeded_attack_does_not_depend_on_the_others(threshold_data, tmp_path):
    from metaadv_tf.evaluation_cache import EvaluationCache

    x, y = (np.tile(array, (20,) + (1,) * (array.ndim - 1)) for array in threshold_data)
    flags = []
    for attacks in ([RandomFlipAttack("noisy", ())], [RandomFlipAttack("other", ()), RandomFlipAttack("noisy", ())]):
        cache = EvaluationCache(str(tmp_path / f"{len(attacks)}.json"), "k")
        evaluate(threshold_model, x, y, attacks, seed=7, cache=cache)
        flags.append(cache.get("noisy", len(x), format_attack(attacks[-1]))[0])
    assert 0 < flags[0].sum() < len(x) - 20  # some examples flipped, some not
    np.testing.assert_array_equal(flags[0], flags[1])


def test_cache_resumes_an_interrupted_evaluation(cnn, tmp_path, monkeypatch):
    import metaadv_tf.evaluation as evaluation
    from metaadv_tf.evaluation_cache import EvaluationCache

    x = np.random.default_rng(4).uniform(size=(20, 28, 28, 1)).astype(np.float32)
    y = np.arange(20, dtype=np.int32) % 10
    attacks = [get_attack("fgsm", eps=0.05), get_attack("pgd_linf", eps=0.05, steps=2)]
    uninterrupted = evaluate(cnn, x, y, attacks, seed=1)
    path = str(tmp_path / "cache.json")
    evaluate(cnn, x, y, attacks[:1], seed=1, cache=EvaluationCache(path, "k"))  # "killed" after fgsm
    built = []
    original = evaluation._attack_step
    monkeypatch.setattr(evaluation, "_attack_step", lambda a, f: built.append(a.name) or original(a, f))
    resumed = evaluate(cnn, x, y, attacks, seed=1, cache=EvaluationCache(path, "k"))
    assert built == ["pgd_linf"]
    assert resumed.robust_accuracy == uninterrupted.robust_accuracy
    assert resumed.worst_case_accuracy == uninterrupted.worst_case_accuracy
    built.clear()
    stronger = [attacks[0], get_attack("pgd_linf", eps=0.05, steps=3)]
    evaluate(cnn, x, y, stronger, seed=1, cache=EvaluationCache(path, "k"))
    assert built == ["pgd_linf"]  # only the attack whose settings changed runs again
    built.clear()
    evaluate(cnn, x, y, attacks, seed=1, cache=EvaluationCache(path, "another model"))
    assert built == ["fgsm", "pgd_linf"]  # results under another key are not reused


def test_unreadable_cache_is_set_aside(tmp_path, caplog):
    from metaadv_tf.evaluation_cache import EvaluationCache

    path = tmp_path / "cache.json"
    path.write_text('{"key": "k", "results": {"clean": {"flags": "10"')  # truncated
    cache = EvaluationCache(str(path), "k")
    assert cache.get("clean", 2, "clean") is None
    assert "unreadable evaluation cache" in caplog.text
    cache.put("clean", np.array([True, False]), 1.5, "clean")
    flags, seconds = EvaluationCache(str(path), "k").get("clean", 2, "clean")
    assert flags.tolist() == [True, False] and seconds == 1.5
    assert EvaluationCache(str(path), "k").get("clean", 2, "fgsm(eps=0.1)") is None  # another attack


def test_one_trace_per_attack_is_not_reported_as_retracing(caplog):
    # TensorFlow warns when five traces fall in ten calls of functions sharing one code object
    attacks = [get_attack(name, steps=1) for name in ("pgd_linf", "bim", "mim", "pgd_l2", "cw_l2", "spsa")]
    model = SmallCNN(input_shape=(28, 28, 1), num_classes=10, width=4)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        evaluate(model, x, np.zeros(4, np.int64), attacks, batch_size=2)
    assert "retracing" not in caplog.text and "AutoGraph could not transform" not in caplog.text
