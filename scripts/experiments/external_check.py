"""Checks study runs' protocol v2 numbers with another library's attacks (IBM ART).

    python scripts/experiments/external_check.py --runs=runs/threat_models/no_L1/sat_seed0 \
        --examples=500 --output=results/external_check.md

For each run directory (its best checkpoint, ``config.json`` and the ``v2_cache.json`` its protocol
v2 evaluation left), the first ``--examples`` test images are attacked with ART's
``AutoProjectedGradientDescent`` (cross-entropy and DLR losses, ``--steps`` iterations, one start,
first step 2·eps as in AutoAttack) in each Lp threat model at protocol v2's radius, and with ART's
``SquareAttack`` (Linf and L2, ``--queries`` iterations; ART has no L1 Square). ART's adversarial
examples are checked to lie in the threat model's ball and in [0, 1] before they count. An image
ART returns with non-finite values is no adversarial example: it counts as not fooled, and the
record says how many there were per attack (ART 1.20's L2 Square divides by zero on some images
and returns NaN, which a model still classifies, mostly wrongly).

Per run and threat model the table gives our protocol v2 accuracy on the same images (the
cache's per-image results), ART's accuracy per attack and worst case, and the worst case over both
libraries. "both" below "ours" means ART found adversarial examples our attacks missed; Square
below APGD means gradient masking.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from metaadv_tf.art_bridge import art_apgd, art_classifier, valid_examples  # noqa: E402
from metaadv_tf.attack_specs import parse_attack  # noqa: E402
from metaadv_tf.data import load_arrays  # noqa: E402
from metaadv_tf.evaluation_cache import open_cache  # noqa: E402
from metaadv_tf.experiments import load_run_model, markdown_table, write_results  # noqa: E402
from metaadv_tf.threat_study import V2_RECORD  # noqa: E402
from metaadv_tf.training import TrainConfig  # noqa: E402
from metaadv_tf.training.selection import BEST_WEIGHTS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", None, "Run directories of scripts/experiments/threat_models.py.", required=True)
flags.DEFINE_list("threat_models", ["Linf", "L2", "L1"], "Lp threat models to check.")
flags.DEFINE_integer("examples", 500, "Test images to attack (the first; at most protocol v2's).")
flags.DEFINE_integer("steps", 100, "APGD iterations.")
flags.DEFINE_integer("queries", 1000, "Square iterations (one query each).")
flags.DEFINE_integer("batch_size", 250, "Images per ART call.")
flags.DEFINE_string("output", "results/external_check.md", "The table (.json beside it).")



def art_attacks(classifier, norm: float, eps: float) -> dict:
    """ART's attacks of one threat model against ``classifier``, by label."""
    from art.attacks.evasion import SquareAttack

    attacks = {label: art_apgd(classifier, norm, eps, FLAGS.steps, FLAGS.batch_size, loss)
               for label, loss in (("APGD-CE", "cross_entropy"), ("APGD-DLR", "difference_logits_ratio"))}
    if norm != 1:
        attacks["Square"] = SquareAttack(classifier, norm=norm, eps=eps, max_iter=FLAGS.queries,
                                         batch_size=FLAGS.batch_size, verbose=False)
    return attacks


def still_correct(model: keras.Model, x_adv: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image: the model classifies ``x_adv`` correctly."""
    return np.argmax(model.predict(x_adv, batch_size=FLAGS.batch_size, verbose=0), axis=1) == y


def check_run(directory: str) -> list[dict]:
    """One record per threat model of the run in ``directory``."""
    with open(os.path.join(directory, "config.json"), encoding="utf-8") as handle:
        config = TrainConfig.from_json(handle.read())
    with open(os.path.join(directory, V2_RECORD), encoding="utf-8") as handle:
        settings = json.load(handle)["settings"]
    if FLAGS.examples > settings["num_examples"]:
        raise ValueError(f"--examples must be at most the {settings['num_examples']} images protocol v2"
                         f" attacked. Received: --examples={FLAGS.examples}")
    model = load_run_model(config, os.path.join(directory, BEST_WEIGHTS))
    cache = open_cache(os.path.join(directory, "v2_cache.json"), model, settings, config.dataset)
    x, y = load_arrays(config.dataset, settings["split"], FLAGS.examples)
    classifier, records = art_classifier(model), []
    for threat_model in FLAGS.threat_models:
        spec = settings["attacks"][threat_model]
        stored = cache.get(threat_model, settings["num_examples"], spec)
        if stored is None:
            raise ValueError(f"{directory} has no protocol v2 results of its best checkpoint for {threat_model}"
                             f" made by {spec}.")
        ours = stored[0][: FLAGS.examples]
        attack = parse_attack(spec)
        norm, eps = attack.norm, float(attack.eps)
        theirs, invalid = {}, {}
        for label, art in art_attacks(classifier, norm, eps).items():
            x_adv, invalid[label] = valid_examples(x, art.generate(x, y), norm, eps)
            theirs[label] = still_correct(model, x_adv, y)
        art_worst = np.logical_and.reduce(list(theirs.values()))
        records.append({"run": directory, "threat_model": threat_model, "eps": eps, "examples": FLAGS.examples,
                        "ours": float(ours.mean()), **{k: float(v.mean()) for k, v in theirs.items()},
                        "ART": float(art_worst.mean()), "both": float((ours & art_worst).mean()),
                        "non-finite": invalid})
        print(records[-1], flush=True)
    return records


def main(argv: list[str]) -> None:
    del argv
    records = [record for directory in FLAGS.runs for record in check_run(directory)]
    labels = ["APGD-CE", "APGD-DLR", "Square"]
    rows = [[r["run"], r["threat_model"], *[f"{100 * r[k]:.1f}" if k in r else "-"
                                            for k in ("ours", *labels, "ART", "both")],
             ", ".join(f"{label} {count}" for label, count in r["non-finite"].items() if count) or "-"]
            for r in records]
    table = markdown_table(["run", "threat model", "ours (v2)", *[f"ART {label}" for label in labels],
                            "ART worst", "both", "ART non-finite images"], rows)
    description = (
        f"Robust accuracy (%) on the first {FLAGS.examples} Fashion-MNIST test images at protocol v2's radii."
        f" ours: protocol v2 (AutoAttack), per image from the run's cache. ART (adversarial-robustness-toolbox):"
        f" AutoProjectedGradientDescent, {FLAGS.steps} iterations, one start, CE and DLR losses; SquareAttack,"
        f" {FLAGS.queries} iterations (Linf, L2). both: wrong under either library's attacks. Images ART"
        f" returned with non-finite values (counted in the last column) count as not fooled."
    )
    write_results(FLAGS.output, "Protocol v2 checked with ART", description, table, records)


if __name__ == "__main__":
    app.run(main)
