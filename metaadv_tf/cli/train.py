"""Train a model with any method (standard, pgd_at, fgsm_rs, avg, max, sat, msd, mat, fomaml,
reptile).

    metaadv-train --method=mat --model=cnn --steps=500 --workdir=runs/cnn_mat
    metaadv-train --method=sat --train_attacks="pgd_linf(steps=7),pgd_l2(steps=7)" \
        --optimizer=sgd --learning_rate=0.05 --weight_decay=5e-4 --lr_schedule=cosine \
        --validation_examples=1000 --eval_every=200 --workdir=runs/cnn_sat

Rerun the same command to resume from the latest checkpoint in --workdir. TensorBoard:
``tensorboard --logdir runs/cnn_mat/tensorboard``. With --validation_examples, the run keeps
``validation.json`` and the best checkpoint ``best.weights.h5`` in --workdir.
"""
from __future__ import annotations

import json

from metaadv_tf.cli import runner

runner.import_tensorflow()  # quietly, before the imports below load it

from absl import app, flags  # noqa: E402

from metaadv_tf import flag_utils  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and results.", required=True)
flag_utils.define_train_flags()


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from metaadv_tf.training import Trainer

    config = flag_utils.exit_on_error(flag_utils.train_config_from_flags)
    trainer = flag_utils.exit_on_error(lambda: Trainer(config, FLAGS.workdir))
    result = flag_utils.exit_on_error(trainer.train)  # TrainingDivergedError is a RuntimeError
    print(json.dumps(result.__dict__, indent=2))
    return 128 + result.stopped_by_signal if result.stopped_by_signal else 0


def main() -> None:
    """Entry point of ``metaadv-train`` and ``scripts/train.py``: parses the flags, then trains."""
    runner.run(_main, [__name__, flag_utils.__name__])
