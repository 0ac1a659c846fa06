"""Checks study runs' protocol v2 numbers with other libraries' attacks (IBM ART, foolbox).

    python scripts/experiments/external_check.py --runs=runs/threat_models/no_L1/sat_seed0 \
        --examples=500 --output=results/external_check.md

For each run directory (its best checkpoint, ``config.json`` and the ``v2_cache.json`` its protocol
v2 evaluation left), the first ``--examples`` test images are attacked in each Lp threat model at
protocol v2's radius with ART's ``AutoProjectedGradientDescent`` (cross-entropy and DLR losses,
``--steps`` iterations, one start, first step 2·eps as in AutoAttack) and ``SquareAttack`` (Linf
and L2, ``--queries`` iterations; ART has no L1 Square), and with foolbox's fast minimum-norm attack
(FMN, Pintor et al. 2021, ``--steps`` iterations) and, for L1, its sparse L1 descent (``--steps``
iterations). Their adversarial examples are checked to lie in the threat model's ball and in
[0, 1] before they count. An image returned with non-finite values is no adversarial example: it
counts as not fooled, and the record says how many there were per attack (ART 1.20's L2 Square
divides by zero on some images and returns NaN, which a model still classifies, mostly wrongly).

Per run and threat model the table gives our protocol v2 accuracy on the same images (the
cache's per-image results), each outside attack's accuracy, their per-image worst case, and the
worst case over ours and theirs. "both" below "ours" means the outside attacks found adversarial
examples ours missed; a black-box attack (Square) below the white-box ones means gradient masking.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from metaadv_tf.art_bridge import art_apgd, art_classifier, valid_examples  # noqa: E402
from metaadv_tf.attack_specs import parse_attack  # noqa: E402
from metaadv_tf.data import load_arrays  # noqa: E402
from metaadv_tf.evaluation_cache import open_cache  # noqa: E402
from metaadv_tf.experiments import load_run_model, markdown_table, write_results  # noqa: E402
from metaadv_tf.registry import check_choice  # noqa: E402
from metaadv_tf.threat_study import V2_CACHE, V2_RECORD  # noqa: E402
from metaadv_tf.training import read_run_config  # noqa: E402
from metaadv_tf.training.selection import BEST_WEIGHTS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", None, "Run directories of scripts/experiments/threat_models.py.", required=True)
flags.DEFINE_list("threat_models", ["Linf", "L2", "L1"], "Lp threat models to check.")
flags.DEFINE_integer("examples", 500, "Test images to attack (the first; at most protocol v2's).")
flags.DEFINE_integer("steps", 100, "APGD, FMN and sparse L1 descent iterations.")
flags.DEFINE_integer("queries", 1000, "Square iterations (one query each).")
flags.DEFINE_integer("batch_size", 250, "Images per outside attack call.")
flags.DEFINE_list("libraries", ["art", "foolbox"], "Outside libraries whose attacks run: art, foolbox.")
flags.DEFINE_string("output", "results/external_check.md", "The table (.json beside it).")

OutsideAttack = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, y) -> adversarial x


def art_attacks(model: keras.Model, norm: float, eps: float) -> dict[str, OutsideAttack]:
    """ART's attacks of one threat model against ``model``, by label."""
    from art.attacks.evasion import SquareAttack

    classifier = art_classifier(model)
    attacks = {f"ART {label}": art_apgd(classifier, norm, eps, FLAGS.steps, FLAGS.batch_size, loss).generate
               for label, loss in (("APGD-CE", "cross_entropy"), ("APGD-DLR", "difference_logits_ratio"))}
    if norm != 1:
        attacks["ART Square"] = SquareAttack(classifier, norm=norm, eps=eps, max_iter=FLAGS.queries,
                                             batch_size=FLAGS.batch_size, verbose=False).generate
    return attacks


