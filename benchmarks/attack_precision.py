"""Training attacks in bfloat16 against float32: speed, and strength against the float32 model.

    python benchmarks/attack_precision.py --model=resnet18_pgd_at --examples=300 \
        --output=results/attack_precision_resnet18.md

Each of ``--attacks`` (default: the threat-model study's four training attacks) runs on the first
``--examples`` Fashion-MNIST test images in batches of ``--batch_size``, as a training step runs
it (`metaadv_tf.meta.functional.model_fn`, training mode), against zoo model ``--model`` in
float32 and through its bfloat16 twin over the same weights (`metaadv_tf.models.precision_twin`,
what ``--attack_precision=mixed_bfloat16`` trains with). Timing starts after the first batch (the
compile). The float32 model's accuracy on each version of the examples measures the attack's
strength: bfloat16 attacks are worth using only where it stays level. Numbers on a shared 2-core
machine vary by ±30 %: compare within one run.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from metaadv_tf import load_model  # noqa: E402
from metaadv_tf.attack_specs import format_attack, parse_attacks  # noqa: E402
from metaadv_tf.attacks import Attack  # noqa: E402
from metaadv_tf.data import load_arrays  # noqa: E402
from metaadv_tf.experiments import script_command  # noqa: E402
from metaadv_tf.flag_utils import exit_on_error  # noqa: E402
from metaadv_tf.io_utils import atomic_write_text  # noqa: E402
from metaadv_tf.meta.functional import current_values, model_fn  # noqa: E402
from metaadv_tf.models import precision_twin  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "cnn_baseline_mt", "Zoo model to attack.")
flags.DEFINE_string("attacks", "pgd_linf(steps=5),pgd_l2(steps=5),apgd_ce(norm=1, steps=10),spatial(samples=5)",
                    "Training attacks to time (attack specs, comma-separated).")
flags.DEFINE_integer("examples", 300, "Fashion-MNIST test images to attack (the first ones).")
flags.DEFINE_integer("batch_size", 100, "Images per attack call; the first call is the compile, not timed.")
flags.DEFINE_string("output", None, "Write the table (Markdown, after the command that made it) here too.")


def run(attack: Attack, target: keras.Model, model: keras.Model, x: np.ndarray, y: np.ndarray,
        batch_size: int) -> tuple[float, float]:
    """(milliseconds per image after the first batch, ``model``'s accuracy on the examples) of
    ``attack`` against ``target`` run over ``model``'s weights."""
    target_fn = model_fn(target, *current_values(model))
    compiled = tf.function(lambda images, labels: attack(target_fn, images, labels))
    correct, start = [], None
    for i in range(0, len(x), batch_size):
        if i == batch_size:
            start = time.perf_counter()
        x_adv = compiled(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size])).numpy()
        correct.append(np.argmax(model.predict(x_adv, verbose=0), -1) == y[i:i + batch_size])
    timed = len(x) - batch_size
    return 1000 * (time.perf_counter() - start) / timed, float(np.concatenate(correct).mean())


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.examples < 2 * FLAGS.batch_size:
        raise app.UsageError(f"--examples must be at least 2 x --batch_size ({2 * FLAGS.batch_size}): the first"
                             f" batch is the compile. Received: --examples={FLAGS.examples}")
    model = exit_on_error(lambda: load_model(FLAGS.model))
    twin = precision_twin(model, "mixed_bfloat16")
    x, y = load_arrays("fashion_mnist", "test", FLAGS.examples)
    rows = [f"Produced by `{script_command(sys.argv)}`.", "",
            f"Training attacks against {FLAGS.model} (training mode) on the first {len(x)} Fashion-MNIST test"
            f" images, batches of {FLAGS.batch_size}, timed after the first; accuracy of the float32 model on the"
            " examples each made (lower: a stronger attack).", "",
            "| attack | float32 ms/image | bfloat16 ms/image | speed-up | float32 accuracy % on float32's examples"
            " | on bfloat16's |", "|---|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for attack in parse_attacks(FLAGS.attacks):
        full_ms, full_accuracy = run(attack, model, model, x, y, FLAGS.batch_size)
        half_ms, half_accuracy = run(attack, twin, model, x, y, FLAGS.batch_size)
        rows.append(f"| `{format_attack(attack)}` | {full_ms:.1f} | {half_ms:.1f} | {full_ms / half_ms:.2f}x"
                    f" | {100 * full_accuracy:.1f} | {100 * half_accuracy:.1f} |")
        print(rows[-1], flush=True)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, "\n".join(rows) + "\n")


if __name__ == "__main__":
    app.run(main)
