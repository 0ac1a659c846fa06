"""Reliability: killed, interrupted or diverging training loses nothing, and every damaged file and
every misuse gets one clear error (from a script: exit code 1, last stderr line ``Error: ...``).

- Interrupted training, through ``scripts/train.py``: SIGKILL at random moments
  (``benchmarks/kill_resume.py``: 3 trials here, 20 with ``--runslow``), and one SIGKILL certain to
  land between the first checkpoint and the end; SIGINT and SIGTERM; a diverging loss.
  Determinism: two processes with the same seed and flags (standard, mat).
- Broken files: checkpoints here (damaged latest checkpoint or state file: an error; leftovers of a
  killed save: ignored). Zoo weights truncated, bit-flipped, a Git LFS pointer or missing, and
  cards with a missing, unknown or misnamed field: test_zoo.py; here through the scripts, with a
  card that is not JSON and a damaged ``.keras`` file.

Bad input, by kind, and where it is tested ("here": through a script's command line):

 1. unknown model name: test_zoo.py (zoo names); here train.py --model, export.py --model
 2. unknown attack: test_attacks.py, test_evaluation.py, test_training.py, and through
    evaluate.py --attacks in test_evaluate_script.py
 3. unknown dataset: test_data.py; here train.py --dataset
 4. unknown method: test_training.py; here train.py --method
 5. unknown strategy: test_training.py
 6. images of the wrong rank: test_evaluation.py, test_export.py (serving signature)
 7. images of the wrong size: test_evaluation.py, test_export.py
 8. wrong channel count: test_evaluation.py, test_export.py
 9. wrong dtype: test_evaluation.py, test_attacks.py, test_export.py
10. values outside [0, 1]: test_evaluation.py, test_export.py
11. NaN or Inf: test_evaluation.py (NaN); here Inf to evaluate() and finetune(), NaN and Inf to
    the serving signature
12. negative or zero eps: test_attacks.py, test_training.py; here evaluate.py --attacks
13. steps = 0: test_training.py, test_attacks.py, test_finetune.py; here finetune.py --steps
14. batch size larger than the dataset: test_data.py, test_training.py; here train.py --batch_size
15. task batch larger than the training attacks: test_training.py; here train.py --num_tasks
16. conflicting flags: here train.py --steps with --epochs, and a workdir holding a different run
    (also test_training.py)
17. wrong shapes and dtypes to the exported serving signature: test_export.py
18. malformed command lines: here train.py --model_args that is not JSON, a stray argument
19. an output that exists: here export.py --export_dir; test_zoo.py (publish)
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf

from metaadv_tf import publish, zoo
from metaadv_tf.attack_specs import parse_attacks
from metaadv_tf.evaluation import evaluate
from metaadv_tf.export import export_saved_model
from metaadv_tf.finetune import finetune
from metaadv_tf.models import SmallCNN, build_model
from metaadv_tf.training import CheckpointError, TrainConfig, Trainer, checkpoint_problem, train
from metaadv_tf.training.loop import listed_checkpoint_step
from helpers import run_script, start_script  # noqa: I100  (tests/ is on sys.path)
from test_training import tiny_config, weights_of  # noqa: I100
from test_zoo import _flip_a_bit, _lfs_pointer, _truncate  # noqa: I100

PARALLEL_SCRIPTS = 4  # scripts started at once: TensorFlow's start-up dominates their time
TINY_MODEL = ('--model_args={"width": 4}', "--train_examples=256")


def run_scripts(calls: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """``run_script(*args, **kwargs)`` for every ``key: (args, kwargs)``, a few at a time."""
    with ThreadPoolExecutor(PARALLEL_SCRIPTS) as pool:
        futures = {key: pool.submit(run_script, *args, **kwargs) for key, (args, kwargs) in calls.items()}
        return {key: future.result() for key, future in futures.items()}


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> re.Match:
    """Exit code 1, no traceback, and one error: the last stderr line ``Error: ...`` matching ``message``."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error: ")] == lines[-1:], result.stderr
    found = re.search(message, lines[-1])
    assert found, lines[-1]
    return found


