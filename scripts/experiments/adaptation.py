"""Quick adaptation to a new threat model (issue 16, point 6): accuracy on it against k.

    python scripts/experiments/adaptation.py --task_sets=no_L1,no_L2 --methods=mat,sat,max \
        --seeds=0,1,2 --ks=100,1000,10000 --finetune_steps=200 --output=results/adaptation.md

Every finished run of scripts/experiments/threat_models.py in ``--workdir/SET/METHOD_seedS`` is
adapted to a threat model T it never trained on: the one its task set leaves out (no_L1: L1, no_L2:
L2, no_spatial: spatial), or with ``--new_threat_model`` one beyond protocol v2's four, for any task
set, "all" included (``threat_study.NEW_THREAT_MODELS``; spatial30: rotations up to ±30° and shifts
up to ±3 px)::

    python scripts/experiments/adaptation.py --task_sets=all --methods=max,mat_worst_maxanchor_tasks4 \
        --seeds=0 --new_threat_model=spatial30 --output=results/adaptation_spatial30.md

Each run is adversarially fine-tuned from its best checkpoint on the first k training images against
T's training attack, for ``--finetune_steps`` batches whatever k (small k: many epochs), then
measured with protocol v2 (T's accuracy, T's attack added when T is new, and the union of v2's four
threat models; ``--measure=target``: T's attack alone). Fine-tunings: "adversarial" (every method:
``--optimizer``, ``--learning_rate``, batches of ``--batch_size``) and "mat-inner" (meta methods:
the run's own inner loop, `metaadv_tf.finetune.inner_loop_settings`). k = 0 is the trained model
(its ``v2.json`` when measured with the same settings). Missing or unfinished runs are skipped.
Each (run, fine-tuning, k) keeps its weights and results in the run's ``adaptation/`` folder, so
reruns resume. Writes the table, the numbers as JSON and (with matplotlib) a PNG plot beside
--output. Each point costs one protocol v2 evaluation (about 10-15 CPU-minutes on 1,000 images).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from metaadv_tf import data  # noqa: E402
from metaadv_tf import threat_study as study  # noqa: E402
from metaadv_tf.experiments import markdown_table, plot_curves, write_results  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("task_sets", ["no_L1", "no_L2"],
                  "Task sets that leave out one threat model (any task set with --new_threat_model).")
flags.DEFINE_enum("new_threat_model", None, list(study.NEW_THREAT_MODELS),
                  "Adapt to this threat model beyond protocol v2's instead of the held-out one.")
flags.DEFINE_list("methods", ["mat", "sat", "max", "avg", "msd"], "Methods whose runs are adapted.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the runs.")
flags.DEFINE_list("ks", ["100", "1000", "10000"], "Numbers of training images k (the first k).")
flags.DEFINE_list("finetunings", list(study.FINETUNINGS),
                  "adversarial (every method) and/or mat-inner (meta methods: their own inner loop).")
flags.DEFINE_integer("finetune_steps", 200, "Fine-tuning batches, the same for every k.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "Optimizer of the adversarial fine-tuning.")
flags.DEFINE_float("learning_rate", 1e-4, "Learning rate of the adversarial fine-tuning.")
flags.DEFINE_integer("batch_size", 128, "Batch size of the adversarial fine-tuning (at most k).")
flags.DEFINE_integer("eval_examples", None, "Attacked test images (default: protocol v2's).")
flags.DEFINE_enum("measure", "v2", ["v2", "target"],
                  "v2: every threat model of protocol v2 (and T); target: T's attack alone (ResNet-18: v2 takes"
                  " hours per point).")
flags.DEFINE_string("workdir", "runs/threat_models", "Where the study's runs live.")
flags.DEFINE_string("output", "results/adaptation.md", "The table (.json and .png beside it).")


def adapt(task_set: str, method: str, seed: int, ks: list[int], train: tuple) -> list[dict]:
    """The records of one run (none when it is missing or unfinished)."""
    directory = study.run_dir(FLAGS.workdir, task_set, method, seed)
    if not study.is_finished(directory):
        print(f"Skipping {directory}: no finished run with a best checkpoint.", flush=True)
        return []
    adversarial = {"optimizer": FLAGS.optimizer, "learning_rate": FLAGS.learning_rate,
                   "batch_size": FLAGS.batch_size}
    records = study.adapt_run(directory, *train, ks, FLAGS.finetunings, FLAGS.finetune_steps, adversarial,
                              FLAGS.eval_examples, FLAGS.new_threat_model, FLAGS.measure == "target")
    return [{"task_set": task_set, "method": method, "seed": seed, **record} for record in records]


def description(records: list[dict], plotted: bool) -> str:
    """What the table shows, and how it was made."""
    plot = (f"Plot: {os.path.splitext(os.path.basename(FLAGS.output))[0]}.png." if plotted
            else "No plot: matplotlib is not installed.")
    models = ", ".join(dict.fromkeys(study.model_name(r["model"]) for r in records))
    measured = "T's attack of protocol v2 alone" if FLAGS.measure == "target" else "protocol v2"
    return (f"{models} on Fashion-MNIST: each run's best checkpoint, adversarially fine-tuned on the first k"
            f" training images against the training attack of the threat model T adapted to for"
            f" {FLAGS.finetune_steps} batches (adversarial: {FLAGS.optimizer}, learning rate {FLAGS.learning_rate:g},"
            f" batches of min({FLAGS.batch_size}, k); mat-inner: the run's own inner loop), then measured with"
            f" {measured}. k = 0 is the trained model. Mean ± standard deviation over seeds (%). {plot}")


def plot(records: list[dict]) -> bool:
    """T's accuracy against k, one panel per task set, one line per method and fine-tuning."""
    target_of = study.targets(records)
    panels: dict[str, dict] = {}
    for (task_set, method, finetuning), curve in study.curves(records, study.target_accuracy).items():
        label = method if finetuning == "adversarial" else f"{method} ({finetuning})"
        panels.setdefault(f"{task_set}: fine-tuned on {target_of[task_set]}", {})[label] = curve
    return plot_curves(panels, os.path.splitext(FLAGS.output)[0] + ".png", xlabel="k (k = 0 drawn at 1)",
                       ylabel="accuracy on T (%)")


