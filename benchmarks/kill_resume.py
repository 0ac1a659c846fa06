"""Kill training with SIGKILL at random moments; check every rerun resumes and loses nothing.

    python benchmarks/kill_resume.py --trials=20 --seed=0 --output=results/kill_resume.json

An uninterrupted reference run of ``scripts/train.py`` (standard training of a width-4 CNN for
``--steps`` steps on ``--train_examples`` images, a checkpoint every ``--checkpoint_every`` steps)
gives the final weights and a timeline: when each checkpoint appeared, and when the process ended
(T). Trial i draws a moment t in the i-th of ``--trials`` equal slices of [0, T) (seeded by
``--seed``, so kills cover start-up, training, saving and the final writes) and replays it on a
fresh run of the same command: it waits for the last checkpoint the reference had at t, then for
the time the reference spent after it (or t itself, when t fell before the first checkpoint), and
sends SIGKILL. Then it checks:

- after the kill, every checkpoint listed in ``checkpoints/checkpoint`` reads back intact
  (`checkpoint_problem`: ``tf.train.load_checkpoint`` and every tensor's size and checksum), except
  one that TensorFlow's CheckpointManager was deleting (an "interrupted deletion": it lists a new
  checkpoint, then deletes the oldest, then lists the kept ones, so a kill in between leaves the
  oldest listed beyond the newest ``CHECKPOINTS_KEPT``, half deleted; the next save drops it);
- rerunning the same command in that workdir starts at the step of the latest listed checkpoint
  (0 when there is none), exits 0 at ``--steps`` steps with ``ckpt-<steps>`` the latest checkpoint,
  the listed checkpoints intact (same exception), and the reference's final weights bit for bit.
  A run that had written ``result.json`` before the kill (it writes it last, so the kill came during
  the interpreter's exit, or after the process ended) had finished: its rerun must train nothing and
  leave ``result.json`` byte for byte as it was (see `metaadv_tf.training.loop`).
  Standard training draws no random numbers in its steps, so a lost or repeated step or data batch
  would show. (Methods with random attack starts resume with a different random stream: see
  `metaadv_tf.training.loop`.)

Prints a line per trial and a summary of figures (``--output`` also writes them as JSON); exits 1
if any check fails. Stray files of an interrupted save (``ckpt-N_temp/``, an unlisted index or data
file, a state file's temporary copy) are counted: the rerun must ignore them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from metaadv_tf.io_utils import atomic_write_text  # noqa: E402
from metaadv_tf.training.loop import CHECKPOINTS_KEPT, checkpoint_problem, listed_checkpoint_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_integer("trials", 20, "Runs to kill and resume.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments.")
flags.DEFINE_integer("steps", 100, "Training steps of each run.")
flags.DEFINE_integer("checkpoint_every", 1, "Save a checkpoint every K steps.")
flags.DEFINE_integer("train_examples", 256, "Training images (batch size 16).")
flags.DEFINE_string("workdir", None, "Keep the runs here (default: a temporary directory).")
flags.DEFINE_string("output", None, "Also write the figures here as JSON.")

RUN_TIMEOUT_SECONDS = 600
POLL_SECONDS = 0.005
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclasses.dataclass
class Trial:
    """One kill and its resumption; ``failures`` lists every check that failed."""

    index: int
    moment: float  # t on the reference's timeline
    kill_seconds: float  # when the SIGKILL was sent, in seconds after the launch
    killed: bool  # False when the run had finished before the kill
    latest_at_kill: int  # step of the latest listed checkpoint after the kill (0: none)
    stray_files: int  # files of the checkpoint directory no listed checkpoint owns
    interrupted_deletions: int
    finished_at_kill: bool  # result.json was written before the kill: the rerun must change nothing
    resumed_from: int | None = None  # the rerun's first step (None: it returned the finished run's result)
    final_step: int | None = None
    failures: list[str] = dataclasses.field(default_factory=list)


def train_command(workdir: Path) -> list[str]:
    """The ``scripts/train.py`` command every run uses (only the workdir differs)."""
    return [
        sys.executable, str(ROOT / "scripts" / "train.py"), f"--workdir={workdir}", "--method=standard",
        '--model_args={"width": 4}', f"--train_examples={FLAGS.train_examples}", "--batch_size=16",
        "--learning_rate=0.01", f"--steps={FLAGS.steps}", f"--checkpoint_every={FLAGS.checkpoint_every}",
        "--log_every=10",
    ]


def launch(workdir: Path, log: Path) -> subprocess.Popen:
    """Starts a run in the background, its output going to ``log``."""
    with open(log, "w") as handle:
        return subprocess.Popen(train_command(workdir), stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=ENV)


def finish(workdir: Path, log: Path) -> dict:
    """Runs (or resumes) a run to the end; returns its result.json, or raises naming the log."""
    with open(log, "w") as handle:
        code = subprocess.run(train_command(workdir), stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                              env=ENV, timeout=RUN_TIMEOUT_SECONDS).returncode
    if code != 0:
        raise RuntimeError(f"the run exited with code {code}; see {log}")
    return json.loads((workdir / "result.json").read_text())


def listed_checkpoints(workdir: Path) -> list[str]:
    """Checkpoint prefixes listed in the state file, oldest first, the latest last ([] if none)."""
    state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
    if state is None:
        return []
    listed = [path for path in state.all_model_checkpoint_paths if path != state.model_checkpoint_path]
    return [*listed, state.model_checkpoint_path]


def step_of(prefix: str) -> int:
    """N of a checkpoint prefix .../ckpt-N."""
    return int(prefix.rsplit("-", 1)[1])


def record_timeline(workdir: Path, log: Path) -> tuple[list[tuple[float, int]], float]:
    """Runs to the end, polling: ([(seconds after launch, step) per new checkpoint], wall seconds)."""
    start, timeline = time.perf_counter(), []
    process = launch(workdir, log)
    while process.poll() is None:
        step = listed_checkpoint_step(str(workdir))
        if step and (not timeline or timeline[-1][1] != step):
            timeline.append((time.perf_counter() - start, step))
        time.sleep(POLL_SECONDS)
    if process.returncode != 0:
        raise RuntimeError(f"the reference run exited with code {process.returncode}; see {log}")
    return timeline, time.perf_counter() - start


def kill_at(moment: float, timeline: list[tuple[float, int]], workdir: Path, log: Path) -> tuple[float, bool]:
    """Replays ``moment`` of the reference on a new run and kills it: (seconds after launch, killed)."""
    anchor_seconds, anchor_step = max(((s, k) for s, k in timeline if s <= moment), default=(0.0, 0))
    start = time.perf_counter()
    process = launch(workdir, log)
    while anchor_step and process.poll() is None and listed_checkpoint_step(str(workdir)) < anchor_step:
        time.sleep(POLL_SECONDS)
    time.sleep(moment - anchor_seconds)
    killed = process.poll() is None
    process.kill()
    process.wait()
    return time.perf_counter() - start, killed


def check_checkpoints(workdir: Path, failures: list[str]) -> tuple[int, int, int]:
    """Checks the listed checkpoints; returns (latest step, stray files, interrupted deletions)."""
    listed = listed_checkpoints(workdir)
    being_deleted = listed[:-CHECKPOINTS_KEPT]
    for prefix in listed:
        problem = checkpoint_problem(prefix)
        if problem and prefix not in being_deleted:
            failures.append(f"listed checkpoint {os.path.basename(prefix)} is damaged: {problem}")
    owners = {"checkpoint", *(os.path.basename(prefix) for prefix in listed)}
    directory = workdir / "checkpoints"
    names = os.listdir(directory) if directory.exists() else []
    strays = [name for name in names
              if name.partition(".")[0] not in owners or name.startswith("checkpoint.")]
    deletions = sum(checkpoint_problem(prefix) is not None for prefix in being_deleted)
    return (step_of(listed[-1]) if listed else 0), len(strays), deletions


def final_weights(workdir: Path) -> dict[str, np.ndarray]:
    """Every array of a run's ``final.weights.h5``, by HDF5 path."""
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(workdir / "final.weights.h5", "r") as file:
        file.visititems(lambda name, item: arrays.update({name: item[()]})
                        if isinstance(item, h5py.Dataset) else None)
    return arrays


