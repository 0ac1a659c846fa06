"""Runs a command-line program with absl: quiet output by default, and ``--help`` with its flags.

A program module calls ``import_tensorflow()`` before its other imports and ``run(_main, ...)``
from its ``main()``. By default its output is the program's own: no INFO lines (TFDS's, or
TensorFlow's C++ notices), no warnings from TensorFlow's Python side (retracing, deprecation,
AutoGraph), and Python warnings (e.g. a zoo research artifact's) as one ``Warning: ...`` line.
absl's ``--verbosity`` flag shows them: ``--verbosity=-1`` warnings, ``0`` INFO too;
``TF_CPP_MIN_LOG_LEVEL`` (default here: 2) governs TensorFlow's C++ lines as usual.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from typing import Any, Callable, Sequence

from absl import app, flags, logging

CPP_LOG_LEVEL = "2"  # TF_CPP_MIN_LOG_LEVEL unless set: C++ errors only
# a C++ log line of absl / TensorFlow: "I0000 00:00:1795804176.052986    7977 port.cc:153] ..."
_CPP_LOG_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
_CPP_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_NOT_INITIALIZED = "WARNING: All log messages before absl::InitializeLog() is called"


def import_tensorflow() -> None:
    """Imports TensorFlow, holding its start-up lines to ``TF_CPP_MIN_LOG_LEVEL`` (2 unless set).

    TensorFlow 2.21 writes its oneDNN notice (a C++ INFO line, after absl's warning that logging is
    not initialized) before it reads ``TF_CPP_MIN_LOG_LEVEL``. So the import runs with stderr going
    to a file, and every captured line comes back except those the level hides.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", CPP_LOG_LEVEL)
    if "tensorflow" in sys.modules:
        return
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = 0  # TensorFlow reads an unparsable level as 0 too
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        stderr = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(stderr, 2)
            os.close(stderr)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _hidden(line, level)))


def run(main: Callable[[list[str]], Any], flag_modules: Sequence[str] = ()) -> None:
    """``app.run(main)``, quiet unless ``--verbosity`` is given, with the flags defined in
    ``flag_modules`` listed by ``--help`` (absl lists the ``__main__`` module's only, and an entry
    point's ``__main__`` is a stub that defines none). Example: ``run(_main, [__name__])``.
    """
    for module in flag_modules:
        for flag in flags.FLAGS.get_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def configured(argv: list[str]) -> Any:
        if not flags.FLAGS["verbosity"].present:
            quiet_logs()
            warnings.formatwarning = one_line_warning
        return main(argv)

    app.run(configured)


def quiet_logs() -> None:
    """absl logs (TFDS uses them) from WARNING up; TensorFlow's Python logs from ERROR up."""
    import tensorflow as tf

    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")


def one_line_warning(message: Warning | str, category: type[Warning], *location: Any) -> str:
    """A Python warning as the program's own one line (``Warning: ...``), without the source line."""
    del category, location
    return f"Warning: {message}\n"


def _hidden(line: str, level: int) -> bool:
    """Whether ``TF_CPP_MIN_LOG_LEVEL=level`` hides C++ log line ``line`` (other lines: never)."""
    if line.startswith(_ABSL_NOT_INITIALIZED):
        return _CPP_SEVERITY["W"] < level
    match = _CPP_LOG_LINE.match(line)
    return bool(match) and _CPP_SEVERITY[match[1]] < level
