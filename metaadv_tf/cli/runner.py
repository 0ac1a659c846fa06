"""Runs a command-line program with absl: the one ``app.run`` behind every entry point."""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from absl import app, flags


def run(main: Callable[[list[str]], Any], flag_modules: Sequence[str]) -> None:
    """``app.run(main)``, with the flags defined in ``flag_modules`` listed by ``--help``.

    absl's ``--help`` lists the flags of the ``__main__`` module only, and an entry point's
    ``__main__`` is a stub that defines none. Example: ``run(_main, [__name__])``.
    """
    for module in flag_modules:
        for flag in flags.FLAGS.get_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main)
