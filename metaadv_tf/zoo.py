"""The model zoo: model cards as data, and ``load_model`` with sha256 checks (``publish`` writes).

An entry is a card, ``<name>.json`` (a `ModelCard`), and a weights file, ``<name>.weights.h5``.
Cards ship inside the package (``metaadv_tf/cards/``); scanning the cards directory is the one
place entries are registered, and nothing in the code names a model. ``$METAADV_ZOO_DIR`` (or
``directory=``) names another zoo directory, holding both cards and weights. Example::

    from metaadv_tf import list_models, get_card, load_model
    list_models(dataset="fashion_mnist", method="mat")   # ['cnn_mat', 'cnn_mat_anchored', ...]
    card = get_card("cnn_mat_anchored")                    # provenance, protocol, metrics
    model = load_model("cnn_mat_anchored")                 # checked against card.sha256

An entry whose card says ``"status": "research"`` is a research artifact, kept so the study's
results can be reproduced, not a model to use: ``list_models`` hides it unless given
``include_research=True``, and ``load_model`` loads it with a `ResearchArtifactWarning` giving
the card's ``status_reason``.

Weights are looked up in the local zoo directory (``$METAADV_ZOO_DIR``, else the checkout's
``zoo/``), then in a cache (``$METAADV_CACHE``, else ``~/.keras/metaadv_tf/``), then downloaded
from ``$METAADV_ZOO_URL`` (else ``DEFAULT_ZOO_URL``, the project's release) into the cache. They
are checked before Keras sees them: a Git LFS pointer or any other sha256 mismatch (corruption,
truncation, tampering) raises a clear error, and so does a file found nowhere. Weights may be
stored as float16; Keras casts each stored array to its float32 variable when it assigns it, so
loading them needs nothing special. ``metaadv_tf.publish`` (``scripts/publish_model.py``) turns a
finished training run into an entry, and every metric in a card is reproduced by
``scripts/evaluate.py --model=NAME``.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import tempfile
import warnings
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from metaadv_tf import downloads
from metaadv_tf.downloads import sha256_file
from metaadv_tf.io_utils import atomic_save, atomic_write_text
from metaadv_tf.registry import Registry, check_choice, unknown_name_message

if TYPE_CHECKING:
    import keras

    from metaadv_tf.evaluation import EvaluationReport

ZOO_DIR_ENV = "METAADV_ZOO_DIR"
CACHE_ENV = "METAADV_CACHE"
ZOO_URL_ENV = "METAADV_ZOO_URL"
# The project's published weights: the zoo/*.weights.h5 files attached to its GitHub release.
DEFAULT_ZOO_URL = "https://github.com/metaadv-tf/metaadv_tf/releases/download/zoo-v0.1.0/"
PACKAGE_CARDS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cards")
CHECKOUT_ZOO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")

# The standard evaluation protocol: attacks seen in MAT training and attacks it never saw.
STANDARD_ATTACKS = "fgsm,pgd_linf(steps=20),bim,mim,pgd_l2,cw_l2,spsa"
STANDARD_GROUPS = {"seen": ["fgsm", "pgd_linf", "bim"], "unseen": ["mim", "pgd_l2", "cw_l2", "spsa"]}

WEIGHTS_DTYPES = ("float16", "float32")
MAX_WEIGHTS_BYTES = 50 * 1024**2
GOLDEN_EXAMPLES = 4
GOLDEN_DECIMALS = 6
GOLDEN_ATOL = 1e-3
EVALUATION_CACHE = "evaluation_cache.json"  # in a run's workdir: publishing resumes evaluating there
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
RECOMMENDED, RESEARCH = "recommended", "research"
STATUSES = (RECOMMENDED, RESEARCH)


class ResearchArtifactWarning(UserWarning):
    """A loaded zoo model is a research artifact: kept for reproducibility, not a model to use."""


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a zoo entry is, how it was made, and what it measured.

    ``evaluation`` is protocol v1 behind ``metrics`` (attack specs, seen/unseen ``groups``,
    ``split``, ``num_examples``, ``batch_size``, ``seed``); ``metrics`` holds ``clean_accuracy``,
    ``robust_accuracy`` (per attack), ``worst_case_accuracy`` and ``worst_case_by_group``.
    ``evaluations`` maps a later protocol's name (``"v2"``) to ``{"settings": ..., "metrics":
    ...}`` as ``metaadv_tf.protocols.run_protocol`` returns them.
    ``golden`` stores the logits of the first ``num_examples`` images of ``split``.
    ``status`` is "recommended" (a model to use) or "research" (a research artifact, kept for
    reproducibility; ``status_reason`` says why in one line). Both are optional in the JSON and
    written only when they differ from these defaults.
    """

    name: str
    architecture: str
    architecture_args: dict[str, Any]
    dataset: str
    input_shape: tuple[int, int, int]
    num_classes: int
    threat_model: str
    eps: float
    method: str
    train_config: dict[str, Any]
    train_command: str
    train_seconds: float
    train_steps: int
    images_seen: int
    weights: str
    sha256: str
    weights_dtype: str
    evaluation: dict[str, Any]
    metrics: dict[str, Any]
    evaluations: dict[str, Any]
    golden: dict[str, Any]
    notes: str
    status: str = RECOMMENDED
    status_reason: str = ""

    @property
    def is_research(self) -> bool:
        """Whether the entry is a research artifact (hidden by ``list_models`` by default)."""
        return self.status == RESEARCH

    @classmethod
    def from_file(cls, path: str) -> "ModelCard":
        """Reads and checks a card: valid JSON with the card's fields (the optional ones may be
        absent, no others), named like its file, with a known status."""
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"Model card {path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"Model card {path} must hold a JSON object. Received: {type(values).__name__}")
        required, optional = _required_fields(), list(_optional_fields())
        missing = [name for name in required if name not in values]
        extra = sorted(set(values) - set(required) - set(optional))
        if missing or extra:
            problems = [f"missing field {name!r}" for name in missing]
            problems += [f"unknown field {name!r}" for name in extra]
            raise ValueError(
                f"Model card {path}: {'; '.join(problems)}. A card has the fields"
                f" {', '.join(required)}, and optionally {', '.join(optional)}."
            )
        stem = os.path.basename(path).removesuffix(".json")
        if values["name"] != stem:
            raise ValueError(f"Model card {path}: field 'name' is {values['name']!r}, expected {stem!r}.")
        check_choice(f"weights_dtype in {path}", values["weights_dtype"], list(WEIGHTS_DTYPES))
        check_status(values.get("status", RECOMMENDED), values.get("status_reason", ""), f" in {path}")
        return cls(**{**values, "input_shape": tuple(values["input_shape"])})

    def build(self) -> "keras.Model":
        """A fresh (untrained) model of the card's architecture; ``load_model`` adds the weights."""
        return build_architecture(
            self.architecture, self.input_shape, self.num_classes, self.architecture_args
        )

    def to_json(self) -> str:
        """The card as JSON text, as stored in ``zoo/<name>.json`` (optional fields only when set)."""
        defaults = _optional_fields()
        values = {key: value for key, value in dataclasses.asdict(self).items()
                  if key not in defaults or value != defaults[key]}
        return json.dumps(values, indent=2) + "\n"


