"""Ablation of the MAT extensions: the basic loop, each extension alone, and all together.

    python scripts/experiments/ablation.py --output=results/ablation.md

Every variant trains the small CNN on Fashion-MNIST with second-order MAT from the same seed for
the same number of steps (so the same images), then is evaluated on the first test examples:
clean, the training attacks ("seen") and attacks left out of training ("unseen"), with per-example
worst case over each group. Runs live in --workdir and resume when the script is rerun.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from metaadv_tf import zoo  # noqa: E402
from metaadv_tf.attack_specs import parse_attacks  # noqa: E402
from metaadv_tf.experiments import group_table, train_and_evaluate, write_results  # noqa: E402
from metaadv_tf.training import MetaConfig, TrainConfig  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 468, "Training steps per variant (468 x 128 images = 1 epoch).")
flags.DEFINE_integer("eval_examples", 500, "Test examples for the evaluation.")
flags.DEFINE_string("train_attacks", "fgsm,pgd_linf(steps=3)", "Training tasks (seen attacks).")
flags.DEFINE_string("unseen_attacks", "mim,pgd_l2,cw_l2,spsa", "Attacks left out of training.")
flags.DEFINE_list("variants", None, "Subset of variants to run (default: all).")
flags.DEFINE_integer("seed", 0, "Seed of every variant.")
flags.DEFINE_string("workdir", "runs/ablation", "Where the runs live.")
flags.DEFINE_string("output", "results/ablation.md", "The table (a .json with all numbers beside it).")

VARIANTS = {
    "basic": {},
    "task_encoding": {"task_encoding": True},
    "meta_batchnorm": {"meta_batchnorm": True},
    "meta_dropout": {"meta_dropout": True},
    "task_attention": {"task_attention": True},
    "all": {"task_encoding": True, "meta_batchnorm": True, "meta_dropout": True, "task_attention": True},
}


def variant_config(extensions: dict) -> TrainConfig:
    """Second-order MAT on the small CNN with ``extensions`` switched on."""
    meta = MetaConfig(num_tasks=2, support_size=32, query_size=32, inner_steps=1, **extensions)
    return TrainConfig(method="mat", model="cnn", train_attacks=FLAGS.train_attacks, steps=FLAGS.steps,
                       epochs=None, seed=FLAGS.seed, meta=meta, checkpoint_every=100)


def run_variant(name: str) -> dict:
    """Trains (or resumes) one variant and evaluates it; returns its row of numbers."""
    seen, unseen = parse_attacks(FLAGS.train_attacks), parse_attacks(FLAGS.unseen_attacks)
    groups = {"seen": [a.name for a in seen], "unseen": [a.name for a in unseen]}
    protocol = zoo.evaluation_protocol(f"{FLAGS.train_attacks},{FLAGS.unseen_attacks}", FLAGS.eval_examples,
                                       groups=groups, batch_size=250, seed=FLAGS.seed)
    row = train_and_evaluate(variant_config(VARIANTS[name]), os.path.join(FLAGS.workdir, name), protocol)
    return {"variant": name, **row}


def main(argv: list[str]) -> None:
    del argv
    names = FLAGS.variants or list(VARIANTS)
    rows = [run_variant(name) for name in names]
    write_results(FLAGS.output, "MAT extensions ablation", (
        f"Small CNN, Fashion-MNIST, second-order MAT, {FLAGS.steps} steps of 2 tasks x (32 + 32)"
        f" images, seed {FLAGS.seed}; robust accuracy (%) on the first {FLAGS.eval_examples} test"
        f" images. Seen = training attacks ({FLAGS.train_attacks}); unseen = {FLAGS.unseen_attacks}."
    ), group_table(rows, "variant"), rows)


if __name__ == "__main__":
    app.run(main)
