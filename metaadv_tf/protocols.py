"""Evaluation protocols as data, and the one-call ``benchmark`` built on them.

A protocol names the attack of each threat model, how many test images are attacked, how many
give the clean accuracy, and the seed. Whether a threat model is *seen* or *unseen* depends on
the model (the threat models of its training tasks), so ``run_protocol`` takes the seen ones and
reports the per-example union over each group. Protocol v1 is the older attack list kept in
every card's ``evaluation`` (see ``metaadv_tf.zoo``); v2 is defined here::

    from metaadv_tf import benchmark, load_model
    benchmark(load_model("cnn_mat_anchored"), threat_model="L2", eps=1.5, n_examples=200)
    # {'clean': 0.83, 'robust': 0.45, 'threat_model': 'L2', 'eps': 1.5, 'attack': 'autoattack(...)', ...}

Default radii for 28x28 grey-scale Fashion-MNIST: Linf 0.1, L2 1.5, L1 10 (``metaadv_tf.attacks``
explains Linf and L2; L1 10 is the radius Tramèr & Boneh and Maini et al. use for MNIST, where a
perturbation can change a few pixels fully or many a little). L1 AutoAttack runs APGD with
AutoAttack's large radii first (``largereps``): without them our L1 numbers were 6-8 points higher
(500 images, cnn_mat_inner3 and cnn_pgd_at), so cards measured before that carry new L1 numbers.
Spatial: rotations of up to ±10° and translations of up to ±2 pixels (Engstrom et al. 2019).
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Sequence

from metaadv_tf.attack_specs import format_attack, parse_attack
from metaadv_tf.attacks import SPATIAL, get_attack
from metaadv_tf.registry import Registry, check_choice

if TYPE_CHECKING:
    import keras

THREAT_MODELS = ("Linf", "L2", "L1", SPATIAL)
LP_THREAT_MODELS = ("Linf", "L2", "L1")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Which attack measures each threat model, on how many images of which split, with which seed.

    ``attacks`` maps a threat model to an attack spec; ``num_examples`` images are attacked and
    ``clean_examples`` images give the clean accuracy (both the first of ``split``); ``unions``
    names per-example unions of threat models reported besides the seen and unseen groups.
    """

    name: str
    attacks: dict[str, str]
    num_examples: int
    clean_examples: int
    split: str = "test"
    batch_size: int = 250
    seed: int = 0
    unions: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def settings(self, seen: Sequence[str], num_examples: int | None = None) -> dict[str, Any]:
        """The protocol with every attack setting written out and the seen/unseen groups, attacking
        the first ``num_examples`` images (default: the protocol's own count)."""
        seen = check_threat_models(seen)
        if num_examples is not None and num_examples <= 0:
            raise ValueError(f"num_examples must be a positive number of images. Received: {num_examples}")
        attacks = {tm: format_attack(parse_attack(spec)) for tm, spec in self.attacks.items()}
        return {
            "protocol": self.name, "attacks": attacks, "num_examples": num_examples or self.num_examples,
            "clean_examples": self.clean_examples, "split": self.split,
            "batch_size": self.batch_size, "seed": self.seed, "unions": self.unions,
            "seen": [tm for tm in self.attacks if tm in seen],
            "unseen": [tm for tm in self.attacks if tm not in seen],
        }


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")
PROTOCOLS.register(
    "v2",
    Protocol(
        name="v2",
        attacks={
            "Linf": "autoattack(norm='inf', eps=0.1, steps=100, restarts=1, target_classes=3,"
                    " queries=5000)",
            "L2": "autoattack(norm=2, eps=1.5, steps=100, restarts=1, target_classes=3,"
                  " queries=5000)",
            "L1": "autoattack(norm=1, eps=10.0, steps=100, restarts=1, target_classes=3)",
            SPATIAL: "spatial(max_angle=10.0, max_shift=2.0, angles=21, shifts=5)",
        },
        num_examples=1000,
        clean_examples=10000,
        unions={"Lp": list(LP_THREAT_MODELS), "all": list(THREAT_MODELS)},
    ),
)


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name`` (e.g. ``"v2"``)."""
    return PROTOCOLS.get(name)


def check_threat_models(names: Sequence[str]) -> list[str]:
    """Checks each name is one of ``THREAT_MODELS``; returns them as a list."""
    if isinstance(names, str):
        raise ValueError(f"Expected a list of threat models. Received the string {names!r}.")
    return [check_choice("threat model", name, list(THREAT_MODELS)) for name in names]


def run_protocol(
    model: "keras.Model",
    dataset: str,
    settings: dict[str, Any],
    *,
    data_dir: str | None = None,
    cache_path: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Runs a protocol's ``settings`` (``Protocol.settings(seen)``) on ``model``; its metrics.

    Every attack is seeded; ``cache_path`` keeps finished attacks so a rerun resumes. Returns
    ``clean_accuracy`` (on ``clean_examples``), ``clean_accuracy_attacked`` (on the attacked
    images), ``robust_accuracy`` per threat model, ``union`` accuracy per group (``seen``,
    ``unseen`` and the protocol's ``unions``), and the ``seconds`` each attack took.
    """
    from metaadv_tf import data
    from metaadv_tf.evaluation import clean_accuracy, evaluate
    from metaadv_tf.evaluation_cache import open_cache

    x, y = data.load_arrays(dataset, settings["split"], settings["clean_examples"], data_dir)
    cache = open_cache(cache_path, model, settings, dataset)
    groups = {name: members for name, members in
              {**settings["unions"], "seen": settings["seen"], "unseen": settings["unseen"]}.items()
              if members}
    count = settings["num_examples"]
    report = evaluate(
        model, x[:count], y[:count], settings["attacks"], groups=groups,
        batch_size=settings["batch_size"], seed=settings["seed"], cache=cache, progress=progress,
    )
    start = time.perf_counter()
    clean = clean_accuracy(model, x, y)
    return {
        "clean_accuracy": clean,
        "clean_accuracy_attacked": report.clean_accuracy,
        "robust_accuracy": report.robust_accuracy,
        "union": report.worst_case_by_group,
        "seconds": {**report.seconds, "clean": time.perf_counter() - start},
    }


