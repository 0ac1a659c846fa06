"""Robust accuracy of a model: `metaadv-evaluate --model model.keras --attacks fgsm,mim`.

Evaluates the first `--num_examples` images of a dataset split under each attack and prints a
Markdown table (clean, per-attack and worst-case accuracy). `--model` is a `.keras` file or a zoo
model name; for a zoo model, every flag not given defaults to its card's evaluation protocol
(dataset, attacks, seen/unseen groups, split, N, batch size, seed), which reproduces the card's
metrics: `metaadv-evaluate --model=cnn_mat_anchored`. `--output report.json` also writes
the report as JSON and the table next to it as `report.md`. Attacks are specs such as
`pgd_linf(eps=0.1,steps=20)`; `--seed` seeds the attacks' randomness (e.g. PGD's random start),
each attack separately. `--cache=FILE` makes a long evaluation resumable: rerun to continue.

`--protocol=v2` runs protocol v2 instead (AutoAttack for Linf, L2 and L1, the spatial grid, unions
over the seen and unseen threat models; `metaadv_tf.protocols`): for a zoo model it reproduces the
card's `evaluations["v2"]`, and `--update_card` writes the result into the card. For a `.keras`
file, `--seen` names the threat models it was trained on. `--model` may also be a training run's
workdir (`scripts/train.py --workdir`): its best validation checkpoint, else its final weights, with
the threat models of its training attacks. `--num_examples` attacks another number of images than
the protocol's 1,000 (a zoo model's default: the number its card's v2 record attacked; the card
stores it with `--update_card`). The JSON of `--output` names the model and, for a zoo model or a
run, its method and training budget.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metaadv_tf.cli import runner

if TYPE_CHECKING:
    import keras

runner.import_tensorflow()  # quietly, before the imports below load it

from absl import app, flags  # noqa: E402

from metaadv_tf import data, flag_utils, zoo  # noqa: E402

_MODEL = flags.DEFINE_string(
    "model", None, "A zoo model name or the path to a .keras model file.", required=True
)
_DATASET = flags.DEFINE_string("dataset", "fashion_mnist", f"One of {data.list_datasets()}.")
_SPLIT = flags.DEFINE_string("split", "test", "Dataset split to evaluate on.")
_ATTACKS = flags.DEFINE_string(
    "attacks", "fgsm,pgd_linf,pgd_l2,mim",
    "Attack specs, e.g. 'fgsm,pgd_linf(eps=0.2,steps=20)' (zoo models: the card's attacks).",
)
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", 1000, "Evaluate the first N examples (zoo models: the card's N)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Examples per attack batch.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "JSON report path; the Markdown table is written next to it (.md)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the attacks' randomness.")
_CACHE = flags.DEFINE_string(
    "cache", None, "JSON file keeping finished attacks: rerun the same command to resume."
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol", "v1", ["v1", "v2"],
    "v1: the attack list (zoo models: the card's `evaluation`); v2: metaadv_tf.protocols' v2.",
)
_SEEN = flags.DEFINE_list(
    "seen", [], "--protocol=v2 with a .keras file: threat models it was trained on (e.g. Linf,L2)."
)
_UPDATE_CARD = flags.DEFINE_bool(
    "update_card", False, "--protocol=v2 with a zoo model: store the result in its card."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, f"Data directory (default: ${data.DATA_DIR_ENV} or ~/tensorflow_datasets)."
)


def protocol_from_flags(card: zoo.ModelCard | None) -> dict:
    """The evaluation protocol: the flags given, else the card's protocol, else the flags' defaults.

    Groups (worst case over seen/unseen attacks) come from the card, kept to the attacks evaluated.
    """
    base = card.evaluation if card else {"groups": {}}

    def pick(flag: flags.FlagHolder, key: str):
        return base[key] if key in base and not flag.present else flag.value

    return zoo.evaluation_protocol(
        pick(_ATTACKS, "attacks"), pick(_NUM_EXAMPLES, "num_examples"), groups=base["groups"],
        split=pick(_SPLIT, "split"), batch_size=pick(_BATCH_SIZE, "batch_size"), seed=pick(_SEED, "seed"),
    )


def run_protocol() -> None:
    """Runs ``--protocol`` on the flags' model, prints its table, writes JSON and the card."""
    from metaadv_tf import protocols
    from metaadv_tf.io_utils import atomic_write_text

    name, cache = _MODEL.value, _CACHE.value
    in_zoo = name in zoo.list_models(include_research=True)
    if _UPDATE_CARD.value and not in_zoo:
        raise ValueError(f"--update_card needs a zoo model. Received: --model={name}")
    num_examples = _NUM_EXAMPLES.value if _NUM_EXAMPLES.present else None
    if in_zoo and num_examples is None:
        num_examples = zoo.stored_num_examples(zoo.get_card(name), _PROTOCOL.value)
    if _SEEN.present and (in_zoo or os.path.isdir(name)):
        raise ValueError(f"--seen is for .keras files; {name!r} gives the threat models it was trained on.")
    if in_zoo:
        training = zoo.training_budget(zoo.get_card(name))
        record = zoo.evaluate_card(name, _PROTOCOL.value, data_dir=_DATA_DIR.value, cache_path=cache,
                                   progress=True, num_examples=num_examples)
    else:
        model, dataset, seen, training = model_outside_zoo(name)
        settings = protocols.get_protocol(_PROTOCOL.value).settings(seen, num_examples)
        metrics = protocols.run_protocol(model, dataset, settings,
                                         data_dir=_DATA_DIR.value, cache_path=cache, progress=True)
        record = {"settings": settings, "metrics": metrics}
    print(protocols.to_table(record))
    if _OUTPUT.value:
        report = {"model": name, **training, **record}
        atomic_write_text(_OUTPUT.value, json.dumps(report, indent=2) + "\n")
        atomic_write_text(os.path.splitext(_OUTPUT.value)[0] + ".md", protocols.to_table(record) + "\n")
    if _UPDATE_CARD.value:
        zoo.store_evaluation(name, _PROTOCOL.value, record)


