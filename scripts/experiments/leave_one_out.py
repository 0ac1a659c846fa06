"""Leave-one-attack-out: train MAT and AVG without one attack family, measure on that family.

    python scripts/experiments/leave_one_out.py --output=results/leave_one_out.md

For each family of --families, every method of --methods trains the small CNN on the other
families (same seed, same number of steps) and is evaluated on the first --eval_examples test
images under all families; the table reports accuracy on the held-out one. Runs live in
--workdir and resume when the script is rerun.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from metaadv_tf import zoo  # noqa: E402
from metaadv_tf.attack_specs import parse_attacks, split_specs  # noqa: E402
from metaadv_tf.experiments import markdown_table, train_and_evaluate, write_results  # noqa: E402
from metaadv_tf.training import MetaConfig, TrainConfig  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("families", "fgsm,pgd_linf(steps=3),pgd_l2(steps=3),mim(steps=3)",
                    "Attack families (specs); each is held out once.")
flags.DEFINE_list("methods", ["mat", "avg"], "Methods to compare.")
flags.DEFINE_integer("steps", 300, "Training steps per run (128 images per step).")
flags.DEFINE_integer("eval_examples", 500, "Test examples for the evaluation.")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_string("workdir", "runs/leave_one_out", "Where the runs live.")
flags.DEFINE_string("output", "results/leave_one_out.md", "The table (.json beside it).")


def run_config(method: str, train_attacks: str) -> TrainConfig:
    """The small CNN trained by ``method`` on ``train_attacks``, 128 images per step (MAT: 2 tasks
    x (32 + 32), or 1 task x (64 + 64) when only one attack is left)."""
    num_tasks = min(2, len(split_specs(train_attacks)))
    per_batch = 64 // num_tasks
    meta = MetaConfig(num_tasks=num_tasks, support_size=per_batch, query_size=per_batch, inner_steps=1)
    return TrainConfig(method=method, model="cnn", train_attacks=train_attacks, steps=FLAGS.steps,
                       epochs=None, batch_size=128, seed=FLAGS.seed, meta=meta, checkpoint_every=100)


def main(argv: list[str]) -> None:
    del argv
    specs = split_specs(FLAGS.families)
    attacks = parse_attacks(specs)
    protocol = zoo.evaluation_protocol(specs, FLAGS.eval_examples, groups={}, batch_size=250, seed=FLAGS.seed)
    rows, records = [], []
    for held_out, attack in zip(specs, attacks):
        trained_on = ",".join(spec for spec in specs if spec != held_out)
        accuracies = []
        for method in FLAGS.methods:
            workdir = os.path.join(FLAGS.workdir, f"without_{attack.name}", method)
            record = train_and_evaluate(run_config(method, trained_on), workdir, protocol)
            records.append({"held_out": held_out, "method": method, **record})
            accuracies += [record["report"]["clean_accuracy"], record["report"]["robust_accuracy"][attack.name]]
        rows.append([held_out, *accuracies])
    header = ["held-out family", *(f"{method} {column}" for method in FLAGS.methods
                                   for column in ("clean", "held-out acc"))]
    write_results(FLAGS.output, "Leave one attack family out", (
        f"Small CNN, Fashion-MNIST, {FLAGS.steps} steps x 128 images per run, seed {FLAGS.seed};"
        f" accuracy (%) on the first {FLAGS.eval_examples} test images under the family left out"
        " of training."
    ), markdown_table(header, rows), records)


if __name__ == "__main__":
    app.run(main)