def restored(workdir: Path, **changes) -> Trainer:
    """A trainer of the run in ``workdir`` (its config.json with ``changes``), latest checkpoint restored."""
    config = TrainConfig.from_json((workdir / "config.json").read_text())
    trainer = Trainer(dataclasses.replace(config, **changes), str(workdir))
    trainer.restore()
    return trainer


def wait_until(condition: Callable[[], bool], timeout: float = 300) -> None:
    """Polls ``condition`` until it holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- interrupted training ------------------------------------------------------------------


def run_kill_resume(tmp_path: Path, *flags: str) -> dict:
    output = tmp_path / "figures.json"
    result = run_script("kill_resume.py", f"--workdir={tmp_path / 'runs'}", f"--output={output}", *flags,
                        folder="benchmarks", timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(output.read_text())
    assert figures["failures"] == 0
    for trial in figures["trial_details"]:  # a finished run's rerun returns its result; others resume
        expected = None if trial["finished_at_kill"] else trial["latest_at_kill"]
        assert trial["resumed_from"] == expected, trial
    return figures


def test_sigkill_at_random_moments_resumes_from_the_latest_checkpoint(tmp_path):
    figures = run_kill_resume(tmp_path, "--trials=3", "--steps=10")
    assert figures["trials"] == 3


@pytest.mark.slow
def test_sigkill_20_trials(tmp_path):
    figures = run_kill_resume(tmp_path, "--trials=20", "--seed=0")
    assert figures["trials"] == 20 and figures["kills_during_training"] > 0


KILL_RUN_STEPS = 40
KILL_RUN = ("--method=standard", *TINY_MODEL, "--batch_size=16", "--learning_rate=0.01",
            f"--steps={KILL_RUN_STEPS}", "--checkpoint_every=1")
KILL_AFTER_CHECKPOINT = 3  # SIGKILL as soon as ckpt-3 is listed: training and saving are under way


def test_sigkill_during_training_resumes_to_the_uninterrupted_weights(tmp_path):
    """The fast guard of the random-moment trials above: a kill that certainly lands mid-run."""
    killed = tmp_path / "killed"
    reference = start_script("train.py", f"--workdir={tmp_path / 'reference'}", *KILL_RUN)
    process = start_script("train.py", f"--workdir={killed}", *KILL_RUN)
    try:
        wait_until(lambda: listed_checkpoint_step(str(killed)) >= KILL_AFTER_CHECKPOINT or process.poll() is not None)
        running = process.poll() is None
        process.kill()
        killed_output = process.communicate(timeout=60)
        reference_output = reference.communicate(timeout=300)
    finally:
        process.kill()
        reference.kill()
    assert running, f"the run ended before the kill: {killed_output[1][-3000:]}"
    assert reference.returncode == 0, reference_output[1]
    latest = listed_checkpoint_step(str(killed))
    assert KILL_AFTER_CHECKPOINT <= latest < KILL_RUN_STEPS  # after the first checkpoint, before the end
    assert checkpoint_problem(str(killed / "checkpoints" / f"ckpt-{latest}")) is None
    resumed = run_script("train.py", f"--workdir={killed}", *KILL_RUN)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert (result["start_step"], result["steps"], result["resumed_from"]) == (latest, KILL_RUN_STEPS, [latest])
    expected, ended = final_weights(tmp_path / "reference"), final_weights(killed)
    assert len(expected) == len(ended)
    for a, b in zip(expected, ended):  # standard training draws no random numbers: bit for bit
        np.testing.assert_array_equal(a, b)


def test_sigint_and_sigterm_save_a_checkpoint_and_exit_128_plus_signum(tmp_path):
    flags = ("--method=standard", *TINY_MODEL, "--batch_size=16", "--steps=100000", "--checkpoint_every=2")
    runs = {signum: (tmp_path / signum.name, start_script("train.py", f"--workdir={tmp_path / signum.name}",
                                                          *flags))
            for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for signum, (workdir, process) in runs.items():  # once a checkpoint exists, the handlers are on
            state = workdir / "checkpoints" / "checkpoint"
            wait_until(lambda state=state, process=process: state.exists() or process.poll() is not None)
            process.send_signal(signum)
        outputs = {signum: process.communicate(timeout=300) for signum, (_, process) in runs.items()}
    finally:
        for _, process in runs.values():
            process.kill()
    for signum, (workdir, process) in runs.items():
        stdout, stderr = outputs[signum]
        assert process.returncode == 128 + signum, stderr
        result = json.loads(stdout)
        assert result["stopped_by_signal"] == signum and 2 <= result["steps"] < 100000
        assert json.loads((workdir / "result.json").read_text()) == result
        trainer = restored(workdir)
        assert trainer.manager.latest_checkpoint.endswith(f"ckpt-{result['steps']}")
        assert int(trainer.step.numpy()) == result["steps"]  # resumes at the step reached


TWIN_RUNS = {
    "standard": ("--method=standard", "--batch_size=16", "--steps=4"),
    "mat": ("--method=mat", "--train_attacks=fgsm,pgd_linf(steps=2,rand_init=True)", "--num_tasks=2",
            "--support_size=8", "--query_size=8", "--steps=2"),  # PGD starts at a random point
}


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory) -> dict[str, list[Path]]:
    """Each TWIN_RUNS entry run twice, in two processes at once: {method: [workdir, workdir]}."""
    root = tmp_path_factory.mktemp("twins")
    workdirs = {method: [root / f"{method}-{i}" for i in (1, 2)] for method in TWIN_RUNS}
    results = run_scripts({
        str(workdir): (("train.py", f"--workdir={workdir}", *TINY_MODEL, "--seed=3", *TWIN_RUNS[method]), {})
        for method, pair in workdirs.items() for workdir in pair
    })
    for result in results.values():
        assert result.returncode == 0, result.stderr
    return workdirs


def final_weights(workdir: Path) -> list[np.ndarray]:
    model = build_model("cnn", input_shape=(28, 28, 1), num_classes=10, width=4)
    model.load_weights(workdir / "final.weights.h5")
    return model.get_weights()


@pytest.mark.parametrize("method", list(TWIN_RUNS))
def test_same_seed_and_flags_give_the_same_weights_in_two_processes(twin_runs, method):
    first, second = (final_weights(workdir) for workdir in twin_runs[method])
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# --- broken checkpoints --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished 4-step run with ckpt-2, ckpt-3 and ckpt-4."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config("standard", steps=4, checkpoint_every=1), str(workdir), progress=False)
    return workdir


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.mark.parametrize(
    "file, damage, message",
    [
        ("ckpt-4.data-00000-of-00001", _truncate,
         r"its data file \S+ckpt-4\.data-00000-of-00001 \(\d+ bytes\) is truncated or corrupted \(Read less"),
        ("ckpt-4.data-00000-of-00001", _flip_a_bit,
         r"its data file \S+ckpt-4\.data-00000-of-00001 \(\d+ bytes\) is truncated or corrupted \(.*"
         r"Checksum does not match"),
        ("ckpt-4.data-00000-of-00001", Path.unlink, r"its data file \S+ckpt-4\.data-\* is missing"),
        ("ckpt-4.index", Path.unlink, r"its index file \S+ckpt-4\.index is missing"),
        ("ckpt-4.index", _truncate, r"its index file \S+ckpt-4\.index is unreadable"),
    ],
    ids=["truncated_data", "bit_flip", "index_without_data", "data_without_index", "truncated_index"],
)
def test_damaged_latest_checkpoint_is_named_and_nothing_is_loaded(run_copy, file, damage, message):
    damage(run_copy / "checkpoints" / file)
    trainer = Trainer(TrainConfig.from_json((run_copy / "config.json").read_text()), str(run_copy))
    fresh = weights_of(trainer)
    expected = rf"Checkpoint \S+ckpt-4 is damaged and was not loaded: {message}.*\(ckpt-3, ckpt-2\)"
    with pytest.raises(CheckpointError, match=expected):
        trainer.restore()
    assert int(trainer.step.numpy()) == 0 and int(trainer.optimizer.iterations.numpy()) == 0
    assert all(np.array_equal(a, b) for a, b in zip(fresh, weights_of(trainer)))


@pytest.mark.parametrize("content", ["model_checkpoint_path: ", "", "\x00\x17garbage"])
def test_damaged_checkpoint_state_file_is_an_error_not_a_fresh_start(run_copy, content):
    (run_copy / "checkpoints" / "checkpoint").write_text(content)
    with pytest.raises(CheckpointError, match=r"checkpoint state file \S+checkpoints/checkpoint is damaged"):
        restored(run_copy)


def test_leftovers_of_a_killed_save_are_ignored_and_overwritten(run_copy):
    checkpoints = run_copy / "checkpoints"
    shard = checkpoints / "ckpt-5_temp" / "part-00000-of-00001.data-00000-of-00001"
    shard.parent.mkdir()  # a save killed while writing its shard (as seen in benchmarks/kill_resume.py)
    shard.with_name(f"{shard.name}.tempstate15903016994917538716").touch()
    shard.write_bytes(b"\0" * 100)  # ... or before merging it
    (checkpoints / "ckpt-5.index").write_bytes(b"half an index")  # ... while merging it
    shutil.copy(checkpoints / "ckpt-4.data-00000-of-00001", checkpoints / "ckpt-6.data-00000-of-00001")
    (checkpoints / "checkpoint.tmp0123456789abcdef").write_text('model_checkpoint_path: "ckpt-6"')
    trainer = restored(run_copy, steps=6)
    assert trainer.manager.latest_checkpoint.endswith("ckpt-4") and int(trainer.step.numpy()) == 4
    result = trainer.train(progress=False)
    assert (result.start_step, result.steps, result.resumed_from) == (4, 6, [4])
    assert [checkpoint_problem(str(checkpoints / f"ckpt-{step}")) for step in (4, 5, 6)] == [None] * 3


# --- bad input and broken files through the scripts ----------------------------------------


def add_zoo_entry(directory: Path, name: str) -> None:
    """Writes an untrained width-4 CNN as zoo entry ``name``: ``<name>.weights.h5`` and its card."""
    weights = directory / f"{name}.weights.h5"
    zoo.save_weights(SmallCNN(input_shape=(28, 28, 1), num_classes=10, width=4), str(weights))
    card = zoo.ModelCard(
        name=name, architecture="cnn", architecture_args={"width": 4}, dataset="fashion_mnist",
        input_shape=(28, 28, 1), num_classes=10, threat_model="none", eps=0.0, method="standard",
        train_config={}, train_command="", train_seconds=0.0, train_steps=0, images_seen=0,
        weights=weights.name, sha256=zoo.sha256_file(str(weights)), weights_dtype="float32",
        evaluation=zoo.evaluation_protocol("fgsm", 10), metrics={}, evaluations={}, golden={},
        notes="untrained",
    )
    (directory / f"{name}.json").write_text(card.to_json())


WORKDIR = "--workdir={workdir}"
DIVERGED = r"Training diverged at step (\d+): loss=\S+, gradient norm=\S+\. Nothing was saved after"
# (id, script, flags, zoo directory, message); "{name}" in a flag stands for a path of script_failures
SCRIPT_FAILURES = [
    ("diverging_loss", "train.py",
     [WORKDIR, "--method=standard", *TINY_MODEL, "--batch_size=16", "--steps=30", "--optimizer=sgd",
      "--learning_rate=1e12", "--checkpoint_every=1"], "zoo", DIVERGED),
    ("unknown_model", "train.py", [WORKDIR, "--model=resnet19"], "zoo",
     r"Unknown model architecture 'resnet19'\..* Expected one of: cnn, resnet18\.$"),
    ("unknown_dataset", "train.py", [WORKDIR, "--dataset=imagenet"], "zoo",
     r"Unknown dataset 'imagenet'\..* Expected one of: cifar10, fashion_mnist, mnist\.$"),
    ("unknown_method", "train.py", [WORKDIR, "--method=maml"], "zoo",
     r"Unknown method 'maml'\..* Expected one of: standard, pgd_at, fgsm_rs, avg, max, sat, msd, mat,"
     r" fomaml, reptile\.$"),
    ("batch_larger_than_data", "train.py",
     [WORKDIR, "--method=standard", "--train_examples=100", "--batch_size=128"], "zoo",
     r"A data batch needs 128 training images but fashion_mnist has 100"),
    ("task_batch_larger_than_attacks", "train.py", [WORKDIR, "--num_tasks=3"], "zoo",
     r"num_tasks=3 is larger than the number of training attacks \(2: fgsm, pgd_linf\)"),
    ("steps_and_epochs", "train.py", [WORKDIR, "--steps=5", "--epochs=1"], "zoo",
     r"Give exactly one of steps and epochs\. Received: steps=5, epochs=1\.0$"),
    ("workdir_of_another_run", "train.py", ["--workdir={other_run}"], "zoo",
     r"Workdir \S+ holds a run with a different configuration \(method: 'avg' -> 'mat'\)\."),
    ("model_args_not_json", "train.py", [WORKDIR, "--model_args={width: 4}"], "zoo",
     r"--model_args must be a JSON object\. Received: '\{width: 4\}'"),
    ("negative_eps", "evaluate.py", ["--model={keras}", "--attacks=fgsm(eps=-0.1)"], "zoo",
     r"eps must be a finite number > 0\. Received: eps=-0\.1$"),
    ("truncated_keras_file", "evaluate.py", ["--model={truncated_keras}"], "zoo",
     r"Model file \S+truncated\.keras is truncated or corrupted \(File is not a zip file\)"),
    ("card_not_json", "evaluate.py", ["--model=tiny"], "broken_zoo",
     r"Model card \S+broken\.json is not valid JSON"),
    ("unknown_zoo_model", "export.py", ["--model=tiyn", "--export_dir={workdir}"], "zoo",
     r"Unknown zoo model 'tiyn'\. Did you mean 'tiny'\? Expected one of: lfs, tiny, truncated\."),
    ("export_dir_exists", "export.py", ["--model=tiny", "--export_dir={existing}"], "zoo",
     r"\S+existing exists; choose a new export_dir or pass overwrite=True\.$"),
    ("truncated_zoo_weights", "export.py", ["--model=truncated", "--export_dir={workdir}"], "zoo",
     r"Weights file \S+truncated\.weights\.h5 is corrupted or truncated \(\d+ bytes\)"),
    ("lfs_pointer_zoo_weights", "finetune.py", ["--model=lfs", "--attacks=fgsm", WORKDIR], "zoo",
     r"Weights file \S+lfs\.weights\.h5 is a Git LFS pointer"),
    ("finetune_zero_steps", "finetune.py", ["--model=tiny", "--attacks=fgsm", "--steps=0", WORKDIR], "zoo",
     r"steps must be an integer >= 1\. Received: steps=0$"),
]


@pytest.fixture(scope="module")
def failures_dir(tmp_path_factory) -> Path:
    """Where script_failures keeps its files; case ``id`` has the workdir ``id``."""
    return tmp_path_factory.mktemp("failures")


@pytest.fixture(scope="module")
def script_failures(trained_run, failures_dir) -> dict[str, subprocess.CompletedProcess]:
    """Every SCRIPT_FAILURES case, train.py on a damaged checkpoint and with a stray argument."""
    root = failures_dir
    zoos = {"zoo": root / "zoo", "broken_zoo": root / "broken_zoo"}
    for directory in zoos.values():
        directory.mkdir()
    for name in ("tiny", "truncated", "lfs"):
        add_zoo_entry(zoos["zoo"], name)
    _truncate(zoos["zoo"] / "truncated.weights.h5")
    _lfs_pointer(zoos["zoo"] / "lfs.weights.h5")
    add_zoo_entry(zoos["broken_zoo"], "tiny")
    (zoos["broken_zoo"] / "broken.json").write_text('{"name": "broken", ')
    SmallCNN(input_shape=(28, 28, 1), num_classes=10, width=4).save(root / "tiny.keras")
    (root / "truncated.keras").write_bytes((root / "tiny.keras").read_bytes()[:1000])
    (root / "existing").mkdir()
    (root / "other_run").mkdir()
    other_run = dataclasses.replace(TrainConfig(), method="avg")  # the flags' defaults but the method
    (root / "other_run" / "config.json").write_text(other_run.to_json())
    damaged = Path(shutil.copytree(trained_run, root / "damaged_run"))
    _truncate(damaged / "checkpoints" / "ckpt-4.data-00000-of-00001")
    config = TrainConfig.from_json((damaged / "config.json").read_text())
    paths = {"keras": root / "tiny.keras", "truncated_keras": root / "truncated.keras",
             "existing": root / "existing", "other_run": root / "other_run"}

    def fill(flag: str, case: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda name: str({**paths, "workdir": root / case}[name[1]]), flag)

    calls = {case: ((script, *(fill(flag, case) for flag in flags)), {"zoo_dir": zoos[zoo_key]})
             for case, script, flags, zoo_key, _ in SCRIPT_FAILURES}
    calls["damaged_checkpoint"] = (("train.py", *shlex.split(publish.train_command(config, str(damaged)))[2:]),
                                   {"zoo_dir": zoos["zoo"]})
    calls["stray_argument"] = (("train.py", f"--workdir={root / 'stray'}", "steps=5"),
                               {"zoo_dir": zoos["zoo"]})
    return run_scripts(calls)


@pytest.mark.parametrize("case, message", [(case, message) for case, *_, message in SCRIPT_FAILURES],
                         ids=[case for case, *_ in SCRIPT_FAILURES])
def test_script_refuses_with_one_line_error(script_failures, case, message):
    assert_one_line_error(script_failures[case], message)


def test_train_script_names_a_damaged_checkpoint(script_failures):
    assert_one_line_error(
        script_failures["damaged_checkpoint"],
        r"Checkpoint \S+ckpt-4 is damaged and was not loaded: its data file \S+ckpt-4\.data-00000-of-00001"
        r" \(\d+ bytes\) is truncated or corrupted \(Read less bytes than requested\)\. Restore the file,"
        r" or set model_checkpoint_path in \S+checkpoint to an intact earlier checkpoint \(ckpt-3, ckpt-2\)",
    )


def test_diverged_run_keeps_the_last_good_checkpoint_latest(script_failures, failures_dir):
    workdir = failures_dir / "diverging_loss"
    found = assert_one_line_error(script_failures["diverging_loss"], DIVERGED)
    good = f"ckpt-{int(found[1]) - 1}"
    assert f"last good checkpoint ({workdir / 'checkpoints' / good}), which stays the latest" in found.string
    trainer = restored(workdir)
    assert trainer.manager.latest_checkpoint.endswith(good)
    assert all(np.isfinite(w).all() for w in weights_of(trainer))
    lower = dataclasses.replace(trainer.config, learning_rate=1e-3)  # needs a new workdir, as the error says
    with pytest.raises(ValueError, match=r"configuration \(learning_rate: 1000000000000.0 -> 0.001\)"):
        Trainer(lower, str(workdir))


def test_train_script_refuses_a_stray_argument(script_failures):
    result = script_failures["stray_argument"]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("Unexpected arguments: steps=5")


# --- bad input to the library --------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn() -> SmallCNN:
    return SmallCNN(input_shape=(28, 28, 1), num_classes=10, width=4)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_images_are_refused(cnn, value):
    x = np.full((2, 28, 28, 1), 0.5, np.float32)
    x[1, 3, 4, 0] = value
    y = np.array([0, 1], np.int32)
    message = r"Images contain 1 NaN or Inf values; expected finite values in \[0, 1\]\."
    with pytest.raises(ValueError, match=message):
        evaluate(cnn, x, y, ["fgsm"])
    with pytest.raises(ValueError, match=message):
        finetune(cnn, parse_attacks("fgsm"), x, y, steps=1)


@pytest.fixture(scope="module")
def serving_default(cnn, tmp_path_factory):
    exported = export_saved_model(cnn, str(tmp_path_factory.mktemp("export") / "1"))
    return tf.saved_model.load(exported).signatures["serving_default"]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_serving_signature_refuses_non_finite_images(serving_default, value):
    images = np.full((2, 28, 28, 1), 0.5, np.float32)
    images[0, 0, 0, 0] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must lie in \[0, 1\]"):
        serving_default(images=tf.constant(images))