def model_outside_zoo(spec: str) -> tuple["keras.Model", str, list[str], dict[str, Any]]:
    """(model, dataset, seen threat models, training facts) of ``--model`` when it is a training
    run's workdir (its best checkpoint, else its final weights; all from the run) or a ``.keras``
    file (dataset and seen threat models from the flags; no training facts)."""
    from metaadv_tf.experiments import load_finished_run

    if not os.path.isdir(spec):
        return zoo.resolve_model(spec), _DATASET.value, _SEEN.value, {}
    config, result, model = load_finished_run(spec)
    if _DATASET.present and _DATASET.value != config.dataset:
        raise ValueError(f"The run in {spec} trained on {config.dataset!r}; drop --dataset. Received:"
                         f" --dataset={_DATASET.value}")
    training = {"method": config.method, "train_seconds": result["train_seconds"], "images_seen": result["images_seen"]}
    return model, config.dataset, zoo.trained_threat_models(json.loads(config.to_json())), training


def run() -> None:
    """Evaluates the flags' model and attacks, prints the table and writes the reports."""
    if _PROTOCOL.value != "v1":
        return run_protocol()
    card = zoo.get_card(_MODEL.value) if _MODEL.value in zoo.list_models(include_research=True) else None
    if card:
        model = zoo.resolve_model(_MODEL.value)
        dataset = _DATASET.value if _DATASET.present else card.dataset
    else:
        model, dataset, _, _ = model_outside_zoo(_MODEL.value)
    protocol = protocol_from_flags(card)
    report = zoo.evaluate_protocol(model, dataset, protocol, data_dir=_DATA_DIR.value,
                                   cache_path=_CACHE.value, progress=True)
    metadata = {"model": _MODEL.value, "dataset": dataset, **protocol}
    report = dataclasses.replace(report, metadata=metadata)
    print(report.to_table())
    if _OUTPUT.value:
        report.to_json(_OUTPUT.value)
        report.to_markdown(os.path.splitext(_OUTPUT.value)[0] + ".md")


def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    flag_utils.exit_on_error(run)


def main() -> None:
    """Entry point of ``metaadv-evaluate`` and ``scripts/evaluate.py``: parses the flags, then evaluates."""
    runner.run(_main, [__name__])