def _required_fields() -> list[str]:
    """The card fields every JSON card holds, in order."""
    return [field.name for field in dataclasses.fields(ModelCard) if field.default is dataclasses.MISSING]


def _optional_fields() -> dict[str, Any]:
    """The card fields a JSON card may leave out, with their defaults."""
    return {field.name: field.default for field in dataclasses.fields(ModelCard)
            if field.default is not dataclasses.MISSING}


def check_status(status: str, reason: str, where: str = "") -> None:
    """Raises ValueError unless ``status`` is one of ``STATUSES`` and a research status has a
    ``reason``; ``where`` (e.g. " in zoo/x.json") goes into the message."""
    check_choice(f"status{where}", status, list(STATUSES))
    if status == RESEARCH and not (isinstance(reason, str) and reason.strip()):
        raise ValueError(f"Model card status{where} is {RESEARCH!r}, so it needs a status_reason saying"
                         f" why in one line. Received: {reason!r}")


# --- the registry --------------------------------------------------------------------------


def cards_dir(directory: str | None = None) -> str:
    """Where cards are read: ``directory``, else ``$METAADV_ZOO_DIR``, else the package's ``cards/``."""
    return os.path.abspath(directory or os.environ.get(ZOO_DIR_ENV) or PACKAGE_CARDS_DIR)


