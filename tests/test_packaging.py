"""The package as pip installs it: TensorFlow left to the extras, console entry points."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from helpers import ROOT  # noqa: I100  (tests/ is on sys.path)

CLI_MODULES = ("train", "evaluate", "finetune", "export")


def test_import_without_tensorflow_names_the_extras():
    # -S leaves site-packages (TensorFlow with it) off sys.path; the package needs only the stdlib to import
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import metaadv_tf"
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: metaadv_tf needs TensorFlow, which is not installed: pip install 'metaadv_tf[cpu]'"
        " (CPU) or 'metaadv_tf[gpu]' (NVIDIA GPU, Linux), or install a TensorFlow build yourself."
    )


def test_console_entry_points_run_the_cli_modules():
    declared = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")
                if entry.name.startswith("metaadv-")}
    assert declared == {f"metaadv-{name}": f"metaadv_tf.cli.{name}:main" for name in CLI_MODULES}
    result = subprocess.run([str(Path(sys.executable).parent / "metaadv-train"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert "--workdir: Directory for checkpoints" in result.stdout  # the module's own flags
    assert "--inner_steps: Inner SGD steps per task." in result.stdout  # and the shared training flags