def benchmark(
    model: "keras.Model",
    threat_model: str = "Linf",
    eps: float | None = None,
    n_examples: int = 1000,
    *,
    dataset: str = "fashion_mnist",
    protocol: str = "v2",
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Clean and robust accuracy (fractions) of ``model`` on the first ``n_examples`` test images.

    The robust accuracy is the protocol's attack for ``threat_model`` (AutoAttack for Linf, L2
    and L1; the rotation/translation grid for ``"spatial"``) at radius ``eps`` (default: the
    protocol's). Example::

        benchmark(model, threat_model="Linf", eps=0.1, n_examples=1000)["robust"]
    """
    from metaadv_tf import data
    from metaadv_tf.evaluation import evaluate

    check_choice("threat model", threat_model, list(THREAT_MODELS))
    attack = parse_attack(get_protocol(protocol).attacks[threat_model])
    if eps is not None:
        if threat_model == SPATIAL:
            raise ValueError(f"The spatial threat model has no eps. Received: eps={eps!r}")
        attack = get_attack(attack.name, **{**attack.settings, "eps": eps})
    x, y = data.load_arrays(dataset, "test", n_examples, data_dir)
    report = evaluate(model, x, y, {threat_model: attack}, seed=get_protocol(protocol).seed,
                      progress=progress)
    return {
        "clean": report.clean_accuracy,
        "robust": report.robust_accuracy[threat_model],
        "threat_model": threat_model,
        "eps": attack.eps,
        "attack": format_attack(attack),
        "n_examples": n_examples,
        "seconds": report.seconds[threat_model],
    }


def seen_threat_models(train_attacks: Sequence[Any]) -> list[str]:
    """The threat models of a list of training attacks, in ``THREAT_MODELS`` order."""
    found = {attack.threat_model for attack in train_attacks}
    return [tm for tm in THREAT_MODELS if tm in found]



def to_table(record: dict[str, Any]) -> str:
    """A Markdown table of a protocol result (``{"settings": ..., "metrics": ...}``), in %."""
    settings, metrics = record["settings"], record["metrics"]
    seen = set(settings["seen"])
    rows = [("clean", f"first {settings['clean_examples']} {settings['split']} images", metrics["clean_accuracy"])]
    for tm, spec in settings["attacks"].items():
        rows.append((f"{tm} ({'seen' if tm in seen else 'unseen'})", spec, metrics["robust_accuracy"][tm]))
    for group, accuracy in metrics["union"].items():
        members = {**settings["unions"], "seen": settings["seen"], "unseen": settings["unseen"]}[group]
        rows.append((f"union: {group}", " & ".join(members), accuracy))
    lines = [f"Protocol {settings['protocol']}; attacks on the first {settings['num_examples']}"
             f" {settings['split']} images (seed {settings['seed']}).", "",
             "| threat model | attack | accuracy % |", "| --- | --- | ---: |"]
    lines += [f"| {name} | `{what}` | {100 * value:.1f} |" for name, what, value in rows]
    return "\n".join(lines)
