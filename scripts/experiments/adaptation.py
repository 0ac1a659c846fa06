"""Quick adaptation to a new threat model (issue 16, point 6): held-out accuracy against k.

    python scripts/experiments/adaptation.py --task_sets=no_L1,no_L2 --methods=mat,sat,max \
        --seeds=0,1,2 --ks=100,1000,10000 --finetune_steps=200 --output=results/adaptation.md

Every finished run of scripts/experiments/threat_models.py in ``--workdir/SET/METHOD_seedS`` whose
task set leaves out one threat model T (no_L1: L1, no_L2: L2, no_spatial: spatial) is adversarially
fine-tuned from its best checkpoint on the first k training images against T's training attack, for
``--finetune_steps`` batches whatever k (small k: many epochs), then measured with protocol v2 (T's
accuracy and the union of all four threat models). Fine-tunings: "adversarial" (every method:
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
flags.DEFINE_list("task_sets", ["no_L1", "no_L2"], "Task sets that leave out one threat model.")
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
                              FLAGS.eval_examples)
    return [{"task_set": task_set, "method": method, "seed": seed, **record} for record in records]


def description(plotted: bool) -> str:
    """What the table shows, and how it was made."""
    plot = (f"Plot: {os.path.splitext(os.path.basename(FLAGS.output))[0]}.png." if plotted
            else "No plot: matplotlib is not installed.")
    return (f"Small CNN on Fashion-MNIST: each run's best checkpoint, adversarially fine-tuned on the first k"
            f" training images against the held-out threat model's training attack for {FLAGS.finetune_steps}"
            f" batches (adversarial: {FLAGS.optimizer}, learning rate {FLAGS.learning_rate:g}, batches of"
            f" min({FLAGS.batch_size}, k); mat-inner: the run's own inner loop), then measured with protocol v2."
            f" k = 0 is the trained model. Mean ± standard deviation over seeds (%). {plot}")


def plot(records: list[dict]) -> bool:
    """Held-out accuracy against k, one panel per task set, one line per method and fine-tuning."""
    panels: dict[str, dict] = {}
    for (task_set, method, finetuning), curve in study.curves(records, study.held_out_accuracy).items():
        label = method if finetuning == "adversarial" else f"{method} ({finetuning})"
        panels.setdefault(f"{task_set}: fine-tuned on {study.held_out(task_set)[0]}", {})[label] = curve
    return plot_curves(panels, os.path.splitext(FLAGS.output)[0] + ".png", xlabel="k (k = 0 drawn at 1)",
                       ylabel="held-out accuracy (%)")


def main(argv: list[str]) -> None:
    del argv
    ks = sorted({int(k) for k in FLAGS.ks})
    if ks[0] < 1 or any(len(study.held_out(s)) != 1 for s in FLAGS.task_sets):
        raise app.UsageError(f"Need ks >= 1 and task sets that leave out one threat model."
                             f" Received: --ks={FLAGS.ks} --task_sets={FLAGS.task_sets}")
    train = data.load_arrays("fashion_mnist", "train", ks[-1])
    records = [record for task_set in FLAGS.task_sets for method in FLAGS.methods for seed in FLAGS.seeds
               for record in adapt(task_set, method, int(seed), ks, train)]
    if not records:
        raise SystemExit(f"No finished runs in {FLAGS.workdir} for these task sets, methods and seeds.")
    header = ["task set", "held out", "method", "fine-tuning", "k", "seeds", "held-out acc", "union all"]
    table = markdown_table(header, study.adaptation_rows(records))
    targets = study.target_lines(records)
    if targets:
        table += ("\n\nTarget (MAT reaches the best baseline's accuracy with at most k / 3 images):\n\n"
                  + "\n".join(targets))
    write_results(FLAGS.output, "Quick adaptation to a held-out threat model", description(plot(records)),
                  table, records)


if __name__ == "__main__":
    app.run(main)
