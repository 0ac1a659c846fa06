"""Training features of the threat-model study: sat, msd, optimizers and schedules, validation
with the best checkpoint, and publishing that checkpoint."""
import hashlib
import glob
import json
import shlex

import keras
import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf import publish, zoo
from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.attacks import get_attack
from metaadv_tf.data import load_arrays
from metaadv_tf.evaluation import EvaluationReport
from metaadv_tf.meta.functional import current_values, model_fn
from metaadv_tf.models import build_model
from metaadv_tf.msd import MultiSteepestDescent
from metaadv_tf.projections import lp_norm
from metaadv_tf.training import MetaConfig, TrainConfig, Trainer
from metaadv_tf.training.optimizers import StepSchedule, learning_rate, make_optimizer
from metaadv_tf.training.selection import BEST_WEIGHTS, VALIDATION_FILE, ValidationLog

FOUR_THREAT_MODELS = "pgd_linf(steps=2),pgd_l2(steps=2),pgd_l1(steps=2),spatial(samples=2)"


def study_config(method: str = "sat", **overrides) -> TrainConfig:
    """A run of seconds: a width-4 CNN on 256 Fashion-MNIST images, batch 16."""
    settings = dict(
        method=method, model="cnn", model_args={"width": 4}, train_examples=256, steps=4, epochs=None,
        batch_size=16, train_attacks=FOUR_THREAT_MODELS, checkpoint_every=100, log_every=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v.value) for v in model.weights]


def run_steps(trainer: Trainer, count: int) -> list[int]:
    """Runs ``count`` steps (after restoring a fresh trainer); returns each step's sampled task."""
    if int(trainer.step.numpy()) == 0:
        trainer.restore()
    batches = trainer.batches()
    return [int(trainer.next_step(batches)["task_ids"][0]) for _ in range(count)]


# --- sat -----------------------------------------------------------------------------------


def test_sat_trains_on_one_sampled_task_per_step_and_resumes_the_sampler(tmp_path):
    config = study_config(steps=8, train_attacks=FOUR_THREAT_MODELS.replace("=2", "=1"))
    trainer = Trainer(config, str(tmp_path))
    before = weights_of(trainer.model)
    tasks = run_steps(trainer, 5)
    trainer.manager.save(checkpoint_number=5)
    tasks += run_steps(trainer, 3)
    assert len(set(tasks)) > 1, tasks  # the task changes across steps (4 tasks, 8 draws)
    assert any(not np.array_equal(b, a) for b, a in zip(before, weights_of(trainer.model)))
    assert trainer.train_step.experimental_get_tracing_count() == 1
    resumed = Trainer(config, str(tmp_path))
    assert run_steps(resumed, 3) == tasks[5:]  # the restored sampler draws what it would have


def test_sat_attacks_the_whole_batch_with_the_sampled_task(tmp_path):
    config = study_config(train_attacks="fgsm,bim(steps=2),pgd_l2(steps=2,rand_init=False)")
    trainer = Trainer(config, str(tmp_path))
    x, y = load_arrays("fashion_mnist", "train", 16)
    params, state = current_values(trainer.model)
    model = model_fn(trainer.model, params, state)
    for index, task in enumerate(trainer.method.tasks.tasks):
        [examples] = trainer.method.examples(params, state, x, y, {"tasks": tf.constant([index])})
        np.testing.assert_allclose(examples, task.attack(model, x, y), atol=1e-6)


# --- msd -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_batch():
    """A width-4 CNN trained 30 steps (inference-mode logits), and 64 training images."""
    keras.utils.set_random_seed(0)
    model = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
    x, y = load_arrays("fashion_mnist", "train", 512)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return (lambda images: model(images, training=False)), x[:64], y[:64]


def per_example_loss(model, x, y) -> np.ndarray:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x)).numpy()


def one_steps(attacks, model, x, y) -> list[np.ndarray]:
    """Each attack's first step from ``x`` alone (no random start), by its own implementation."""
    steps = [get_attack(a.name, **{**a.settings, "steps": 1, "rand_init": False}) for a in attacks]
    return [step(model, x, y).numpy() for step in steps]


