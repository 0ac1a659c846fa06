"""Shared steps of the experiment scripts (ablation, leave-one-attack-out, few-shot adaptation)."""
from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any, Sequence

from metaadv_tf import data
from metaadv_tf.attacks import Attack
from metaadv_tf.evaluation import evaluate
from metaadv_tf.io_utils import atomic_write_text
from metaadv_tf.training import TrainConfig, Trainer


def train_and_evaluate(
    config: TrainConfig,
    workdir: str,
    attacks: Sequence[Attack],
    groups: dict[str, list[str]],
    num_examples: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains (or resumes) ``config`` in ``workdir``, evaluates the model on the first
    ``num_examples`` test images of its dataset; returns budget and report as plain values."""
    trainer = Trainer(config, workdir)
    result = trainer.train(progress=progress)
    x, y = data.load_arrays(config.dataset, "test", num_examples)
    report = evaluate(trainer.model, x, y, list(attacks), groups=groups, batch_size=250, progress=progress)
    return {"train_seconds": result.train_seconds, "images_seen": result.images_seen,
            "steps": result.steps, "report": report.to_dict()}


def percent_row(cells: Sequence[Any]) -> str:
    """A Markdown table row; floats in [0, 1] are written as percentages with one decimal."""
    text = [f"{100 * c:.1f}" if isinstance(c, float) and 0.0 <= c <= 1.0 else str(c) for c in cells]
    return "| " + " | ".join(text) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells through ``percent_row``)."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *(percent_row(row) for row in rows)])


def write_results(output: str, title: str, description: str, table: str, records: Any) -> None:
    """Writes ``output`` (Markdown: title, description, the command that made it, the table) and
    ``records`` as JSON beside it (same name, ``.json``), both atomically; prints the table."""
    atomic_write_text(output, f"# {title}\n\n{description}\n\nProduced by"
                              f" `{script_command(sys.argv)}`.\n\n{table}\n")
    atomic_write_text(os.path.splitext(output)[0] + ".json", json.dumps(records, indent=2) + "\n")
    print(table)


def script_command(argv: Sequence[str]) -> str:
    """The command line that ran a script, for the results files."""
    return "python " + shlex.join([os.path.relpath(argv[0]), *argv[1:]])
