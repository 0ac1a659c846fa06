"""Export a zoo model or a .keras file as a SavedModel for TensorFlow Serving.

    metaadv-export --model=cnn_mat_anchored --export_dir=exports/cnn_mat_anchored/1

Signatures: ``serving_default`` (float32 ``images`` in [0, 1]) and ``serving_uint8`` (uint8
``images`` in 0-255), both returning ``logits``, ``probabilities`` and ``classes``. TensorFlow
Serving expects numbered version directories: export to ``<base>/<version>``.
"""
from __future__ import annotations

from collections.abc import Sequence

from metaadv_tf.cli import runner

runner.import_tensorflow()  # quietly, before the imports below load it

from absl import app, flags  # noqa: E402

from metaadv_tf import flag_utils  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "A zoo model name or a .keras file.", required=True)
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "SavedModel directory to write.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing export_dir.")


def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from metaadv_tf.export import export_saved_model
    from metaadv_tf.zoo import resolve_model

    path = flag_utils.exit_on_error(lambda: export_saved_model(
        resolve_model(_MODEL.value), _EXPORT_DIR.value, overwrite=_OVERWRITE.value))
    print(f"Exported {_MODEL.value} -> {path} (signatures: serving_default, serving_uint8)")


def main() -> None:
    """Entry point of ``metaadv-export`` and ``scripts/export.py``: parses the flags, then exports."""
    runner.run(_main, [__name__])