def run_trial(index: int, moment: float, timeline: list[tuple[float, int]], directory: Path,
              reference: dict[str, np.ndarray]) -> Trial:
    """Kills a fresh run at ``moment``, checks the workdir, resumes the run, checks the end."""
    workdir = directory / "run"
    kill_seconds, killed = kill_at(moment, timeline, workdir, directory / "killed.log")
    failures: list[str] = []
    latest, strays, deletions = check_checkpoints(workdir, failures)
    result_file = workdir / "result.json"
    stored = result_file.read_bytes() if result_file.exists() else None
    trial = Trial(index, moment, kill_seconds, killed, latest, strays, deletions, stored is not None,
                  failures=failures)
    try:
        result = finish(workdir, directory / "resumed.log")
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        failures.append(f"resuming failed: {error}")
        return trial
    trial.final_step = result["steps"]
    if stored is None:
        trial.resumed_from = result["start_step"]
        if trial.resumed_from != latest:
            failures.append(f"resumed from step {trial.resumed_from}, latest checkpoint is ckpt-{latest}")
    elif result_file.read_bytes() != stored:
        failures.append("the rerun of a finished run rewrote its result.json")
    final_latest, _, _ = check_checkpoints(workdir, failures)
    if not trial.final_step == final_latest == FLAGS.steps:
        failures.append(f"ended at step {trial.final_step}, latest ckpt-{final_latest},"
                        f" expected {FLAGS.steps}")
    weights = final_weights(workdir)
    if weights.keys() != reference.keys() or any(not np.array_equal(weights[k], reference[k])
                                                  for k in weights):
        failures.append("final weights differ from the uninterrupted run's")
    return trial


