"""Images per second of every training method or zoo recipe, measured in one run, relative to PGD-7 AT.

    python benchmarks/throughput.py --models=cnn,resnet18 --output=results/throughput.md
    python benchmarks/throughput.py --recipe=cnn_mat_inner3,cnn_max --output=results/throughput_recipes.md
    python benchmarks/throughput.py --runs=runs/threat_models/no_L1/sat_seed0,runs/threat_models/no_L1/mat_seed0

Each method gets the same images per step (128: batch 128, or 2 tasks x (32 support + 32 query)).
A step's time includes making its adversarial examples. ``mat+pool`` is second-order MAT drawing
from per-task pools refreshed every 10 steps, timed over whole refresh periods; ``mat+inner3``
takes 3 inner steps instead of 1; ``mat+mem1`` continues each image's remembered perturbation
with 1 attack step per visit (`metaadv_tf.meta.memory`). ``--recipe=NAME`` instead times the step of zoo model NAME's
training recipe (its card's ``train_config``: model, batch, method, attacks, meta settings;
``--models``, ``--methods``, ``--train_attacks`` and ``--jit_compile`` do not apply) beside
``pgd_at`` with 7 steps on the same model and batch size (timed once for recipes that share it).
``--runs=DIR`` does the same for training runs' recipes (each workdir's ``config.json``, labelled by
the last two folders of the workdir), e.g. the threat-model study's.
``--attack_precision=mixed_bfloat16`` times every step with its attacks in bfloat16 (`TrainConfig.attack_precision`).
Numbers on a shared 2-core machine vary by ±30 %: compare methods within one run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from metaadv_tf import zoo  # noqa: E402
from metaadv_tf.experiments import script_command  # noqa: E402
from metaadv_tf.flag_utils import exit_on_error  # noqa: E402
from metaadv_tf.io_utils import atomic_write_text  # noqa: E402
from metaadv_tf.models import DTYPE_POLICIES  # noqa: E402
from metaadv_tf.training import METHODS, MetaConfig, TrainConfig, Trainer, read_run_config  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["cnn", "resnet18"], "Architectures to measure.")
# msd needs Lp tasks with equal step counts (not the default fgsm task): measure it with --methods=msd
# and e.g. --train_attacks="pgd_linf(steps=3),pgd_l2(steps=3)"
flags.DEFINE_list("methods", [*(m for m in METHODS if m != "msd"), "mat+pool", "mat+inner3"],
                  "Methods to measure; a meta method may add +pool (adversarial pools), +innerN (N inner"
                  " steps) and +memN (perturbation memory, N attack steps per visit).")
flags.DEFINE_list("recipe", None, "Zoo models whose training recipe (card train_config) to time beside PGD-7 AT on"
                  " the same model and batch size, instead of --models and --methods.")
flags.DEFINE_list("runs", None, "Training workdirs whose recipe (their config.json) to time beside PGD-7 AT on"
                  " the same model and batch size, instead of --models and --methods.")
flags.DEFINE_integer("steps", 10, "Timed steps per method or recipe (after one warm-up step).")
flags.DEFINE_string("train_attacks", "fgsm,pgd_linf(steps=3)", "Tasks of the multi-attack methods.")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA.")
flags.DEFINE_enum("attack_precision", None, list(DTYPE_POLICIES), "Time every step, PGD-7 AT's too, with its"
                  " attacks in this precision (default: a recipe's or run's own, float32 for --models).")
flags.DEFINE_string("output", None, "Write the table (Markdown, after the command that made it) here too.")

POOL_REFRESH = 10
TIMED_STEPS = 10**6  # the timed configs' run length: longer than any timing


OPTIONS = {"inner": "inner_steps", "mem": "memory_steps"}  # +innerN, +memN: N of that MetaConfig setting


def benchmark_config(model: str, method: str) -> TrainConfig:
    """128 images per step for every method; ``METHOD+pool`` uses pools, ``METHOD+innerN`` N inner
    steps, ``METHOD+memN`` a perturbation memory with N attack steps per visit."""
    base, *options = method.split("+")
    meta = {"num_tasks": 2, "support_size": 32, "query_size": 32, "pool_refresh": POOL_REFRESH}
    for option in options:
        match = re.fullmatch(r"(inner|mem)([1-9][0-9]*)", option)
        if option == "pool":
            meta["pool_size"] = 256
        elif match:
            meta[OPTIONS[match[1]]] = int(match[2])
        else:
            raise app.UsageError(
                f"Unknown option +{option} in method {method!r}; expected +pool, +innerN or +memN."
            )
    return timed(TrainConfig(method=base, model=model, batch_size=128, train_attacks=FLAGS.train_attacks,
                             meta=MetaConfig(**meta), jit_compile=FLAGS.jit_compile))


def timed(config: TrainConfig) -> TrainConfig:
    """``config`` with a long run and no validation or evaluation: nothing but its step to time,
    with ``--attack_precision`` when given."""
    return dataclasses.replace(config, steps=TIMED_STEPS, epochs=None, validation_examples=0, val_attacks=None,
                               eval_every=0, attack_precision=FLAGS.attack_precision or config.attack_precision)


def recipe_config(name: str) -> TrainConfig:
    """Zoo model ``name``'s training config, timed; an unknown name raises the zoo's ValueError."""
    return timed(TrainConfig.from_json(json.dumps(zoo.get_card(name).train_config)))


def run_config(workdir: str) -> TrainConfig:
    """The training config of the run in ``workdir`` (its ``config.json``), timed."""
    return timed(read_run_config(workdir))


def run_label(workdir: str) -> str:
    """A run's label: the last two folders of its workdir (the study's ``SET/METHOD_seedS``)."""
    return "/".join(os.path.normpath(workdir).split(os.sep)[-2:])


def pgd_at_config(recipe: TrainConfig) -> TrainConfig:
    """PGD-7 AT on ``recipe``'s model, data and batch size."""
    return dataclasses.replace(recipe, method="pgd_at", pgd_steps=7, meta=MetaConfig())


