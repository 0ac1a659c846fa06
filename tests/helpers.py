"""Helpers shared by the test modules (import as ``from helpers import ...``; tests/ is on sys.path)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from metaadv_tf import zoo
from metaadv_tf.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *flags: str, zoo_dir: Path | None = None,
               env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``scripts/<script>`` with ``flags`` in a subprocess (``$METAADV_ZOO_DIR`` = ``zoo_dir``)."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    if zoo_dir is not None:
        environment[zoo.ZOO_DIR_ENV] = str(zoo_dir)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *flags],
        capture_output=True, text=True, env=environment, timeout=timeout, cwd=ROOT,
    )


def train_tiny_run(workdir: Path) -> None:
    """10 standard steps of a width-4 CNN on 320 images: seconds, and ~45 % clean accuracy.

    (Adversarial methods stay at chance level for this many steps: no signal for the tests.)
    """
    config = TrainConfig(
        method="standard", model="cnn", model_args={"width": 4}, train_examples=320, steps=10,
        epochs=None, batch_size=32, learning_rate=0.01, checkpoint_every=10, log_every=10,
    )
    train(config, str(workdir), progress=False)
