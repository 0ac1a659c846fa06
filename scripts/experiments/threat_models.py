"""The threat-model study: MAT against multi-threat-model baselines, leave one threat model out.

    python scripts/experiments/threat_models.py --methods=mat,sat --seeds=0,1,2 \
        --output=results/threat_models.md

A method may also be a MAT variant: a meta method and parts of ``metaadv_tf.threat_study.VARIANT_PARTS``
joined by "_" (e.g. ``mat_mem``: the MAT recipe with a perturbation memory; ``fomaml_mem_inner5``),
each trained and reported as its own row.

Every (task set, method, seed) trains ``--model`` (the small CNN by default) in
``--workdir/SET/METHOD_seedS`` with one recipe (SGD with momentum and weight decay, a cosine
schedule, ``--epochs`` of the training split minus ``--validation_examples`` held-out images,
validated every half epoch on the training tasks' union, best checkpoint kept), then measures the
best checkpoint with protocol v2 (seen = the set's threat models). Runs and evaluations resume
when the script is rerun. The table gives, per task set and method, mean ± standard deviation over
the seeds of clean accuracy, the held-out threat model's accuracy, each threat model's, the unions,
and the mean training minutes; validation curves go to OUTPUT_validation.png. ``--measured_only``
tabulates the runs measured so far without training or evaluating anything. ``--first_steps=N``
checks a recipe before a long run: the first N steps of each run on a fresh model, in a temporary
folder, printing each step's seconds, loss and outer gradient norm (nothing is written)::

    python scripts/experiments/threat_models.py --task_sets=all --methods=mat_worst_maxanchor_tasks4 \
        --model=resnet18 --attack_precision=mixed_bfloat16 --warmup_steps=20 --first_steps=45
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from metaadv_tf.experiments import (load_run_model, markdown_table, mean_std, plot_curves,  # noqa: E402
                                    write_results)
from metaadv_tf.io_utils import atomic_write_text, read_json  # noqa: E402
from metaadv_tf.models import DTYPE_POLICIES  # noqa: E402
from metaadv_tf.protocols import THREAT_MODELS, get_protocol, run_protocol  # noqa: E402
from metaadv_tf.threat_study import (TASK_SETS, V2_CACHE, V2_RECORD, VARIANT_PARTS, headroom_lines,  # noqa: E402
                                     held_out, held_out_target_lines, model_name, recipe, run_dir, train_attacks,
                                     validation_curve, variant_lines)
from metaadv_tf.training import TrainConfig, Trainer, train  # noqa: E402
from metaadv_tf.training.selection import BEST_WEIGHTS  # noqa: E402

FLAGS = flags.FLAGS
# the flags that shape every run (not which runs): the variants' commands repeat the ones given
RUN_FLAGS = ("model", "epochs", "validation_examples", "train_examples", "eval_every", "eval_examples",
             "checkpoint_every", "attack_precision", "warmup_steps", "workdir")
flags.DEFINE_list("task_sets", list(TASK_SETS), f"Task sets, of {', '.join(TASK_SETS)}.")
flags.DEFINE_list("methods", ["mat", "sat", "max", "avg", "msd"],
                  f"Methods to compare, or MAT variants: a meta method and parts of {', '.join(VARIANT_PARTS)}"
                  " joined by '_' (e.g. mat_mem_rates).")
flags.DEFINE_list("seeds", ["0"], "Seeds (initialization and data order).")
flags.DEFINE_float("epochs", 6.0, "Epochs of the training split (validation images excluded).")
flags.DEFINE_integer("validation_examples", 2000, "Last training images held out for validation.")
flags.DEFINE_integer("train_examples", None, "Use only the first N training images (tests).")
flags.DEFINE_integer("eval_every", None, "Validate every N steps (default: every half epoch).")
flags.DEFINE_integer("eval_examples", None, "Attacked test images (default: protocol v2's).")
flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints (fewer for resnet18: a kill loses the rest).")
flags.DEFINE_string("model", "cnn", "Architecture (cnn; resnet18 for the zoo's ResNet-18 entries, issue 19).")
flags.DEFINE_enum("attack_precision", "float32", list(DTYPE_POLICIES),
                  "Precision of the training attacks (TrainConfig.attack_precision); protocol v2 measures in float32.")
flags.DEFINE_integer("warmup_steps", 0, "Steps of linear learning-rate warm-up before the cosine schedule.")
flags.DEFINE_string("workdir", "runs/threat_models", "Where the runs live.")
flags.DEFINE_string("output", "results/threat_models.md", "The table (.json beside it).")
flags.DEFINE_bool("measured_only", False,
                  "Tabulate the runs already trained and measured (their v2.json, else their record in"
                  " --output's JSON, so results outlive the runs); train and evaluate nothing, so a"
                  " study still running can be reported.")
flags.DEFINE_integer("first_steps", 0, "Instead of training: print the seconds, loss and gradient norm of the first"
                     " N steps of each run on a fresh model (a recipe's stability and step time), writing nothing.")


def run_config(task_set: str, label: str, seed: int) -> TrainConfig:
    """The study's recipe for method or variant ``label`` on ``task_set``: 128 images per step,
    validated against the study's tasks (which MSD trains on with its own L1 step)."""
    method, meta = recipe(label)
    train_images = (FLAGS.train_examples or 60000) - FLAGS.validation_examples
    eval_every = FLAGS.eval_every or max(1, train_images // 128 // 2)
    attacks, tasks = train_attacks(task_set, method), train_attacks(task_set)
    return TrainConfig(
        method=method, model=FLAGS.model, train_attacks=attacks, val_attacks=None if attacks == tasks else tasks,
        epochs=FLAGS.epochs, steps=None, batch_size=128, optimizer="sgd", learning_rate=0.05,
        weight_decay=5e-4, lr_schedule="cosine", warmup_steps=FLAGS.warmup_steps, seed=seed, meta=meta,
        train_examples=FLAGS.train_examples, validation_examples=FLAGS.validation_examples,
        eval_every=eval_every, checkpoint_every=FLAGS.checkpoint_every, attack_precision=FLAGS.attack_precision,
    )


def run(task_set: str, method: str, seed: int) -> dict:
    """Trains (or resumes) one run, then measures its best checkpoint with protocol v2."""
    workdir = run_dir(FLAGS.workdir, task_set, method, seed)
    config = run_config(task_set, method, seed)
    result = train(config, workdir, progress=True)
    if result.stopped_by_signal is not None:
        raise SystemExit(f"Training in {workdir} stopped by signal {result.stopped_by_signal}; rerun to resume.")
    model = load_run_model(config, os.path.join(workdir, BEST_WEIGHTS))
    settings = v2_settings(task_set)
    metrics = run_protocol(model, "fashion_mnist", settings, progress=True,
                           cache_path=os.path.join(workdir, V2_CACHE))
    record = {"task_set": task_set, "method": method, "seed": seed, "settings": settings,
              "metrics": metrics, "train_seconds": result.train_seconds,
              "images_seen": result.images_seen, "validation": list(validation_curve(workdir).items())}
    atomic_write_text(os.path.join(workdir, V2_RECORD), json.dumps(record, indent=2) + "\n")
    return record


def first_steps(task_set: str, method: str, seed: int) -> None:
    """Runs the first ``--first_steps`` steps of one run's recipe on a fresh model in a temporary
    folder, printing each step's seconds (the first includes tracing), loss and outer gradient norm."""
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(run_config(task_set, method, seed), workdir)
        batches = trainer.batches()
        for step in range(FLAGS.first_steps):
            start = time.perf_counter()
            metrics = trainer.next_step(batches)
            print(f"{task_set} {method} seed {seed} step {step}: {time.perf_counter() - start:.1f} s,"
                  f" loss {float(metrics['loss']):.3f}, gradient norm {float(metrics['grad_norm']):.3f}", flush=True)


def measured(task_set: str, method: str, seed: int, reported: dict[tuple, dict]) -> dict | None:
    """The record of a run measured with this study's protocol v2 settings: its ``v2.json``, else
    its record in ``reported`` (by task set, method and seed); None without either."""
    record = read_json(os.path.join(run_dir(FLAGS.workdir, task_set, method, seed), V2_RECORD))
    if record is None:
        record = reported.get((task_set, method, seed))
    return record if record is not None and record["settings"] == v2_settings(task_set) else None


def reported_records() -> dict[tuple, dict]:
    """The records of ``--output``'s JSON (none before it is written), by (task set, method, seed)."""
    records = read_json(os.path.splitext(FLAGS.output)[0] + ".json") or []
    return {(r["task_set"], r["method"], r["seed"]): r for r in records}


def v2_settings(task_set: str) -> dict:
    """Protocol v2's settings for a run of ``task_set``, on ``--eval_examples`` test images."""
    return get_protocol("v2").settings(TASK_SETS[task_set], FLAGS.eval_examples)


def summary_rows(records: list[dict]) -> list[list[str]]:
    """Per (task set, method): mean ± std over seeds of clean, held-out, per-threat-model and
    union accuracy (%), and the mean training minutes."""
    rows = []
    for task_set in FLAGS.task_sets:
        left_out = held_out(task_set)
        for method in FLAGS.methods:
            mine = [r for r in records if (r["task_set"], r["method"]) == (task_set, method)]
            if not mine:
                continue
            metrics = [r["metrics"] for r in mine]
            values = [[m["clean_accuracy"] for m in metrics],
                      [m["robust_accuracy"][left_out[0]] for m in metrics] if left_out else [],
                      *([m["robust_accuracy"][tm] for m in metrics] for tm in THREAT_MODELS),
                      [m["union"]["seen"] for m in metrics], [m["union"]["all"] for m in metrics]]
            minutes = f"{np.mean([r['train_seconds'] for r in mine]) / 60:.0f}"
            rows.append([task_set, ",".join(left_out) or "-", method, str(len(mine)),
                         *(mean_std(v) for v in values), minutes])
    return rows


def plot_validation(records: list[dict]) -> bool:
    """Writes OUTPUT_validation.png: validation union accuracy against epochs of the runs in
    ``records`` (their ``validation`` curve; records from before it was kept have none), one panel
    per task set with curves, one line per method (mean ± std over the seeds). False, writing
    nothing, without curves or matplotlib."""
    panels: dict[str, dict] = {}
    for r in records:
        for epoch, union in r.get("validation", []):
            lines = panels.setdefault(f"{r['task_set']}: validation", {})
            lines.setdefault(r["method"], {}).setdefault(epoch, []).append(union)
    if not panels:
        return False
    return plot_curves(panels, os.path.splitext(FLAGS.output)[0] + "_validation.png", xlabel="epoch",
                       ylabel="validation union accuracy (%)", log_x=False)


def main(argv: list[str]) -> None:
    del argv
    runs = [(task_set, method, int(seed))
            for task_set in FLAGS.task_sets for method in FLAGS.methods for seed in FLAGS.seeds]
    if FLAGS.first_steps:
        for task_set, method, seed in runs:
            first_steps(task_set, method, seed)
        return
    if FLAGS.measured_only:
        get = functools.partial(measured, reported=reported_records())
    else:
        get = run
    records = [record for key in runs if (record := get(*key)) is not None]
    header = ["task set", "held out", "method", "seeds", "clean", "held out acc", *THREAT_MODELS,
              "union seen", "union all", "train min"]
    plot_validation(records)
    write_results(FLAGS.output, "MAT across threat models",
                  f"{model_name(FLAGS.model)} on Fashion-MNIST; protocol v2 on each run's best"
                  " validation checkpoint; mean ± standard deviation over seeds (%).",
                  markdown_table(header, summary_rows(records)) + target_section(records), records)


def target_section(records: list[dict]) -> str:
    """The MAT variants' settings and commands, issue 16's target (held-out accuracy averaged over
    the leave-one-out folds) and each held-out threat model's headroom (its accuracy when trained
    on), as Markdown."""
    section = ""
    given = "".join(f" --{name}={FLAGS[name].value}" for name in RUN_FLAGS if FLAGS[name].present)
    if lines := variant_lines(records, given):
        section += ("\n\nMAT variants (attempts to make MAT win): the study's MAT recipe (2 tasks x (32 support"
                    " + 32 query), 3 inner steps, anchored meta-loss) with these settings changed, each trained"
                    " and measured by its command.\n\n" + "\n".join(lines))
    if lines := held_out_target_lines(records):
        section += ("\n\nTarget: held-out threat model's accuracy averaged over the folds, MAT at least 5 points"
                    " above the best baseline, beyond twice the difference's standard error (over seeds).\n\n"
                    + "\n".join(lines))
    if lines := headroom_lines(records):
        section += ("\n\nHeadroom: the held-out threat model's accuracy without it in training and with it (the"
                    " same method on all four threat models), a rough ceiling on what generalizing to it can"
                    " recover.\n\n" + "\n".join(lines))
    return section


if __name__ == "__main__":
    app.run(main)