def weights_dir(directory: str | None = None) -> str:
    """The local zoo directory weights are looked up in first: ``directory``, else
    ``$METAADV_ZOO_DIR``, else ``zoo/`` of the source checkout (absent from an installed package)."""
    return os.path.abspath(directory or os.environ.get(ZOO_DIR_ENV) or CHECKOUT_ZOO_DIR)


@functools.cache
def _scan(directory: str) -> Registry[ModelCard]:
    """Registers every ``*.json`` card of ``directory`` (cached per directory)."""
    registry: Registry[ModelCard] = Registry("zoo model")
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        card = ModelCard.from_file(path)
        registry.register(card.name, card)
    return registry


def clear_cache() -> None:
    """Forgets scanned zoo directories, so cards written since are seen."""
    _scan.cache_clear()


def list_models(
    dataset: str | None = None,
    method: str | None = None,
    architecture: str | None = None,
    *,
    include_research: bool = False,
    directory: str | None = None,
) -> list[str]:
    """Names of the zoo's models a user should load, sorted, optionally filtered;
    ``include_research`` adds the research artifacts (cards with status "research"). Example::

        list_models(dataset="fashion_mnist", architecture="cnn")
    """
    wanted = {"dataset": dataset, "method": method, "architecture": architecture}
    registry = _scan(cards_dir(directory))
    cards = [registry.get(name) for name in registry.names()]
    return [
        card.name for card in cards
        if (include_research or not card.is_research)
        and all(value is None or getattr(card, key) == value for key, value in wanted.items())
    ]


def get_card(name: str, *, directory: str | None = None) -> ModelCard:
    """The `ModelCard` of zoo model ``name``; unknown names raise ValueError with close matches.

    Works for research artifacts too. Example: ``get_card("cnn_mat").metrics["worst_case_accuracy"]``.
    """
    directory = cards_dir(directory)
    registry = _scan(directory)
    if name not in registry:
        raise ValueError(_unknown_model_message(name, directory))
    return registry.get(name)


def load_model(name: str, *, pretrained: bool = True, directory: str | None = None) -> "keras.Model":
    """Builds zoo model ``name``; with ``pretrained``, loads its weights after checking their sha256
    (found locally, in the cache, or downloaded: see ``weights_path``). A research artifact loads
    with a `ResearchArtifactWarning` naming it and the card's reason.

    Example::

        model = load_model("cnn_mat_anchored")
        logits = model(images, training=False)  # images float32 [batch, H, W, C] in [0, 1]
    """
    card = get_card(name, directory=directory)
    if card.is_research:
        warnings.warn(
            f"Zoo model {name!r} is a research artifact, kept for reproducibility, not a model to use:"
            f" {card.status_reason.rstrip('.')}. list_models() names the models to use.",
            ResearchArtifactWarning, stacklevel=2,
        )
    model = card.build()
    if pretrained:
        # Keras casts float16 arrays to the float32 variables exactly
        model.load_weights(weights_path(card, directory))
    return model


def resolve_model(spec: str, *, directory: str | None = None) -> "keras.Model":
    """Loads the model ``spec`` names: a zoo model name, or a path to a ``.keras`` file."""
    import keras

    import metaadv_tf.models  # noqa: F401  (registers the architectures for .keras loading)

    if spec in list_models(include_research=True, directory=directory):
        return load_model(spec, directory=directory)
    if os.path.isfile(spec):
        _check_keras_archive(spec)
        return keras.saving.load_model(spec)
    if os.sep in spec or spec.endswith(".keras"):
        raise ValueError(f"Found no model file at {spec!r}; pass a .keras file or a zoo model name.")
    raise ValueError(_unknown_model_message(spec, cards_dir(directory)))


def _check_keras_archive(path: str) -> None:
    """Raises ValueError naming ``path`` if it is a ``.keras`` zip that is truncated or corrupted
    (Keras would call it "not found", or fail with a bare BadZipFile)."""
    if not path.endswith(".keras"):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            member = archive.testzip()  # reads every member and checks its CRC-32
        problem = f"its member {member!r} fails its CRC-32 check" if member else None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        problem = str(error)
    if problem:
        raise ValueError(
            f"Model file {path} is truncated or corrupted ({problem}); it was not loaded. Restore"
            " the file or save the model again."
        )


