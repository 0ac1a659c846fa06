"""Images per second of our compiled APGD-CE against ART's, on the same TF model and images.

    python benchmarks/attacks.py --examples=500 --output=results/attacks.md

Both run ``--steps`` iterations of APGD on the cross-entropy loss (one random start, Linf
``--eps``) against the zoo model ``--model``, on the first ``--examples`` Fashion-MNIST test
images in batches of ``--batch_size``: ours (``metaadv_tf.attacks``, ``apgd_ce``) compiled once
with ``tf.function`` for batches of any size, ART's ``AutoProjectedGradientDescent`` through its
``TensorFlowV2Classifier``. Each is timed after a warm-up call on a few images (our compile).
The table gives images/s, the ratio to ART and the robust accuracy each reached. Numbers on a
shared 2-core machine vary by ±30 %: compare implementations within one run.

``--protocol=v2`` then times the whole evaluation protocol on ``--model`` (``zoo.evaluate_card``:
clean accuracy on 10,000 images, AutoAttack Linf/L2/L1 and the spatial grid on 1,000), attack by
attack; ``--protocol=none`` skips it.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from metaadv_tf import load_model  # noqa: E402
from metaadv_tf.art_bridge import art_apgd, art_classifier  # noqa: E402
from metaadv_tf.attacks import get_attack  # noqa: E402
from metaadv_tf.data import load_arrays  # noqa: E402
from metaadv_tf.io_utils import atomic_write_text  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "cnn_mat_anchored", "Zoo model to attack.")
flags.DEFINE_integer("examples", 500, "Fashion-MNIST test images to attack (the first ones).")
flags.DEFINE_integer("batch_size", 250, "Images per attack call, for both implementations.")
flags.DEFINE_integer("steps", 100, "APGD iterations.")
flags.DEFINE_float("eps", 0.1, "Linf radius.")
flags.DEFINE_string("output", None, "Write the table (Markdown) here too.")
flags.DEFINE_string("protocol", "v2", "Evaluation protocol to time on --model; 'none' skips it.")

WARMUP_EXAMPLES = 8

AttackFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``attack(images, labels) -> adversarial images``, on NumPy arrays."""


@dataclasses.dataclass(frozen=True)
class Timing:
    seconds: float
    images_per_second: float
    robust_accuracy: float


def time_attack(
    attack: AttackFn, model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int
) -> Timing:
    """Runs ``attack`` on ``x`` in batches after a warm-up call on a few images; its speed and
    the accuracy of ``model`` on its output."""
    attack(x[:WARMUP_EXAMPLES], y[:WARMUP_EXAMPLES])
    start = time.perf_counter()
    batches = range(0, len(x), batch_size)
    x_adv = np.concatenate([attack(x[i:i + batch_size], y[i:i + batch_size]) for i in batches])
    seconds = time.perf_counter() - start
    return Timing(seconds, len(x) / seconds, accuracy(model, x_adv, y))


def timing_table(timings: Mapping[str, Timing], baseline: str) -> list[str]:
    """Markdown rows of ``timings``, with images/s relative to ``timings[baseline]``."""
    base = timings[baseline].images_per_second
    rows = [
        f"| implementation | images/s | relative to {baseline} | robust accuracy | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, timing in timings.items():
        rows.append(
            f"| {name} | {timing.images_per_second:.1f} | {timing.images_per_second / base:.1f}x "
            f"| {timing.robust_accuracy:.3f} | {timing.seconds:.1f} |"
        )
    return rows


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def ours(model: keras.Model, steps: int, eps: float) -> AttackFn:
    """Our APGD-CE, compiled once for batches of any size."""
    attack = get_attack("apgd_ce", norm="inf", eps=eps, steps=steps)
    images = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    compiled = tf.function(
        lambda x, y: attack(model, x, y), input_signature=[images, tf.TensorSpec([None], tf.int32)],
        autograph=False,
    )
    return lambda x, y: compiled(x, y).numpy()


def art(model: keras.Model, steps: int, eps: float, batch_size: int) -> AttackFn:
    """ART's AutoProjectedGradientDescent on the cross-entropy loss, one random start."""
    return art_apgd(art_classifier(model), np.inf, eps, steps, batch_size).generate


def protocol_rows(name: str, protocol: str) -> list[str]:
    """Runs ``protocol`` on zoo model ``name``: wall seconds per attack and in all, and the result."""
    from metaadv_tf import zoo

    start = time.perf_counter()
    record = zoo.evaluate_card(name, protocol, progress=True)
    total = time.perf_counter() - start
    metrics, settings = record["metrics"], record["settings"]
    rows = [f"Protocol {protocol} on {name} ({settings['num_examples']} attacked images,"
            f" {settings['clean_examples']} clean): {total / 60:.1f} min in all.", "",
            "| part | seconds | accuracy % |", "|---|---:|---:|",
            f"| clean | {metrics['seconds']['clean']:.1f} | {100 * metrics['clean_accuracy']:.1f} |"]
    rows += [f"| {tm} | {metrics['seconds'][tm]:.1f} | {100 * accuracy:.1f} |"
             for tm, accuracy in metrics["robust_accuracy"].items()]
    return rows


def main(argv: list[str]) -> None:
    del argv
    model = load_model(FLAGS.model)
    x, y = load_arrays("fashion_mnist", "test", FLAGS.examples)
    steps, eps, batch_size = FLAGS.steps, FLAGS.eps, FLAGS.batch_size
    timings = {
        "ART": time_attack(art(model, steps, eps, batch_size), model, x, y, batch_size),
        "metaadv_tf": time_attack(ours(model, steps, eps), model, x, y, batch_size),
    }
    rows = [
        f"APGD-CE, Linf eps {eps:g}, {steps} iterations, 1 random start: {FLAGS.model} on the "
        f"first {len(x)} Fashion-MNIST test images (clean accuracy {accuracy(model, x, y):.3f}), "
        f"batches of {batch_size}. metaadv_tf: `get_attack(\"apgd_ce\")` in `tf.function`; "
        "ART: `AutoProjectedGradientDescent` on a `TensorFlowV2Classifier`.",
        "",
        *timing_table(timings, "ART"),
    ]
    if FLAGS.protocol != "none":
        rows += ["", *protocol_rows(FLAGS.model, FLAGS.protocol)]
    table = "\n".join(rows)
    print(table)
    if FLAGS.output:
        atomic_write_text(FLAGS.output, table + "\n")


if __name__ == "__main__":
    app.run(main)
