"""The package as pip installs it: TensorFlow left to the extras, console entry points."""
from __future__ import annotations

import subprocess
import sys

from helpers import ROOT  # noqa: I100  (tests/ is on sys.path)


def test_import_without_tensorflow_names_the_extras():
    # -S leaves site-packages (TensorFlow with it) off sys.path; the package needs only the stdlib to import
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import metaadv_tf"
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: metaadv_tf needs TensorFlow, which is not installed: pip install 'metaadv_tf[cpu]'"
        " (CPU) or 'metaadv_tf[gpu]' (NVIDIA GPU, Linux), or install a TensorFlow build yourself."
    )