def _unknown_model_message(name: str, directory: str) -> str:
    """The unknown-name error (close matches, every name) plus where the cards were read from."""
    return (
        unknown_name_message("zoo model", name, _scan(directory).names())
        + f" Cards are read from {directory} (set ${ZOO_DIR_ENV} to use another directory)."
    )


# --- weights files -------------------------------------------------------------------------


def cache_dir() -> str:
    """Where downloaded weights are kept: ``$METAADV_CACHE``, else ``metaadv_tf/`` in Keras' cache
    directory (``$KERAS_HOME``, else ``~/.keras``)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.abspath(os.environ.get(CACHE_ENV) or os.path.join(keras_home, "metaadv_tf"))


def zoo_url() -> str:
    """Where weights are downloaded from: ``$METAADV_ZOO_URL``, else ``DEFAULT_ZOO_URL``."""
    return os.environ.get(ZOO_URL_ENV) or DEFAULT_ZOO_URL


def weights_path(card: ModelCard, directory: str | None = None) -> str:
    """A local file holding ``card``'s weights, checked against ``card.sha256``.

    Looked up in order: the local zoo directory (``weights_dir(directory)``), the cache
    (``cache_dir()``), then downloaded from ``zoo_url()`` into the cache. A local or cached file
    that fails the check raises ValueError (a cached one is also removed); a file found nowhere
    raises FileNotFoundError naming every place looked.
    """
    local = os.path.join(weights_dir(directory), card.weights)
    if os.path.exists(local):
        verify_weights(local, card.sha256)
        return local
    try:
        return downloads.fetch(card.weights, card.sha256, zoo_url(), cache_dir())
    except OSError as error:
        cached = downloads.cached_path(card.weights, card.sha256, cache_dir())
        raise FileNotFoundError(
            f"Found no weights for zoo model {card.name!r}: {local} does not exist, the cache has no"
            f" {cached}, and {error}. Set ${ZOO_URL_ENV} to a reachable copy of the zoo, or"
            f" ${ZOO_DIR_ENV} to a directory holding {card.weights} and the cards."
        ) from None


def verify_weights(path: str, sha256: str) -> None:
    """Raises ValueError unless the file ``path`` hashes to ``sha256`` (names Git LFS pointers as such)."""
    with open(path, "rb") as handle:
        head = handle.read(len(LFS_POINTER_PREFIX))
    if head == LFS_POINTER_PREFIX:
        raise ValueError(
            f"Weights file {path} is a Git LFS pointer, not the weights: Git LFS did not download"
            " it. Run `git lfs install && git lfs pull` in the checkout, then load again."
        )
    actual = sha256_file(path)
    if actual != sha256:
        raise ValueError(
            f"Weights file {path} is corrupted or truncated ({os.path.getsize(path)} bytes): its"
            f" sha256 is {actual} but the model card expects {sha256}. It was not loaded; restore"
            " the file or publish the model again."
        )


def save_weights(model: "keras.Model", path: str, dtype: str = "float32") -> None:
    """Writes ``model``'s weights to a ``.weights.h5`` file atomically, float32 arrays as ``dtype``.

    Raises ValueError (and leaves ``path`` untouched) if the file would reach ``MAX_WEIGHTS_BYTES``.
    Example: ``save_weights(model, "zoo/cnn_mat.weights.h5", "float16")``.
    """
    check_choice("weights dtype", dtype, list(WEIGHTS_DTYPES))

    def save(temporary: str) -> None:
        if dtype == "float32":
            model.save_weights(temporary)
        else:
            with tempfile.TemporaryDirectory() as scratch:
                full = os.path.join(scratch, "full.weights.h5")
                model.save_weights(full)
                _copy_h5(full, temporary, np.dtype(dtype))
        size = os.path.getsize(temporary)
        if size >= MAX_WEIGHTS_BYTES:
            raise ValueError(
                f"Weights for {path} take {size / 1024**2:.1f} MiB as {dtype}; zoo files must stay"
                f" under {MAX_WEIGHTS_BYTES // 1024**2} MiB."
            )

    atomic_save(path, save)


def _copy_h5(source: str, target: str, float_dtype: np.dtype) -> None:
    """Copies an HDF5 file's groups, datasets and attributes, storing float32 datasets as ``float_dtype``."""
    import h5py

    with h5py.File(source, "r") as reader, h5py.File(target, "w") as writer:
        writer.attrs.update(reader.attrs)

        def copy(name: str, item: Any) -> None:
            if isinstance(item, h5py.Dataset):
                values = item[()]
                if values.dtype == np.float32:
                    values = values.astype(float_dtype)
                created = writer.create_dataset(name, data=values)
            else:
                created = writer.require_group(name)
            created.attrs.update(item.attrs)

        reader.visititems(copy)