def test_msd_takes_each_norms_own_step_and_keeps_the_worst_candidate(cnn_batch):
    model, x, y = cnn_batch
    attacks = parse_attacks("pgd_linf(steps=1,step_size=0.05),pgd_l2(steps=1,step_size=1.0),"
                            "pgd_l1(steps=1,step_size=5.0)")
    singles = one_steps(attacks, model, x, y)
    for attack, single in zip(attacks, singles):
        np.testing.assert_allclose(MultiSteepestDescent((attack,))(model, x, y), single, atol=1e-5)
    losses = np.stack([per_example_loss(model, single, y) for single in singles])
    assert len(set(losses.argmax(0))) > 1  # different norms win for different examples
    worst = np.stack(singles)[losses.argmax(0), np.arange(len(x))]
    np.testing.assert_allclose(MultiSteepestDescent(tuple(attacks))(model, x, y), worst, atol=1e-5)


def test_msd_stays_in_the_union_and_beats_each_single_norm_step(cnn_batch):
    model, x, y = cnn_batch
    attacks = parse_attacks("pgd_linf(steps=3),pgd_l2(steps=3),pgd_l1(steps=3)")
    x_adv = MultiSteepestDescent(tuple(attacks))(model, x, y)
    assert x_adv.shape == x.shape and 0.0 <= np.min(x_adv) and np.max(x_adv) <= 1.0
    inside = np.stack([lp_norm(x_adv - x, a.norm).numpy() <= a.eps * (1 + 1e-5) for a in attacks])
    assert inside.any(axis=0).all()  # every example lies in one of the balls
    assert (~inside).any()  # ... and not trivially in all of them
    loss = per_example_loss(model, x_adv, y)
    single = np.stack([per_example_loss(model, s, y) for s in one_steps(attacks, model, x, y)])
    assert np.all(loss >= single.max(0) - 1e-5)  # from the same start, at least each one step
    assert loss.mean() > single.max(0).mean()  # and three steps do better than one


@pytest.mark.parametrize(
    "attacks, message",
    [
        ("pgd_linf(steps=7),pgd_l2(steps=5)", r"one number of steps .* \{'pgd_linf': 7, 'pgd_l2': 5\}"),
        ("spatial(samples=2)", r"MSD needs at least one Lp attack"),
        ("fgsm,pgd_l2", r"MSD takes the steps of the Lp attacks .* Received: fgsm"),
    ],
)
def test_msd_rejects_attacks_it_cannot_step(attacks, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        Trainer(study_config("msd", train_attacks=attacks), str(tmp_path))


def test_msd_trains_with_a_spatial_task(tmp_path):
    trainer = Trainer(study_config("msd", steps=2), str(tmp_path))
    assert [type(a).__name__ for a in trainer.method.attacks] == ["MultiSteepestDescent", "Attack"]
    result = trainer.train(progress=False)
    assert result.steps == 2 and np.isfinite(result.last_loss)


# --- optimizers and schedules --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, warmup, expected",
    [
        ("piecewise", 0, {0: 1.0, 49: 1.0, 50: 0.1, 74: 0.1, 75: 0.01, 99: 0.01}),
        ("cosine", 0, {0: 1.0, 50: 0.5, 100: 0.0}),
        ("cosine", 10, {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 55: 0.5, 100: 0.0}),
        ("constant", 4, {0: 0.25, 1: 0.5, 3: 1.0, 80: 1.0}),
    ],
)
def test_schedules_give_the_expected_rates(kind, warmup, expected):
    schedule = StepSchedule(0.2, kind, total_steps=100, warmup_steps=warmup)
    for step, factor in expected.items():
        assert float(schedule(step)) == pytest.approx(0.2 * factor, abs=1e-7), step


def test_constant_rate_without_warmup_stays_a_plain_number():
    config = study_config(optimizer="sgd")
    assert learning_rate(config, 10) == config.learning_rate  # as runs before schedules


@pytest.mark.parametrize("optimizer, expected", [("sgd", keras.optimizers.SGD),
                                                 ("adamw", keras.optimizers.AdamW)])
def test_optimizers_with_weight_decay(optimizer, expected):
    built = make_optimizer(study_config(optimizer=optimizer, weight_decay=0.01, lr_schedule="cosine"), 10)
    assert type(built) is expected and built.weight_decay == 0.01
    assert isinstance(built.learning_rate, tf.Tensor)  # the schedule's value at iteration 0


