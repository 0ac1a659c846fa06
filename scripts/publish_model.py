"""Publish a finished training run to the model zoo: weights, evaluation and model card.

    python scripts/publish_model.py --workdir=runs/resnet18_mat --name=resnet18_mat

Writes ``zoo/<name>.weights.h5`` (float16 when that moves no logit by more than 1e-3, else
float32) and the card ``metaadv_tf/cards/<name>.json``, whose metrics come from the standard
protocol on the first ``--num_examples`` test images; ``python scripts/evaluate.py --model=<name>``
reproduces them. Then it prints the files to upload: installed copies of the package download
weights from the zoo's release (``metaadv_tf.zoo.DEFAULT_ZOO_URL``), and the card ships with the
next release of the package. Set ``$METAADV_ZOO_DIR`` (or ``--zoo_dir``) to publish both files to
another directory. ``--checkpoint=best`` publishes the run's best validation checkpoint
(``best.weights.h5``, from training with ``--validation_examples``) instead of its final weights.
``--status=research --status_reason="..."`` publishes a research artifact: kept for
reproducibility, hidden by ``list_models()`` unless asked, and ``load_model`` warns with the reason.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from metaadv_tf.cli import runner

runner.import_tensorflow()  # quietly, before the imports below load it

from absl import app, flags  # noqa: E402

from metaadv_tf import flag_utils, publish, zoo  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a finished training run.", required=True)
_NAME = flags.DEFINE_string("name", None, "Zoo name of the model, e.g. resnet18_mat.", required=True)
_ATTACKS = flags.DEFINE_string("attacks", zoo.STANDARD_ATTACKS, "Attack specs of the evaluation.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "Evaluate on the first N test images.")
_FLOAT16 = flags.DEFINE_bool(
    "float16", True, "Store float16 weights if no logit moves more than 1e-3 (else float32)."
)
_NOTES = flags.DEFINE_string("notes", "", "Free text for the card's notes.")
_THREAT_MODEL = flags.DEFINE_string(
    "threat_model", None, "Card threat model, e.g. Linf (default: from the training attacks)."
)
_EPS = flags.DEFINE_float("eps", None, "Card eps; give it with --threat_model.")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", "final", list(publish.PUBLISHED_CHECKPOINTS),
    "final: the run's last weights; best: its best validation checkpoint (best.weights.h5).",
)
_STATUS = flags.DEFINE_enum(
    "status", zoo.RECOMMENDED, list(zoo.STATUSES),
    "recommended: a model to use; research: a research artifact, kept for reproducibility.",
)
_STATUS_REASON = flags.DEFINE_string(
    "status_reason", "", "With --status=research: one line saying why it is not a model to use."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing entry of that name.")
_ZOO_DIR = flags.DEFINE_string(
    "zoo_dir", None, f"Directory for card and weights (default: ${zoo.ZOO_DIR_ENV}, else the checkout)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory (default: $METAADV_DATA_DIR).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if (_THREAT_MODEL.value is None) != (_EPS.value is None):
        raise app.UsageError("Give --threat_model and --eps together, or neither.")
    threat_model = (_THREAT_MODEL.value, _EPS.value) if _THREAT_MODEL.value else None
    card = flag_utils.exit_on_error(lambda: publish.publish(
        _WORKDIR.value, _NAME.value, attacks=_ATTACKS.value, num_examples=_NUM_EXAMPLES.value,
        float16=_FLOAT16.value, notes=_NOTES.value, threat_model=threat_model,
        overwrite=_OVERWRITE.value, directory=_ZOO_DIR.value, data_dir=_DATA_DIR.value, progress=True,
        checkpoint=_CHECKPOINT.value, status=_STATUS.value, status_reason=_STATUS_REASON.value,
    ))
    card_path, weights_path = publish.destinations(card.name, _ZOO_DIR.value)
    print(f"Published {card.name} ({card.weights_dtype} weights, sha256 {card.sha256[:12]}) -> {card_path}")
    print(f"clean {card.metrics['clean_accuracy']:.4f}, worst case {card.metrics['worst_case_accuracy']:.4f}")
    print(f"Files to upload to the zoo's download location ({zoo.DEFAULT_ZOO_URL}):\n  {weights_path}")
    if os.path.dirname(card_path) == zoo.PACKAGE_CARDS_DIR:
        print(f"Files to commit (cards ship in the package):\n  {card_path}")


if __name__ == "__main__":
    runner.run(main)