def resumed_text(trial: Trial) -> str:
    """How the rerun began: the step it resumed from, or that it returned the finished run's result."""
    if trial.finished_at_kill:
        return "result.json written before the kill, rerun returned it"
    return f"resumed from step {trial.resumed_from}"


def summary(trials: list[Trial], reference_seconds: float, first_checkpoint: float) -> dict:
    """The figures of all trials."""
    kills = [t.kill_seconds for t in trials]
    latest = [t.latest_at_kill for t in trials]
    return {
        "trials": len(trials),
        "failures": sum(bool(t.failures) for t in trials),
        "steps": FLAGS.steps,
        "checkpoint_every": FLAGS.checkpoint_every,
        "reference_seconds": round(reference_seconds, 2),
        "reference_first_checkpoint_seconds": round(first_checkpoint, 2),
        "kill_seconds": {"min": round(min(kills), 2), "median": round(statistics.median(kills), 2),
                         "max": round(max(kills), 2)},
        "latest_checkpoint_at_kill": latest,
        "kills_before_first_checkpoint": sum(t.killed and t.latest_at_kill == 0 for t in trials),
        "kills_during_training": sum(t.killed and 0 < t.latest_at_kill < FLAGS.steps for t in trials),
        "kills_after_the_run_ended": sum(not t.killed for t in trials),
        "kills_after_result_written": sum(t.finished_at_kill for t in trials),
        "kills_leaving_stray_files": sum(t.stray_files > 0 for t in trials),
        "interrupted_deletions": sum(t.interrupted_deletions for t in trials),
        "resumed_from_steps": [t.resumed_from for t in trials],
        "trial_details": [dataclasses.asdict(t) for t in trials],
    }


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    root = Path(FLAGS.workdir or tempfile.mkdtemp(prefix="kill_resume_"))
    (root / "reference").mkdir(parents=True, exist_ok=False)
    timeline, reference_seconds = record_timeline(root / "reference" / "run", root / "reference" / "run.log")
    reference = final_weights(root / "reference" / "run")
    first = timeline[0][0] if timeline else reference_seconds
    print(f"reference run: {FLAGS.steps} steps in {reference_seconds:.1f} s,"
          f" first checkpoint at {first:.1f} s", flush=True)
    rng = random.Random(FLAGS.seed)
    trials = []
    for index in range(FLAGS.trials):
        directory = root / f"trial-{index:02d}"
        directory.mkdir()
        moment = (index + rng.random()) * reference_seconds / FLAGS.trials
        trial = run_trial(index, moment, timeline, directory, reference)
        trials.append(trial)
        print(f"trial {index:2d}: t={moment:5.2f} s, SIGKILL {trial.kill_seconds:5.2f} s after launch"
              f"{'' if trial.killed else ' (run already ended)'}, latest ckpt-{trial.latest_at_kill},"
              f" {trial.stray_files} stray files, {resumed_text(trial)}, ended at"
              f" step {trial.final_step}: {'; '.join(trial.failures) or 'ok'}", flush=True)
    figures = summary(trials, reference_seconds, first)
    print(json.dumps({key: value for key, value in figures.items() if key != "trial_details"}, indent=2))
    if FLAGS.output:
        atomic_write_text(FLAGS.output, json.dumps(figures, indent=2) + "\n")
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    app.run(main)