def test_scheduled_runs_resume_exactly(tmp_path):
    settings = dict(optimizer="sgd", learning_rate=0.05, weight_decay=0.01, lr_schedule="cosine",
                    warmup_steps=1)
    whole = Trainer(study_config("standard", steps=4, **settings), str(tmp_path / "whole"))
    whole.train(progress=False)
    Trainer(study_config("standard", steps=2, **settings), str(tmp_path / "split")).train(progress=False)
    resumed = Trainer(study_config("standard", steps=4, **settings), str(tmp_path / "split"))
    resumed.restore()
    schedule = StepSchedule(0.05, "cosine", total_steps=4, warmup_steps=1)
    assert float(resumed.optimizer.learning_rate) == pytest.approx(float(schedule(2)))
    resumed.train(progress=False)
    for a, b in zip(weights_of(whole.model), weights_of(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- validation and the best checkpoint ----------------------------------------------------


def image_hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


def test_validation_images_are_excluded_from_training_batches(tmp_path):
    config = study_config("standard", train_examples=320, validation_examples=64, batch_size=32)
    trainer = Trainer(config, str(tmp_path))
    assert trainer.train_size == 256 and trainer.steps_per_epoch == 8
    batches = trainer.batches()
    seen = [h for _ in range(8) for h in image_hashes(next(batches)[0].numpy())]
    first, _ = load_arrays("fashion_mnist", "train", 320)
    assert sorted(seen) == sorted(image_hashes(first[:256]))  # one epoch: exactly the first 256
    held_out, _, _ = trainer._eval_sets["validation"]
    assert image_hashes(held_out) == image_hashes(first[256:])


def validation_config(**overrides) -> TrainConfig:
    settings = dict(train_examples=320, validation_examples=64, batch_size=32, learning_rate=0.01,
                    eval_every=2, val_attacks="fgsm")
    return study_config("standard", **{**settings, **overrides})


def read_records(workdir) -> list[dict]:
    return json.loads((workdir / VALIDATION_FILE).read_text())


def test_best_checkpoint_holds_the_weights_of_the_best_validation_step(tmp_path):
    two_attacks = validation_config(steps=5, val_attacks="fgsm,pgd_linf(steps=2)")
    result = Trainer(two_attacks, str(tmp_path)).train(progress=False)
    records = read_records(tmp_path)
    assert [r["step"] for r in records] == [2, 4, 5]  # every eval_every steps, and at the end
    assert set(records[0]["robust"]) == {"fgsm", "pgd_linf"}
    assert all(r["union"] <= min(r["clean"], *r["robust"].values()) for r in records)
    best = max(records, key=lambda r: r["union"])
    saved = json.loads((tmp_path / "result.json").read_text())
    assert (saved["best_step"], saved["best_validation_accuracy"]) == (best["step"], best["union"])
    assert result.best_step == best["step"]
    # every validated step has a checkpoint: the best one's weights must be best.weights.h5's
    at_best = Trainer(two_attacks, str(tmp_path))
    at_best.checkpoint.restore(str(tmp_path / "checkpoints" / f"ckpt-{best['step']}")).expect_partial()
    stored = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
    stored.load_weights(tmp_path / BEST_WEIGHTS)
    for a, b in zip(weights_of(at_best.model), weights_of(stored)):
        np.testing.assert_array_equal(a, b)
    assert {"validation/worst_case_accuracy", "validation/robust_accuracy/fgsm"} <= summary_tags(tmp_path)


def summary_tags(workdir) -> set[str]:
    events = glob.glob(str(workdir / "tensorboard" / "events.*"))
    return {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}


def test_resumed_validation_keeps_the_best_and_redoes_a_missing_record(tmp_path):
    Trainer(validation_config(steps=4), str(tmp_path)).train(progress=False)
    records = read_records(tmp_path)
    (tmp_path / VALIDATION_FILE).write_text(json.dumps(records[:-1]))  # stopped before recording 4
    result = Trainer(validation_config(steps=6), str(tmp_path)).train(progress=False)
    again = read_records(tmp_path)
    assert [r["step"] for r in again] == [2, 4, 6] and again[0] == records[0]
    best = max(again, key=lambda r: r["union"])
    assert (result.best_step, result.best_validation_accuracy) == (best["step"], best["union"])


class _Report(EvaluationReport):
    def __init__(self, union: float) -> None:
        super().__init__(num_examples=1, clean_accuracy=1.0, robust_accuracy={"a": union},
                         worst_case_accuracy=union)


def test_validation_log_keeps_the_earlier_of_equal_records_and_reads_back(tmp_path):
    model = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
    log = ValidationLog(str(tmp_path))
    for step, union in [(2, 0.5), (4, 0.7), (6, 0.7), (8, 0.6)]:
        model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, step, np.float32))
        log.add(step, _Report(union), model)
    model.load_weights(tmp_path / BEST_WEIGHTS)
    assert float(model.layers[-1].kernel[0, 0]) == 4.0
    back = ValidationLog(str(tmp_path))
    assert back.best["step"] == 4 and back.has(8)
    back.resume(6, model)  # from an earlier checkpoint: the later record goes
    assert [r["step"] for r in ValidationLog(str(tmp_path)).records] == [2, 4, 6]
    with pytest.raises(RuntimeError, match="best record at step 4, after step 3"):
        back.resume(3, model)


