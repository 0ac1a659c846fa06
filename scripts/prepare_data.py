"""Prepares a dataset for offline use: `python scripts/prepare_data.py --dataset fashion_mnist`.

Fashion-MNIST is built from the Debian package `dataset-fashion-mnist` when it is installed (no
internet needed); other datasets are downloaded by tensorflow-datasets.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from metaadv_tf.cli import runner

runner.import_tensorflow()  # quietly, before the imports below load it

from absl import app, flags  # noqa: E402

from metaadv_tf import data  # noqa: E402

_DATASET = flags.DEFINE_enum(
    "dataset", "fashion_mnist", data.list_datasets(), "Dataset to prepare."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, f"Data directory (default: ${data.DATA_DIR_ENV} or ~/tensorflow_datasets)."
)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    start = time.monotonic()
    try:
        data_dir = data.prepare(_DATASET.value, _DATA_DIR.value)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{_DATASET.value} is prepared in {data_dir} ({time.monotonic() - start:.1f} s).")
    return 0


if __name__ == "__main__":
    runner.run(main)
