"""Publishing: a finished training run becomes a zoo entry (weights, evaluation, model card).

Loading lives in ``zoo``; this module writes what it loads. Without a ``directory`` (or
``$METAADV_ZOO_DIR``), ``publish`` writes into the source checkout: the card to the package's
``metaadv_tf/cards/`` (shipped in the wheel) and the weights to ``zoo/`` (uploaded to the zoo's
download location, ``zoo.DEFAULT_ZOO_URL``; never in the wheel). With one, both go there. Example::

    publish("runs/resnet18_mat", "resnet18_mat")   # then upload zoo/resnet18_mat.weights.h5
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from metaadv_tf import zoo
from metaadv_tf.io_utils import atomic_save, atomic_write_text
from metaadv_tf.registry import check_choice

if TYPE_CHECKING:
    import keras

    from metaadv_tf.training import TrainConfig

PUBLISHED_CHECKPOINTS = ("final", "best")
FLOAT16_LOGIT_TOLERANCE = 1e-3  # float16 weights are kept only if no logit moves more than this
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_NOT_ARCHITECTURE_ARGS = ("name", "trainable", "input_shape", "num_classes")


def destinations(name: str, directory: str | None = None) -> tuple[str, str]:
    """(card path, weights path) that ``publish`` writes for entry ``name``.

    Raises ValueError when neither ``directory`` nor ``$METAADV_ZOO_DIR`` is given and the package
    is not a source checkout (an installed package has no ``zoo/`` beside it).
    """
    if not (directory or os.environ.get(zoo.ZOO_DIR_ENV)) and not os.path.isdir(zoo.CHECKOUT_ZOO_DIR):
        raise ValueError(
            f"Publishing without a zoo directory writes into a source checkout, but"
            f" {zoo.CHECKOUT_ZOO_DIR} does not exist (an installed package). Pass a directory"
            f" (--zoo_dir) or set ${zoo.ZOO_DIR_ENV}."
        )
    return (os.path.join(zoo.cards_dir(directory), f"{name}.json"),
            os.path.join(zoo.weights_dir(directory), f"{name}.weights.h5"))


def publish(
    workdir: str,
    name: str,
    *,
    attacks: str | Sequence[str] = zoo.STANDARD_ATTACKS,
    num_examples: int = 1000,
    float16: bool = True,
    notes: str = "",
    threat_model: tuple[str, float] | None = None,
    overwrite: bool = False,
    directory: str | None = None,
    data_dir: str | None = None,
    progress: bool = False,
    checkpoint: str = "final",
    status: str = zoo.RECOMMENDED,
    status_reason: str = "",
) -> zoo.ModelCard:
    """Turns the finished training run in ``workdir`` into zoo entry ``name`` and returns its card.

    Writes ``<name>.weights.h5`` (float16 when ``float16`` and no logit of the evaluation images
    moves more than ``FLOAT16_LOGIT_TOLERANCE``, else float32), evaluates the stored weights with
    ``zoo.evaluation_protocol(attacks, num_examples)``, then writes ``<name>.json``, where
    ``destinations`` says. ``threat_model`` (e.g. ``("Linf", 0.1)``) overrides the one derived from
    the run's training attacks. ``checkpoint`` "final" publishes the run's last weights; "best"
    its best validation checkpoint (``best.weights.h5`` of a run with ``validation_examples``):
    the card's ``train_steps`` and ``images_seen`` are then those of the best step, and its notes
    name the step. ``status`` "research" with a one-line ``status_reason`` publishes a research
    artifact (hidden by ``zoo.list_models`` by default; ``zoo.load_model`` warns). Example::

        publish("runs/resnet18_mat", "resnet18_mat")
    """
    from metaadv_tf import data
    from metaadv_tf.training import model_arguments

    check_name(name)
    card_path, weights_file = destinations(name, directory)
    if os.path.exists(card_path) and not overwrite:
        raise FileExistsError(f"Zoo model {name!r} exists ({card_path}); pass overwrite=True to replace it.")
    check_choice("checkpoint", checkpoint, list(PUBLISHED_CHECKPOINTS))
    zoo.check_status(status, status_reason)
    config, result, weights = read_run(workdir)
    if checkpoint == "best":
        weights, result, notes = best_checkpoint(workdir, config, result, notes)
    threat, eps = threat_model or training_threat_model(config)
    protocol = zoo.evaluation_protocol(attacks, num_examples)
    info = data.get_info(config.dataset)
    trained = zoo.build_architecture(
        config.model, info.image_shape, info.num_classes, model_arguments(config)
    )
    trained.load_weights(weights)
    # every constructor argument, defaults included, so later default changes cannot alter the model
    arguments = {k: v for k, v in trained.get_config().items() if k not in _NOT_ARCHITECTURE_ARGS}
    build = functools.partial(zoo.build_architecture, config.model, info.image_shape, info.num_classes,
                              arguments)
    x, _ = data.load_arrays(config.dataset, protocol["split"], num_examples, data_dir)
    published, dtype = _store_weights(trained, build, weights_file, float16, x)
    report = zoo.evaluate_protocol(published, config.dataset, protocol, data_dir=data_dir,
                                   cache_path=os.path.join(workdir, zoo.EVALUATION_CACHE), progress=progress)
    card = zoo.ModelCard(
        name=name, architecture=config.model, architecture_args=arguments,
        dataset=config.dataset, input_shape=tuple(info.image_shape), num_classes=info.num_classes,
        threat_model=threat, eps=float(eps), method=config.method,
        train_config=json.loads(config.to_json()), train_command=train_command(config, workdir),
        train_seconds=float(result["train_seconds"]), train_steps=int(result["steps"]),
        images_seen=int(result["images_seen"]), weights=os.path.basename(weights_file),
        sha256=zoo.sha256_file(weights_file), weights_dtype=dtype, evaluation=protocol,
        metrics=zoo.report_metrics(report), evaluations={},
        golden=zoo.golden_logits(published, config.dataset, data_dir=data_dir), notes=notes,
        status=status, status_reason=status_reason,
    )
    atomic_write_text(card_path, card.to_json())
    zoo.clear_cache()
    return card


def retire(name: str, new_name: str, reason: str, *, directory: str | None = None) -> zoo.ModelCard:
    """Keeps zoo entry ``name`` as research artifact ``new_name`` (card and weights renamed, one-line
    ``reason`` as its status_reason), freeing ``name`` for the model that supersedes it. The new
    files are written before the old ones are removed, so an interruption loses nothing."""
    check_name(new_name)
    zoo.check_status(zoo.RESEARCH, reason)
    card = zoo.get_card(name, directory=directory)
    old_card, old_weights = destinations(name, directory)
    card_path, weights_file = destinations(new_name, directory)
    if os.path.exists(card_path):
        raise FileExistsError(f"Zoo model {new_name!r} exists ({card_path}); retire {name!r} under another name.")
    zoo.verify_weights(old_weights, card.sha256)
    atomic_save(weights_file, functools.partial(shutil.copyfile, old_weights))
    retired = dataclasses.replace(card, name=new_name, weights=os.path.basename(weights_file),
                                  status=zoo.RESEARCH, status_reason=reason)
    atomic_write_text(card_path, retired.to_json())
    os.remove(old_card)
    os.remove(old_weights)
    zoo.clear_cache()
    return retired


def check_name(name: str) -> None:
    """Raises ValueError unless ``name`` is a valid zoo name."""
    if not _NAME.match(name):
        raise ValueError(
            f"Zoo names use a-z, 0-9, '_', '.', '-' and start with a letter or digit. Received: {name!r}"
        )


def best_checkpoint(workdir: str, config: "TrainConfig", result: dict[str, Any], notes: str
                     ) -> tuple[str, dict[str, Any], str]:
    """(weights path, result.json values of the best step, notes naming it) of a finished run's
    best validation checkpoint; raises FileNotFoundError when the run kept none."""
    from metaadv_tf.training.selection import BEST_WEIGHTS

    path = os.path.join(workdir, BEST_WEIGHTS)
    if result.get("best_step") is None or not os.path.isfile(path):
        raise FileNotFoundError(
            f"{workdir} has no best validation checkpoint ({path}): train with validation_examples > 0,"
            " or publish checkpoint='final'."
        )
    step = result["best_step"]
    best = {**result, "steps": step, "images_seen": step * config.images_per_step}
    described = (f"Best validation checkpoint: step {step} of {result['steps']}, validation union"
                 f" accuracy {result['best_validation_accuracy']:.4f}.")
    return path, best, f"{described} {notes}".strip()


def read_run(workdir: str) -> tuple["TrainConfig", dict[str, Any], str]:
    """(config, result.json values, final weights path) of a finished run; raises if unfinished."""
    from metaadv_tf.training import CONFIG_FILE, FINAL_WEIGHTS, RESULT_FILE, read_run_config

    paths = {name: os.path.join(workdir, name) for name in (CONFIG_FILE, RESULT_FILE, FINAL_WEIGHTS)}
    missing = [path for path in paths.values() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"{workdir} is not a finished training run: {', '.join(missing)} missing. Finish the run"
            " (rerun its train command to resume) first."
        )
    config = read_run_config(workdir)
    with open(paths[RESULT_FILE], encoding="utf-8") as handle:
        result = json.load(handle)
    return config, result, paths[FINAL_WEIGHTS]


def training_threat_model(config: "TrainConfig") -> tuple[str, float]:
    """(threat model, eps) of the attacks a run trained on, as its card names them: ("none", 0.0)
    for standard training; several threat models joined by "+" (in ``zoo.trained_threat_models``'s
    order) with eps 0, their radii being in the train config.

    Raises ValueError when attacks of one threat model mix radii: name the eps then.
    """
    from metaadv_tf.attack_specs import parse_attacks

    trained = zoo.trained_threat_models(dataclasses.asdict(config))
    if len(trained) != 1:
        return "+".join(trained) or "none", 0.0
    if config.method in ("pgd_at", "fgsm_rs"):
        return "Linf", config.eps
    radii = {a.eps for a in parse_attacks(config.train_attacks)}
    if len(radii) != 1:
        raise ValueError(
            f"The training attacks {config.train_attacks!r} mix radii {sorted(radii)} of {trained[0]};"
            " give the card's threat model and eps explicitly."
        )
    return trained[0], radii.pop()


def train_command(config: "TrainConfig", workdir: str) -> str:
    """The ``scripts/train.py`` command line that reruns ``config`` exactly, every flag written out.

    Flags are named like the TrainConfig and MetaConfig fields (see ``flag_utils``).
    Example: ``python scripts/train.py --batch_size=128 ... --workdir=runs/cnn_mat``.
    """
    values = {**dataclasses.asdict(config), **dataclasses.asdict(config.meta), "workdir": workdir}
    del values["meta"]
    arguments = [_flag(name, value) for name, value in values.items() if value is not None]
    return " ".join(["python", "scripts/train.py", *(shlex.quote(a) for a in arguments)])


def _flag(name: str, value: Any) -> str:
    """One absl flag: booleans as --name/--noname, dicts as JSON, sequences comma-separated."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"))
    elif isinstance(value, (list, tuple)):
        value = ",".join(map(repr, value))
    return f"--{name}={value}"


def _store_weights(
    model: "keras.Model", build: Callable[[], "keras.Model"], path: str, float16: bool, x: np.ndarray
) -> tuple["keras.Model", str]:
    """Stores float16 weights if they move no logit on ``x`` by more than ``FLOAT16_LOGIT_TOLERANCE``
    (and ``float16``), else float32; returns the model loaded from the file and the dtype."""
    if float16:
        stored, change = _store(model, build, path, "float16", x)
        if change <= FLOAT16_LOGIT_TOLERANCE:
            return stored, "float16"
    stored, _ = _store(model, build, path, "float32", x)
    return stored, "float32"


def _store(
    model: "keras.Model", build: Callable[[], "keras.Model"], path: str, dtype: str, x: np.ndarray
) -> tuple["keras.Model", float]:
    """Saves ``model``'s weights as ``dtype`` and loads them into ``build()`` as ``load_model``
    does; returns that model and the largest logit change the round trip caused on ``x``."""
    zoo.save_weights(model, path, dtype)
    stored = build()
    stored.load_weights(path)
    before, after = (m.predict(x, batch_size=100, verbose=0) for m in (model, stored))
    return stored, float(np.max(np.abs(before - after)))