def test_publish_best_checkpoint(tmp_path):
    run = tmp_path / "run"
    Trainer(validation_config(steps=4), str(run)).train(progress=False)
    best = max(read_records(run), key=lambda r: r["union"])
    card = publish.publish(str(run), "tiny_best", attacks="fgsm", num_examples=8, float16=False,
                       directory=str(tmp_path / "zoo"), checkpoint="best")
    assert card.train_steps == best["step"] and f"step {best['step']} of 4" in card.notes
    published = zoo.load_model("tiny_best", directory=str(tmp_path / "zoo"))
    stored = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
    stored.load_weights(run / BEST_WEIGHTS)
    for a, b in zip(published.get_weights(), stored.get_weights()):
        np.testing.assert_array_equal(a, b)
    plain = tmp_path / "plain"
    Trainer(study_config("standard", steps=1), str(plain)).train(progress=False)
    with pytest.raises(FileNotFoundError, match="no best validation checkpoint"):
        publish.publish(str(plain), "tiny_plain", directory=str(tmp_path / "zoo"), checkpoint="best")


def test_a_finished_run_loads_with_its_best_checkpoint_else_its_final_weights(tmp_path):
    from metaadv_tf.experiments import load_finished_run

    run, plain = tmp_path / "run", tmp_path / "plain"
    Trainer(validation_config(steps=4), str(run)).train(progress=False)
    Trainer(study_config("standard", steps=1), str(plain)).train(progress=False)
    best = max(read_records(run), key=lambda r: r["union"])
    config, result, model = load_finished_run(str(run))
    assert config.validation_examples == 64 and result["images_seen"] == best["step"] * 32
    for loaded, weights in ((model, run / BEST_WEIGHTS), (load_finished_run(str(plain))[2], plain / "final.weights.h5")):
        stored = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
        stored.load_weights(weights)
        for a, b in zip(loaded.get_weights(), stored.get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="is not a finished training run"):
        load_finished_run(str(tmp_path / "nothing"))


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lr_schedule="linear"), r"Unknown lr_schedule 'linear'.*constant, cosine, piecewise"),
        (dict(optimizer="rmsprop"), r"Unknown optimizer 'rmsprop'.*adam, adamw, sgd"),
        (dict(optimizer="sgd", weight_decay=-0.1),
         r"weight_decay must be a finite number >= 0. Received: weight_decay=-0.1"),
        (dict(weight_decay=0.01), r"use optimizer='adamw'.* Received: weight_decay=0.01"),
        (dict(warmup_steps=-1), r"warmup_steps must be an integer >= 0. Received: warmup_steps=-1"),
        (dict(validation_examples=256),
         r"smaller than the 256 training images .* Received: validation_examples=256"),
        (dict(train_examples=None, validation_examples=60001), r"smaller than the 60000 .*=60001"),
        (dict(val_attacks="fgsm"), r"val_attacks needs validation_examples > 0"),
    ],
)
def test_bad_values_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        study_config(**overrides)


def test_warmup_longer_than_the_run_is_rejected(tmp_path):
    message = r"warmup_steps must be smaller than the run's 4 steps. Received: warmup_steps=4"
    with pytest.raises(ValueError, match=message):
        Trainer(study_config("standard", optimizer="sgd", warmup_steps=4), str(tmp_path))


def test_train_command_rebuilds_a_study_config():
    from absl import flags

    from metaadv_tf import flag_utils

    if "method" not in flags.FLAGS:
        flag_utils.define_train_flags()
    config = study_config(
        "sat", optimizer="sgd", weight_decay=5e-4, lr_schedule="piecewise", warmup_steps=2,
        validation_examples=64, val_attacks="fgsm,pgd_l2(steps=2)",
        meta=MetaConfig(task_weights=(1.0, 2.0, 1.0, 1.0)),
    )
    arguments = shlex.split(publish.train_command(config, "runs/x"))[2:-1]  # no python, script, --workdir
    flags.FLAGS(["train.py", *arguments])
    try:
        assert flag_utils.train_config_from_flags() == config
        assert TrainConfig.from_json(config.to_json()) == config
    finally:
        flags.FLAGS.unparse_flags()
