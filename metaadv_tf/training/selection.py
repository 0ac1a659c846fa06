"""Model selection against robust overfitting: validation records and the best checkpoint.

``validation.json`` in a workdir is the list of validation records ``{"step", "clean", "robust":
{attack label: accuracy}, "union"}`` (``union``: per-example worst case over the attacks, clean
included), rewritten atomically after each validation. ``best.weights.h5`` holds the weights of
the record with the highest ``union`` (ties: the earlier record). The training loop saves a
checkpoint of a step before it validates that step, and a record is written before the best
weights: after a crash in between, resuming from that checkpoint writes the weights again.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from metaadv_tf.io_utils import atomic_save, atomic_write_text, read_json

if TYPE_CHECKING:
    import keras

    from metaadv_tf.evaluation import EvaluationReport

VALIDATION_FILE = "validation.json"
BEST_WEIGHTS = "best.weights.h5"

Record = dict[str, Any]


class ValidationLog:
    """The validation records and best weights of ``workdir`` (read back when it exists)."""

    def __init__(self, workdir: str) -> None:
        self.path = os.path.join(workdir, VALIDATION_FILE)
        self.weights_path = os.path.join(workdir, BEST_WEIGHTS)
        self.records: list[Record] = read_json(self.path) or []

    @property
    def best(self) -> Record | None:
        """The record of highest union accuracy, the earliest among equals; None before any."""
        return max(self.records, key=lambda record: record["union"], default=None)

    def has(self, step: int) -> bool:
        """Whether ``step`` has been validated."""
        return any(record["step"] == step for record in self.records)

    def resume(self, step: int, model: keras.Model) -> None:
        """Prepares to continue from a checkpoint of ``step`` whose weights ``model`` holds.

        Drops records after ``step`` (left by a run resumed from an earlier checkpoint than its
        latest), and writes the best weights again when the best record is of ``step`` itself.
        Raises RuntimeError when the best record is after ``step``: its weights are out of reach.
        """
        best = self.best
        if best is not None and best["step"] > step:
            raise RuntimeError(
                f"{self.path} has its best record at step {best['step']}, after step {step} that the"
                f" run resumes from: {self.weights_path} holds weights this run will not reach again."
                f" Move both files aside to restart model selection from step {step}."
            )
        if any(record["step"] > step for record in self.records):
            self.records = [record for record in self.records if record["step"] <= step]
            self._write()
        if best is not None and best["step"] == step:
            atomic_save(self.weights_path, model.save_weights)

    def add(self, step: int, report: EvaluationReport, model: keras.Model) -> Record:
        """Records ``report`` of the weights ``model`` holds at ``step``; keeps them if best."""
        previous = self.best
        record = {"step": step, "clean": report.clean_accuracy, "robust": dict(report.robust_accuracy),
                  "union": report.worst_case_accuracy}
        self.records.append(record)
        self._write()
        if previous is None or record["union"] > previous["union"]:
            atomic_save(self.weights_path, model.save_weights)
        return record

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.records, indent=2) + "\n")
