"""Images per second of every training method, measured in one run, relative to PGD-7 AT.

    python benchmarks/throughput.py --models=cnn,resnet18 --output=results/throughput.md

Each method gets the same images per step (128: batch 128, or 2 tasks x (32 support + 32 query)).
A step's time includes making its adversarial examples. ``mat+pool`` is second-order MAT drawing
from per-task pools refreshed every 10 steps, timed over whole refresh periods; ``mat+inner3``
takes 3 inner steps instead of 1. Numbers on a shared 2-core machine vary by ±30 %: compare
methods within one run.
"""
from __future__ import annotations

import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from metaadv_tf.io_utils import atomic_write_text  # noqa: E402
from metaadv_tf.training import METHODS, MetaConfig, TrainConfig, Trainer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["cnn", "resnet18"], "Architectures to measure.")
# msd needs Lp tasks with equal step counts (not the default fgsm task): measure it with --methods=msd
# and e.g. --train_attacks="pgd_linf(steps=3),pgd_l2(steps=3)"
flags.DEFINE_list("methods", [*(m for m in METHODS if m != "msd"), "mat+pool", "mat+inner3"],
                  "Methods to measure; a meta method may add +pool (adversarial pools) and +innerN (N inner steps).")
flags.DEFINE_integer("steps", 10, "Timed steps per method (after one warm-up step).")
flags.DEFINE_string("train_attacks", "fgsm,pgd_linf(steps=3)", "Tasks of the multi-attack methods.")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA.")
flags.DEFINE_string("output", None, "Write the table (Markdown) here too.")

POOL_REFRESH = 10


def benchmark_config(model: str, method: str) -> TrainConfig:
    """128 images per step for every method; ``METHOD+pool`` uses pools, ``METHOD+innerN`` N inner steps."""
    base, *options = method.split("+")
    meta = {"num_tasks": 2, "support_size": 32, "query_size": 32, "pool_refresh": POOL_REFRESH}
    for option in options:
        if option == "pool":
            meta["pool_size"] = 256
        elif re.fullmatch(r"inner[1-9][0-9]*", option):
            meta["inner_steps"] = int(option[len("inner"):])
        else:
            raise app.UsageError(f"Unknown option +{option} in method {method!r}; expected +pool or +innerN.")
    return TrainConfig(method=base, model=model, batch_size=128, train_attacks=FLAGS.train_attacks,
                       steps=10**6, epochs=None, meta=MetaConfig(**meta), jit_compile=FLAGS.jit_compile)


def images_per_second(config: TrainConfig, steps: int) -> float:
    """Times ``steps`` steps after a warm-up step (the compile); pools: whole refresh periods."""
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(config, workdir)
        batches = trainer.batches()
        warmup = POOL_REFRESH if trainer.pool else 1  # compiles the refresh and the step
        for _ in range(warmup):
            trainer.next_step(batches)
        if trainer.pool:
            steps = max(POOL_REFRESH, steps - steps % POOL_REFRESH)
        start = time.perf_counter()
        for _ in range(steps):
            metrics = trainer.next_step(batches)
        float(metrics["loss"])  # wait for the last step
        return steps * config.images_per_step / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    rows = ["| model | method | images/s | relative to pgd_at |", "|---|---|---|---|"]
    for model in FLAGS.models:
        rates = {}
        for method in FLAGS.methods:
            rates[method] = images_per_second(benchmark_config(model, method), FLAGS.steps)
            print(f"{model:9s} {method:9s} {rates[method]:9.1f} images/s", flush=True)
        base = rates.get("pgd_at")
        for method, rate in rates.items():
            ratio = f"{rate / base:.2f}" if base else "n/a"
            rows.append(f"| {model} | {method} | {rate:.1f} | {ratio} |")
    table = "\n".join(rows)
    print(table)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, table + "\n")


if __name__ == "__main__":
    app.run(main)