def method_groups() -> list[tuple[str, dict[str, TrainConfig]]]:
    """Per ``--models`` entry, the ``--methods`` configs by name."""
    return [(model, {method: benchmark_config(model, method) for method in FLAGS.methods})
            for model in FLAGS.models]


def recipe_groups(recipes: dict[str, TrainConfig]) -> list[tuple[str, dict[str, TrainConfig]]]:
    """The recipes by label, each beside its pgd_at (timed once for recipes that share it)."""
    groups: dict[str, tuple[str, dict[str, TrainConfig]]] = {}
    for name, recipe in recipes.items():
        baseline = pgd_at_config(recipe)
        groups.setdefault(baseline.to_json(), (recipe.model, {"pgd_at": baseline}))[1][name] = recipe
    return list(groups.values())


def images_per_second(config: TrainConfig, steps: int) -> float:
    """Times ``steps`` steps after a warm-up step (the compile); pools: whole refresh periods."""
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(config, workdir)
        batches = trainer.batches()
        refresh = config.meta.pool_refresh
        warmup = refresh if trainer.pool else 1  # compiles the refresh and the step
        for _ in range(warmup):
            trainer.next_step(batches)
        if trainer.pool:
            steps = max(refresh, steps - steps % refresh)
        start = time.perf_counter()
        for _ in range(steps):
            metrics = trainer.next_step(batches)
        float(metrics["loss"])  # wait for the last step
        return steps * config.images_per_step / (time.perf_counter() - start)


def table_rows(model: str, configs: dict[str, TrainConfig], steps: int) -> list[str]:
    """Times each config (printing its rate); its table rows, relative to the ``pgd_at`` entry."""
    rates = {}
    for label, config in configs.items():
        rates[label] = images_per_second(config, steps)
        print(f"{model:9s} {label:9s} {rates[label]:9.1f} images/s", flush=True)
    base = rates.get("pgd_at")
    return [f"| {model} | {label} | {rate:.1f} | {f'{rate / base:.2f}' if base else 'n/a'} |"
            for label, rate in rates.items()]


def selected_groups() -> list[tuple[str, dict[str, TrainConfig]]]:
    """The configs to time: ``--recipe``'s, ``--runs``' or ``--models`` x ``--methods``."""
    if FLAGS.recipe and FLAGS.runs:
        raise app.UsageError("--recipe and --runs are alternatives; give one.")
    if FLAGS.recipe:
        return exit_on_error(lambda: recipe_groups({name: recipe_config(name) for name in FLAGS.recipe}))
    if FLAGS.runs:
        return exit_on_error(lambda: recipe_groups({run_label(run): run_config(run) for run in FLAGS.runs}))
    return method_groups()


def main(argv: list[str]) -> None:
    del argv
    groups = selected_groups()
    rows = ["| model | method | images/s | relative to pgd_at |", "|---|---|---|---|"]
    for model, configs in groups:
        rows += table_rows(model, configs, FLAGS.steps)
    table = "\n".join(rows)
    print(table)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, f"Produced by `{script_command(sys.argv)}`.\n\n{table}\n")


if __name__ == "__main__":
    app.run(main)