def main(argv: list[str]) -> None:
    del argv
    ks = sorted({int(k) for k in FLAGS.ks})
    if ks[0] < 1:
        raise app.UsageError(f"Need numbers of images k >= 1. Received: --ks={FLAGS.ks}")
    if FLAGS.new_threat_model is None and any(len(study.held_out(s)) != 1 for s in FLAGS.task_sets):
        raise app.UsageError(f"Need task sets that leave out one threat model, or --new_threat_model."
                             f" Received: --task_sets={FLAGS.task_sets}")
    train = data.load_arrays("fashion_mnist", "train", ks[-1])
    records = [record for task_set in FLAGS.task_sets for method in FLAGS.methods for seed in FLAGS.seeds
               for record in adapt(task_set, method, int(seed), ks, train)]
    if not records:
        raise SystemExit(f"No finished runs in {FLAGS.workdir} for these task sets, methods and seeds.")
    header = ["task set", "T", "method", "fine-tuning", "k", "seeds", "acc on T", "union of v2's four"]
    table = markdown_table(header, study.adaptation_rows(records))
    targets = study.target_lines(records)
    if targets:
        table += ("\n\nTarget (MAT reaches the best baseline's accuracy on T with at most k / 3 images):\n\n"
                  + "\n".join(targets))
    if unions := study.union_lines(records):
        table += ("\n\nThe union of v2's four after adaptation (does robustness to the other threat models survive"
                  " fine-tuning on T?):\n\n" + "\n".join(unions))
    write_results(FLAGS.output, "Quick adaptation to a threat model never trained on",
                  description(records, plot(records)), table, records)


if __name__ == "__main__":
    app.run(main)
