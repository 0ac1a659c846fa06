"""Helpers shared by the test modules (import as ``from helpers import ...``; tests/ is on sys.path)."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from metaadv_tf import zoo
from metaadv_tf.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *flags: str, zoo_dir: Path | None = None, env: dict | None = None,
               timeout: float = 600, folder: str = "scripts") -> subprocess.CompletedProcess:
    """Runs ``<folder>/<script>`` with ``flags`` in a subprocess (``$METAADV_ZOO_DIR`` = ``zoo_dir``)."""
    return subprocess.run(
        script_command(script, *flags, folder=folder), capture_output=True, text=True,
        env=script_environment(zoo_dir, env), timeout=timeout, cwd=ROOT,
    )


def start_script(script: str, *flags: str) -> subprocess.Popen:
    """Starts ``scripts/<script>`` with ``flags`` in the background, text output piped."""
    return subprocess.Popen(
        script_command(script, *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=script_environment(), cwd=ROOT,
    )


def script_command(script: str, *flags: str, folder: str = "scripts") -> list[str]:
    """The command line that runs ``<folder>/<script>`` with this Python."""
    return [sys.executable, str(ROOT / folder / script), *flags]


def script_environment(zoo_dir: Path | None = None, env: dict | None = None) -> dict:
    """The environment scripts run in: quiet TensorFlow, ``env``, and ``zoo_dir`` as the zoo."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    if zoo_dir is not None:
        environment[zoo.ZOO_DIR_ENV] = str(zoo_dir)
    return environment


def run_tiny_study(runs: Path, output: Path, *flags: str) -> subprocess.CompletedProcess:
    """scripts/experiments/threat_models.py with its runs in ``runs``, tiny: 512 training images
    (100 more validate), 1 epoch validated every 2 steps, protocol v2 on 8 test images."""
    return run_script("threat_models.py", "--train_examples=612", "--validation_examples=100", "--epochs=1",
                      "--eval_every=2", "--eval_examples=8", f"--workdir={runs}", f"--output={output}", *flags,
                      folder="scripts/experiments")


def train_tiny_run(workdir: Path) -> None:
    """10 standard steps of a width-4 CNN on 320 images: seconds, and ~45 % clean accuracy.

    (Adversarial methods stay at chance level for this many steps: no signal for the tests.)
    """
    config = TrainConfig(
        method="standard", model="cnn", model_args={"width": 4}, train_examples=320, steps=10,
        epochs=None, batch_size=32, learning_rate=0.01, checkpoint_every=10, log_every=10,
    )
    train(config, str(workdir), progress=False)


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serves ``directory`` with ``python -m http.server`` on 127.0.0.1 and yields its URL.

    The server binds port 0, so the system picks a free port; its start-up line names it.
    """
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        started = re.search(r" port (\d+) ", process.stdout.readline())
        assert started, "http.server did not start"
        yield f"http://127.0.0.1:{started[1]}/"
    finally:
        process.terminate()
        process.wait(timeout=30)
