"""Shared steps of the experiment scripts (ablation, leave-one-attack-out, few-shot adaptation)."""
from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any, Mapping, Sequence

from metaadv_tf import zoo
from metaadv_tf.io_utils import atomic_write_text
from metaadv_tf.training import TrainConfig, Trainer


def train_and_evaluate(
    config: TrainConfig, workdir: str, protocol: Mapping[str, Any], progress: bool = True
) -> dict[str, Any]:
    """Trains (or resumes) ``config`` in ``workdir`` and evaluates the model with ``protocol``
    (``zoo.evaluation_protocol``), resumably; returns budget and report as plain values."""
    trainer = Trainer(config, workdir)
    result = trainer.train(progress=progress)
    if result.stopped_by_signal is not None:  # a half-trained model is not a result
        raise SystemExit(f"Training in {workdir} stopped by signal {result.stopped_by_signal}; rerun to resume.")
    report = zoo.evaluate_protocol(trainer.model, config.dataset, protocol, progress=progress,
                                   cache_path=os.path.join(workdir, zoo.EVALUATION_CACHE))
    return {"train_seconds": result.train_seconds, "images_seen": result.images_seen,
            "steps": result.steps, "report": report.to_dict()}


def group_table(rows: Sequence[Mapping[str, Any]], name_key: str) -> str:
    """Clean, per-attack and worst seen / unseen accuracy (%) and training seconds, one row per
    ``train_and_evaluate`` record, labelled by ``record[name_key]``."""
    labels = list(rows[0]["report"]["robust_accuracy"])
    header = [name_key, "clean", *labels, "worst seen", "worst unseen", "train s"]
    return markdown_table(header, [
        [row[name_key], row["report"]["clean_accuracy"], *row["report"]["robust_accuracy"].values(),
         row["report"]["worst_case_by_group"]["seen"], row["report"]["worst_case_by_group"]["unseen"],
         f"{row['train_seconds']:.0f}"]
        for row in rows
    ])


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
