"""Few-shot adversarial fine-tuning: the library function, and scripts/finetune.py end to end."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf import data, publish, zoo
from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.finetune import finetune, inner_loop_settings
from metaadv_tf.training import MetaConfig
from helpers import run_script, train_tiny_run  # noqa: I100  (tests/ is on sys.path)
from test_zoo import TINY  # noqa: I100

ATTACK = "mim(eps=0.02,steps=2)"


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    train_tiny_run(root / "run")
    publish.publish(str(root / "run"), TINY, attacks=ATTACK, num_examples=20, directory=str(root / "zoo"))
    return root / "zoo"


@pytest.fixture(scope="module")
def shots():
    return data.load_arrays("fashion_mnist", "train", 8)


@pytest.mark.parametrize("optimizer, learning_rate, training_mode",
                         [("adam", 1e-2, False), ("sgd", 0.05, False), ("sgd", 0.05, True)])
def test_finetune_raises_robust_accuracy_on_its_shots_and_leaves_the_model(tiny_zoo, shots, optimizer,
                                                                           learning_rate, training_mode):
    model = zoo.load_model(TINY, directory=str(tiny_zoo))
    before = [np.array(w) for w in model.weights]
    x, y = shots
    attacks = parse_attacks("fgsm(eps=0.02)")

    def robust_accuracy(m: keras.Model) -> float:
        forward = lambda images: m(images, training=False)  # noqa: E731
        return float(np.mean(np.argmax(forward(attacks[0](forward, tf.constant(x), y)), -1) == y))

    tuned = finetune(model, attacks, x, y, steps=30, learning_rate=learning_rate, batch_size=8, optimizer=optimizer,
                     training_mode=training_mode)
    assert type(tuned) is type(model) and tuned is not model
    assert all(np.array_equal(b, np.array(w)) for b, w in zip(before, model.weights))
    assert robust_accuracy(tuned) > robust_accuracy(model)
    for original, new in zip(model.non_trainable_weights, tuned.non_trainable_weights):
        np.testing.assert_array_equal(original, new)  # the learned BatchNorm statistics are kept


def test_training_mode_steps_use_batch_statistics(tiny_zoo, shots):
    model = zoo.load_model(TINY, directory=str(tiny_zoo))
    tune = lambda mode: finetune(model, parse_attacks("fgsm(eps=0.02)"), *shots, steps=1,  # noqa: E731
                                 learning_rate=0.05, batch_size=8, optimizer="sgd", training_mode=mode)
    inference, training = tune(False), tune(True)
    # the same batch and attack: the steps differ only through the BatchNorm statistics
    assert not all(np.allclose(a, b) for a, b in zip(inference.trainable_weights, training.trainable_weights))


def test_steps_per_batch_takes_several_steps_on_one_adversarial_batch(tiny_zoo, shots):
    model = zoo.load_model(TINY, directory=str(tiny_zoo))
    x, y = shots
    attacks = parse_attacks("fgsm(eps=0.02)")  # deterministic
    tuned = finetune(model, attacks, x, y, steps=1, steps_per_batch=2, learning_rate=0.05, batch_size=8,
                     optimizer="sgd")
    # by hand: the 8 shots attacked once against the model, then two SGD steps on them
    manual = zoo.load_model(TINY, directory=str(tiny_zoo))
    forward = lambda images: manual(images, training=False)  # noqa: E731
    adversarial = attacks[0](forward, tf.constant(x), y)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, forward(adversarial))
        for variable, gradient in zip(manual.trainable_variables, tape.gradient(loss, manual.trainable_variables)):
            variable.assign_sub(0.05 * gradient)
    for expected, actual in zip(manual.trainable_weights, tuned.trainable_weights):
        np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_inner_loop_settings_adapt_as_the_meta_config_does():
    meta = MetaConfig(inner_steps=3, inner_learning_rate=0.02, support_size=16)
    assert inner_loop_settings(meta) == {"optimizer": "sgd", "learning_rate": 0.02, "batch_size": 16,
                                         "training_mode": True, "steps_per_batch": 3}


@pytest.mark.parametrize(
    "settings, message",
    [({"steps": 0}, "steps must be an integer >= 1"), ({"learning_rate": -1.0}, "learning_rate must be"),
     ({"steps_per_batch": 0}, "steps_per_batch must be an integer >= 1"),
     ({"optimizer": "rmsprop"}, "Unknown optimizer 'rmsprop'.*adam, sgd")],
)
def test_bad_settings_are_refused(tiny_zoo, shots, settings, message):
    model = zoo.load_model(TINY, directory=str(tiny_zoo))
    with pytest.raises(ValueError, match=message):
        finetune(model, parse_attacks("fgsm"), *shots, **{"steps": 1, **settings})


def test_finetune_script_end_to_end(tiny_zoo, tmp_path):
    workdir, export_dir = tmp_path / "work", tmp_path / "export" / "1"
    result = run_script(
        "finetune.py", f"--model={TINY}", f"--attacks={ATTACK}", "--shots=16", "--steps=2",
        "--batch_size=8", "--num_examples=20", f"--workdir={workdir}", f"--export_dir={export_dir}",
        zoo_dir=tiny_zoo,
    )
    assert result.returncode == 0, result.stderr
    assert "| mim |" in result.stdout and "| before % | after % |" in result.stdout
    report = json.loads((workdir / "finetune.json").read_text())
    assert (report["shots"], report["steps"], report["protocol"]["num_examples"]) == (16, 2, 20)
    assert report["protocol"]["groups"] == {"unseen": ["mim"]}
    card_metrics = zoo.get_card(TINY, directory=str(tiny_zoo)).metrics
    assert report["before"]["robust_accuracy"] == card_metrics["robust_accuracy"]  # same protocol, same model
    assert set(report["after"]["robust_accuracy"]) == {"mim"}
    tuned = zoo.load_model(TINY, pretrained=False, directory=str(tiny_zoo))
    tuned.load_weights(workdir / "finetuned.weights.h5")
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    x, _ = data.load_arrays("fashion_mnist", "test", 4)
    np.testing.assert_allclose(served(images=tf.constant(x))["logits"], tuned(x, training=False), atol=1e-5)
