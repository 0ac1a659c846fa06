"""Fine-tune a zoo model against new attacks from a few examples, and measure the gain.

    metaadv-finetune --model=resnet18_mat --attacks=mim,pgd_l2 --shots=100 --steps=50 \
        --workdir=runs/resnet18_mat_ft --export_dir=exports/resnet18_mat_ft/1

Trains on the first ``--shots`` training images (adversarial versions regenerated every step
against the current weights), evaluates the attacks on the first ``--num_examples`` test images
before and after, and writes ``finetune.json`` (both reports) and ``finetuned.weights.h5`` into
``--workdir``; ``--export_dir`` also writes a SavedModel.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

from metaadv_tf.cli import runner

runner.import_tensorflow()  # quietly, before the imports below load it

from absl import app, flags  # noqa: E402

from metaadv_tf import flag_utils  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "Zoo model name.", required=True)
_ATTACKS = flags.DEFINE_string("attacks", None, "Attack specs to adapt to, e.g. 'mim,pgd_l2'.", required=True)
_SHOTS = flags.DEFINE_integer("shots", 100, "Fine-tune on the first N training examples.")
_STEPS = flags.DEFINE_integer("steps", 50, "Fine-tuning steps.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-4, "Learning rate of --optimizer.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "sgd: as MAT's inner loop.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Examples per step (at most --shots).")
_TRAINING_MODE = flags.DEFINE_bool(
    "training_mode", False, "Layers in training mode (BatchNorm batch statistics), as MAT's inner loop."
)
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 500, "Evaluate on the first N test examples.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of batch sampling and the attacks' randomness.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the report and weights.", required=True)
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Also export a SavedModel here.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory (default: $METAADV_DATA_DIR).")


def run() -> dict:
    """Fine-tunes and evaluates as the flags say; returns the report written to the workdir."""
    from metaadv_tf import data, zoo
    from metaadv_tf.attack_specs import parse_attacks
    from metaadv_tf.export import export_saved_model
    from metaadv_tf.finetune import finetune
    from metaadv_tf.io_utils import atomic_write_text
    from metaadv_tf.validation import check_positive, check_positive_int

    for flag in (_SHOTS, _STEPS, _BATCH_SIZE):  # before the evaluation, which can take minutes
        check_positive_int(flag.name, flag.value)
    check_positive(_LEARNING_RATE.name, _LEARNING_RATE.value)
    card = zoo.get_card(_MODEL.value)
    protocol = zoo.evaluation_protocol(
        _ATTACKS.value, _NUM_EXAMPLES.value, groups=card.evaluation["groups"], seed=_SEED.value
    )
    model = zoo.load_model(_MODEL.value)
    x, y = data.load_arrays(card.dataset, "train", _SHOTS.value, _DATA_DIR.value)

    def evaluate(m):
        return zoo.evaluate_protocol(m, card.dataset, protocol, data_dir=_DATA_DIR.value).to_dict()

    before = evaluate(model)
    start = time.perf_counter()
    tuned = finetune(
        model, parse_attacks(protocol["attacks"]), x, y, steps=_STEPS.value,
        learning_rate=_LEARNING_RATE.value, batch_size=_BATCH_SIZE.value, optimizer=_OPTIMIZER.value,
        seed=_SEED.value, training_mode=_TRAINING_MODE.value,
    )
    seconds = time.perf_counter() - start
    weights = os.path.join(_WORKDIR.value, "finetuned.weights.h5")
    zoo.save_weights(tuned, weights)
    export_dir = export_saved_model(tuned, _EXPORT_DIR.value) if _EXPORT_DIR.value else None
    report = {
        "model": _MODEL.value, "protocol": protocol, "shots": _SHOTS.value, "steps": _STEPS.value,
        "optimizer": _OPTIMIZER.value, "learning_rate": _LEARNING_RATE.value, "batch_size": _BATCH_SIZE.value,
        "seed": _SEED.value, "training_mode": _TRAINING_MODE.value,
        "finetune_seconds": seconds, "weights": weights, "export_dir": export_dir,
        "before": before, "after": evaluate(tuned),
    }
    atomic_write_text(os.path.join(_WORKDIR.value, "finetune.json"), json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict) -> str:
    """A Markdown table of accuracies (%) before and after fine-tuning."""
    before, after = report["before"], report["after"]
    rows = [("clean", before["clean_accuracy"], after["clean_accuracy"])]
    rows += [(label, accuracy, after["robust_accuracy"][label])
             for label, accuracy in before["robust_accuracy"].items()]
    rows.append(("worst case", before["worst_case_accuracy"], after["worst_case_accuracy"]))
    lines = ["| attack | before % | after % |", "| --- | ---: | ---: |"]
    return "\n".join(lines + [f"| {name} | {100 * b:.2f} | {100 * a:.2f} |" for name, b, a in rows])


def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    report = flag_utils.exit_on_error(run)
    print(summary(report))


def main() -> None:
    """Entry point of ``metaadv-finetune`` and ``scripts/finetune.py``: parses the flags, then fine-tunes."""
    runner.run(_main, [__name__])