def foolbox_attacks(model: keras.Model, norm: float, eps: float) -> dict[str, OutsideAttack]:
    """foolbox's attacks of one threat model against ``model``, by label."""
    import foolbox

    fmodel = foolbox.TensorFlowModel(model, bounds=(0.0, 1.0))
    fmn = {1: foolbox.attacks.L1FMNAttack, 2: foolbox.attacks.L2FMNAttack, np.inf: foolbox.attacks.LInfFMNAttack}
    attacks = {"foolbox FMN": fmn[norm](steps=FLAGS.steps)}
    if norm == 1:
        attacks["foolbox SparseL1"] = foolbox.attacks.SparseL1DescentAttack(steps=FLAGS.steps)

    def run(attack: Any) -> OutsideAttack:
        def generate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            batches = [attack(fmodel, tf.constant(x[i:i + FLAGS.batch_size]),
                              tf.constant(y[i:i + FLAGS.batch_size].astype(np.int64)), epsilons=eps)[1]
                       for i in range(0, len(x), FLAGS.batch_size)]
            return np.concatenate([np.asarray(b) for b in batches])
        return generate

    return {label: run(attack) for label, attack in attacks.items()}


LIBRARIES = {"art": art_attacks, "foolbox": foolbox_attacks}


def still_correct(model: keras.Model, x_adv: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image: the model classifies ``x_adv`` correctly."""
    return np.argmax(model.predict(x_adv, batch_size=FLAGS.batch_size, verbose=0), axis=1) == y


def check_run(directory: str) -> list[dict]:
    """One record per threat model of the run in ``directory``."""
    config = read_run_config(directory)
    with open(os.path.join(directory, V2_RECORD), encoding="utf-8") as handle:
        settings = json.load(handle)["settings"]
    if FLAGS.examples > settings["num_examples"]:
        raise ValueError(f"--examples must be at most the {settings['num_examples']} images protocol v2"
                         f" attacked. Received: --examples={FLAGS.examples}")
    model = load_run_model(config, os.path.join(directory, BEST_WEIGHTS))
    cache = open_cache(os.path.join(directory, V2_CACHE), model, settings, config.dataset)
    x, y = load_arrays(config.dataset, settings["split"], FLAGS.examples)
    records = []
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
        for library in FLAGS.libraries:
            for label, generate in LIBRARIES[library](model, norm, eps).items():
                x_adv, invalid[label] = valid_examples(x, generate(x, y), norm, eps)
                theirs[label] = still_correct(model, x_adv, y)
        outside = np.logical_and.reduce(list(theirs.values()))
        records.append({"run": directory, "threat_model": threat_model, "eps": eps, "examples": FLAGS.examples,
                        "ours": float(ours.mean()), "attacks": {k: float(v.mean()) for k, v in theirs.items()},
                        "outside": float(outside.mean()), "both": float((ours & outside).mean()),
                        "non-finite": invalid})
        print(records[-1], flush=True)
    return records


def main(argv: list[str]) -> None:
    del argv
    for library in FLAGS.libraries:
        check_choice("library", library, list(LIBRARIES))
    records = [record for directory in FLAGS.runs for record in check_run(directory)]
    labels = list(dict.fromkeys(label for r in records for label in r["attacks"]))
    rows = [[r["run"], r["threat_model"], f"{100 * r['ours']:.1f}",
             *[f"{100 * r['attacks'][k]:.1f}" if k in r["attacks"] else "-" for k in labels],
             f"{100 * r['outside']:.1f}", f"{100 * r['both']:.1f}",
             ", ".join(f"{label} {count}" for label, count in r["non-finite"].items() if count) or "-"]
            for r in records]
    table = markdown_table(["run", "threat model", "ours (v2)", *labels, "outside worst", "both",
                            "non-finite images"], rows)
    description = (
        f"Robust accuracy (%) on the first {FLAGS.examples} Fashion-MNIST test images at protocol v2's radii."
        f" ours: protocol v2 (AutoAttack), per image from the run's cache. ART (adversarial-robustness-toolbox):"
        f" AutoProjectedGradientDescent, {FLAGS.steps} iterations, one start, CE and DLR losses; SquareAttack,"
        f" {FLAGS.queries} iterations (Linf, L2). foolbox: FMN and (L1) sparse L1 descent, {FLAGS.steps}"
        f" iterations. outside worst: wrong under any outside attack; both: wrong under ours or theirs."
        f" Images returned with non-finite values (counted in the last column) count as not fooled."
    )
    write_results(FLAGS.output, "Protocol v2 checked with other libraries", description, table, records)


if __name__ == "__main__":
    app.run(main)
