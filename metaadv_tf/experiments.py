"""Shared steps of the experiment scripts (ablation, leave-one-attack-out, few-shot adaptation)."""
from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from metaadv_tf import data, zoo
from metaadv_tf.io_utils import atomic_save, atomic_write_text
from metaadv_tf.training import TrainConfig, Trainer, model_arguments

if TYPE_CHECKING:
    import keras


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


def load_run_model(config: TrainConfig, weights: str) -> "keras.Model":
    """The model a run of ``config`` trains, with the weights file ``weights`` loaded."""
    info = data.get_info(config.dataset)
    model = zoo.build_architecture(config.model, info.image_shape, info.num_classes, model_arguments(config))
    model.load_weights(weights)
    return model


def load_finished_run(workdir: str) -> tuple[TrainConfig, dict[str, Any], "keras.Model"]:
    """(config, result.json values, model) of the finished training run in ``workdir``: its best
    validation checkpoint when it kept one (``images_seen`` and ``steps`` then of that step), else
    its final weights."""
    from metaadv_tf.publish import best_checkpoint, read_run
    from metaadv_tf.training.selection import BEST_WEIGHTS

    config, result, weights = read_run(workdir)
    if os.path.isfile(os.path.join(workdir, BEST_WEIGHTS)):
        weights, result, _ = best_checkpoint(workdir, config, result, "")
    return config, result, load_run_model(config, weights)


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


def mean_std(values: Sequence[float]) -> str:
    """Mean ± standard deviation (ddof 1; 0 for one value) of accuracies, in %; "-" for none."""
    if not len(values):
        return "-"
    return f"{100 * np.mean(values):.1f} ± {100 * sample_std(values):.1f}"


def sample_std(values: Sequence[float]) -> float:
    """The standard deviation with ddof 1 (0 for a single value)."""
    return float(np.std(values, ddof=1 if len(values) > 1 else 0))


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


Curve = Mapping[float, Sequence[float]]


def plot_curves(panels: Mapping[str, Mapping[str, Curve]], path: str, *, xlabel: str, ylabel: str,
                log_x: bool = True) -> bool:
    """Writes a PNG: one panel per title of ``panels``, one line per label, accuracy (%) against x
    (with ``log_x`` a log scale, x = 0 drawn at 1): the mean of each x's values, with their
    standard deviation as error bars when there are several. Returns False, writing nothing,
    without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for axis, (title, curves) in zip(axes[0], panels.items()):
        for label, curve in curves.items():
            ks = sorted(curve)
            axis.errorbar([max(k, 1) if log_x else k for k in ks], [100 * np.mean(curve[k]) for k in ks],
                          yerr=[100 * sample_std(curve[k]) for k in ks], marker="o", capsize=3, label=label)
        axis.set(xscale="log" if log_x else "linear", xlabel=xlabel, ylabel=ylabel, title=title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    atomic_save(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    plt.close(figure)
    return True