def build_architecture(
    architecture: str, input_shape: Sequence[int], num_classes: int, arguments: Mapping[str, Any]
) -> "keras.Model":
    """A fresh model of ``architecture`` for images of ``input_shape`` and ``num_classes`` classes."""
    from metaadv_tf.models import build_model

    return build_model(architecture, input_shape=tuple(input_shape), num_classes=num_classes, **arguments)


# --- evaluation protocol and golden outputs -----------------------------------------------


def evaluation_protocol(
    attacks: str | Sequence[str] = STANDARD_ATTACKS,
    num_examples: int = 1000,
    *,
    groups: Mapping[str, Sequence[str]] = STANDARD_GROUPS,
    split: str = "test",
    batch_size: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """A card's ``evaluation``: attack specs with every setting written out, and ``groups`` cut
    down to the attacks present (empty groups dropped). Example::

        evaluation_protocol("fgsm,mim", 200)["groups"]  # {'seen': ['fgsm'], 'unseen': ['mim']}
    """
    from metaadv_tf.attack_specs import format_attack, parse_attacks

    parsed = parse_attacks(attacks)
    names = {attack.name for attack in parsed}
    kept = {group: [a for a in members if a in names] for group, members in groups.items()}
    return {
        "attacks": [format_attack(attack) for attack in parsed],
        "groups": {group: members for group, members in kept.items() if members},
        "split": split,
        "num_examples": num_examples,
        "batch_size": batch_size,
        "seed": seed,
    }


def evaluate_protocol(
    model: "keras.Model",
    dataset: str,
    protocol: Mapping[str, Any],
    *,
    data_dir: str | None = None,
    cache_path: str | None = None,
    progress: bool = False,
) -> "EvaluationReport":
    """Runs ``protocol`` on the first ``num_examples`` images of ``dataset``, each attack seeded.

    The one code path behind a card's metrics and ``scripts/evaluate.py``, so they agree.
    ``cache_path`` (a JSON file) keeps finished attacks, so an interrupted evaluation resumes;
    it is keyed by the weights and the protocol, so results of another model are never reused.
    """
    from metaadv_tf import data
    from metaadv_tf.attack_specs import parse_attacks
    from metaadv_tf.evaluation import evaluate
    from metaadv_tf.evaluation_cache import open_cache

    x, y = data.load_arrays(dataset, protocol["split"], protocol["num_examples"], data_dir)
    cache = open_cache(cache_path, model, protocol, dataset)
    return evaluate(
        model, x, y, parse_attacks(protocol["attacks"]), groups=protocol["groups"] or None,
        batch_size=protocol["batch_size"], seed=protocol["seed"], cache=cache, progress=progress,
    )


def training_budget(card: ModelCard) -> dict[str, Any]:
    """The card's method and training budget (``method``, ``train_seconds``, ``images_seen``), as
    ``metaadv-evaluate --output`` records them beside a result."""
    return {"method": card.method, "train_seconds": card.train_seconds, "images_seen": card.images_seen}


def seen_threat_models(card: ModelCard) -> list[str]:
    """The threat models of the card's training tasks (none for standard training)."""
    return trained_threat_models(card.train_config)


def trained_threat_models(config: Mapping[str, Any]) -> list[str]:
    """The threat models a run of train config ``config`` (as a dict) attacks in training: none for
    standard training, Linf for PGD-AT and FGSM-RS, else those of its ``train_attacks``."""
    from metaadv_tf.attack_specs import parse_attacks
    from metaadv_tf.protocols import seen_threat_models as of_attacks

    if config["method"] == "standard":
        return []
    if config["method"] in ("pgd_at", "fgsm_rs"):
        return ["Linf"]
    return of_attacks(parse_attacks(config["train_attacks"]))


def evaluate_card(
    name: str,
    protocol: str = "v2",
    *,
    directory: str | None = None,
    data_dir: str | None = None,
    cache_path: str | None = None,
    progress: bool = False,
    num_examples: int | None = None,
) -> dict[str, Any]:
    """Runs ``protocol`` on zoo model ``name``, seen/unseen from its training tasks, attacking the
    first ``num_examples`` test images (default: the protocol's count).

    Returns ``{"settings": ..., "metrics": ...}``, as stored in ``card.evaluations[protocol]``.
    """
    from metaadv_tf.protocols import get_protocol, run_protocol

    card = get_card(name, directory=directory)
    settings = get_protocol(protocol).settings(seen_threat_models(card), num_examples)
    metrics = run_protocol(load_model(name, directory=directory), card.dataset, settings,
                           data_dir=data_dir, cache_path=cache_path, progress=progress)
    return {"settings": settings, "metrics": metrics}


def evaluation_is_current(card: ModelCard, protocol: str = "v2") -> bool:
    """Whether ``card`` holds results of ``protocol`` under the protocol's current settings (on the
    number of images the card's record attacked)."""
    from metaadv_tf.protocols import get_protocol

    stored = card.evaluations.get(protocol)
    return stored is not None and stored["settings"] == get_protocol(protocol).settings(
        seen_threat_models(card), stored_num_examples(card, protocol))


def stored_num_examples(card: ModelCard, protocol: str = "v2") -> int | None:
    """How many images ``card``'s record of ``protocol`` attacked (None without a record)."""
    stored = card.evaluations.get(protocol)
    return stored["settings"]["num_examples"] if stored else None


def store_evaluation(name: str, protocol: str, record: Mapping[str, Any], *, directory: str | None = None) -> ModelCard:
    """Writes ``record`` (from ``evaluate_card``) into zoo model ``name``'s card, atomically."""
    card = get_card(name, directory=directory)
    updated = dataclasses.replace(card, evaluations={**card.evaluations, protocol: dict(record)})
    atomic_write_text(os.path.join(cards_dir(directory), f"{name}.json"), updated.to_json())
    clear_cache()
    return updated


def report_metrics(report: "EvaluationReport") -> dict[str, Any]:
    """The accuracies of an evaluation report, as stored in a card's ``metrics``."""
    keys = ("clean_accuracy", "robust_accuracy", "worst_case_accuracy", "worst_case_by_group")
    return {key: report.to_dict()[key] for key in keys}


def golden_logits(model: "keras.Model", dataset: str, *, data_dir: str | None = None) -> dict[str, Any]:
    """The logits of the first ``GOLDEN_EXAMPLES`` test images, rounded, as a card's ``golden``."""
    from metaadv_tf import data

    x, _ = data.load_arrays(dataset, "test", GOLDEN_EXAMPLES, data_dir)
    logits = np.asarray(model(x, training=False), dtype=np.float64).round(GOLDEN_DECIMALS)
    return {"split": "test", "num_examples": GOLDEN_EXAMPLES, "logits": logits.tolist(), "atol": GOLDEN_ATOL}


def verify_golden(model: "keras.Model", card: ModelCard, *, data_dir: str | None = None) -> float:
    """Checks ``model`` reproduces ``card.golden``; returns the largest logit difference.

    Catches weights loaded into a changed architecture, which ``.weights.h5`` allows silently
    when the shapes agree. Example: ``verify_golden(load_model(name), get_card(name))``.
    """
    from metaadv_tf import data

    golden = card.golden
    x, _ = data.load_arrays(card.dataset, golden["split"], golden["num_examples"], data_dir)
    difference = float(np.max(np.abs(np.asarray(model(x, training=False)) - np.asarray(golden["logits"]))))
    if not difference <= golden["atol"]:
        raise ValueError(
            f"Zoo model {card.name!r} does not reproduce its golden logits: max difference"
            f" {difference:.3g} > atol {golden['atol']}. Its architecture or weights changed."
        )
    return difference
