"""Robustness evaluation: clean, per-attack and worst-case ("union") accuracy of a classifier.

Example::

    report = evaluate(model, x, y, ["fgsm", "pgd_linf"], groups={"seen": ["fgsm"]})
    print(report.to_table())
    report.to_json("results/eval.json")

An example counts as robust to an attack when the model classifies it correctly both clean and
under that attack (the AutoAttack convention), so robust accuracy never exceeds clean accuracy.
It counts towards the worst-case accuracy of a set of attacks when it is robust to all of them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from metaadv_tf.attack_specs import format_attack, parse_attack
from metaadv_tf.attacks import Attack, attack_labels, eps_label
from metaadv_tf.evaluation_cache import EvaluationCache
from metaadv_tf.io_utils import atomic_write_text
from metaadv_tf.registry import unknown_name_message
from metaadv_tf.validation import check_images, check_positive_int

ModelFn = Callable[[tf.Tensor], tf.Tensor]
CorrectFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
Batch = tuple[np.ndarray, np.ndarray]
CLEAN_LABEL = "clean"


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Accuracies (fractions in [0, 1]) on ``num_examples`` examples, keyed by attack label.

    ``attack_settings[label]`` holds the attack's name, norm, eps and other settings;
    ``seconds[label]`` the wall time the attack took (tracing included); ``metadata`` is free-form
    context (model, dataset, seed) added by the caller.
    """

    num_examples: int
    clean_accuracy: float
    robust_accuracy: dict[str, float]
    worst_case_accuracy: float
    worst_case_by_group: dict[str, float] = dataclasses.field(default_factory=dict)
    attack_settings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain, JSON-serializable Python values."""
        return dataclasses.asdict(self)

    def to_json(self, path: str) -> None:
        """Writes the report as JSON to ``path`` atomically (temp file, then ``os.replace``)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str) -> "EvaluationReport":
        """Reads a report written by ``to_json``."""
        with open(path, encoding="utf-8") as file:
            return cls(**json.load(file))

    def to_markdown(self, path: str) -> None:
        """Writes ``to_table()`` to ``path`` atomically."""
        atomic_write_text(path, self.to_table() + "\n")

    def to_table(self) -> str:
        """A Markdown table: attack | norm | eps | robust acc %, with clean and worst-case rows."""
        rows = [("clean", "-", "-", self.clean_accuracy)]
        for label, accuracy in self.robust_accuracy.items():
            settings = self.attack_settings.get(label, {})
            norm, eps = _norm_label(settings.get("norm")), eps_label(settings.get("eps"))
            rows.append((label, norm, eps, accuracy))
        rows.append(("worst case (all attacks)", "-", "-", self.worst_case_accuracy))
        for group, accuracy in self.worst_case_by_group.items():
            rows.append((f"worst case ({group})", "-", "-", accuracy))
        lines = ["| attack | norm | eps | robust acc % |", "| --- | --- | --- | ---: |"]
        lines += [f"| {a} | {n} | {e} | {100 * acc:.2f} |" for a, n, e, acc in rows]
        return "\n".join(lines)


def evaluate(
    model: ModelFn,
    x: np.ndarray,
    y: np.ndarray,
    attacks: Sequence[Attack | str] | Mapping[str, Attack | str],
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 100,
    seed: int | None = None,
    cache: EvaluationCache | None = None,
    progress: bool = False,
) -> EvaluationReport:
    """Clean, per-attack and worst-case accuracy of ``model`` on images ``x`` with labels ``y``.

    ``model`` is a Keras model (called with ``training=False``) or any callable returning logits.
    ``attacks`` are Attack objects, names or specs (``"pgd_linf(steps=5)"``); a name used twice is
    labelled ``name(eps=...)``. A mapping labels its attacks itself (``{"Linf": attack, ...}``).
    ``groups`` maps a group name to attack labels or names, and adds the worst-case accuracy over
    each group. Each attack runs under ``tf.function``, traced once;
    ``progress`` shows a tqdm bar per attack. ``seed`` reseeds the random number generators
    before each attack, so an attack's result does not depend on the others in the list.
    ``cache`` keeps each finished attack's results: a rerun after an interruption skips them.
    """
    x = check_images(x, _input_shape(model))
    if len(x) == 0:
        raise ValueError("x must contain at least one example. Received an empty batch.")
    batch_size = check_positive_int("batch_size", batch_size)
    model_fn = _logits_fn(model)
    y = check_labels(y, len(x), num_classes=int(model_fn(tf.constant(x[:1])).shape[-1]))
    labelled = _label_attacks(attacks)
    members = _group_members(groups or {}, labelled)

    batches = _batches(x, y, batch_size)

    def correct_flags(label: str, make_step: Callable[[], CorrectFn], what: str) -> tuple[np.ndarray, float]:
        stored = cache.get(label, len(x), what) if cache else None
        if stored is not None:
            return stored
        if seed is not None:
            keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        flags = _run(make_step(), batches, len(x), label, progress)
        result = flags, time.perf_counter() - start
        if cache:
            cache.put(label, *result, what)
        return result

    clean, _ = correct_flags(CLEAN_LABEL, lambda: tf.function(_correct_fn(model_fn)), CLEAN_LABEL)
    robust, seconds = {}, {}
    for label, attack in labelled.items():
        flags, seconds[label] = correct_flags(label, lambda: _attack_step(attack, model_fn),
                                              format_attack(attack))
        robust[label] = clean & flags

    def worst_case(labels: Sequence[str]) -> float:
        return float(np.mean(np.logical_and.reduce([clean] + [robust[lab] for lab in labels])))

    return EvaluationReport(
        num_examples=len(x),
        clean_accuracy=float(np.mean(clean)),
        robust_accuracy={label: float(np.mean(flags)) for label, flags in robust.items()},
        worst_case_accuracy=worst_case(list(robust)),
        worst_case_by_group={group: worst_case(labels) for group, labels in members.items()},
        attack_settings={label: _attack_settings(attack) for label, attack in labelled.items()},
        seconds=seconds,
    )


def clean_accuracy(model: ModelFn, x: np.ndarray, y: np.ndarray, *, batch_size: int = 500) -> float:
    """The fraction of images ``x`` that ``model`` classifies as ``y`` (no attack)."""
    model_fn = _logits_fn(model)
    step = tf.function(_correct_fn(model_fn))
    return float(np.mean(_run(step, _batches(check_images(x, _input_shape(model)), y, batch_size),
                              len(x), CLEAN_LABEL, False)))


def check_labels(labels: np.ndarray, num_examples: int, num_classes: int) -> np.ndarray:
    """Checks integer labels of shape [num_examples] in [0, num_classes); returns them as int32."""
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"Labels must be integers. Received dtype {array.dtype}.")
    if array.shape != (num_examples,):
        raise ValueError(
            f"Labels must have shape [{num_examples}], one per image. Received shape {array.shape}."
        )
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"Labels must lie in [0, {num_classes}) for a model with {num_classes} classes."
            f" Received values in [{array.min()}, {array.max()}]."
        )
    return array.astype(np.int32)


def _input_shape(model: Any) -> tuple[int, ...] | None:
    """(H, W, C) of a built Keras model's input, or None when unknown."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and None not in shape[1:]:
        return shape[1:]
    return None


def _logits_fn(model: ModelFn) -> ModelFn:
    """One callable for every attack and batch (CleverHans retraces on fresh closures)."""
    if isinstance(model, keras.Model):
        return lambda images: model(images, training=False)
    return model


def _correct_fn(model_fn: ModelFn) -> CorrectFn:
    """(images, labels) -> bool [batch]: whether the model's top class is the label."""

    def correct(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return tf.equal(tf.argmax(model_fn(images), axis=-1, output_type=tf.int32), labels)

    return correct


def _attack_step(attack: Attack, model_fn: ModelFn) -> CorrectFn:
    """Attack then classify one batch, compiled with ``tf.function``: one function per attack,
    traced once per batch shape (``_batches`` makes one), with fresh random-op state that the
    caller's seeding sets. The function wraps its own ``functools.partial``, because TensorFlow
    counts the traces of all functions sharing a Python code object together, and would report
    one trace per attack as "retracing" after five attacks."""
    return tf.function(functools.partial(_attack_and_classify, attack, model_fn))


def _attack_and_classify(
    attack: Attack, model_fn: ModelFn, images: tf.Tensor, labels: tf.Tensor
) -> tf.Tensor:
    """Whether ``model_fn`` classifies ``attack``'s adversarial ``images`` as ``labels``."""
    return _correct_fn(model_fn)(attack(model_fn, images, labels), labels)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> list[Batch]:
    """Equal batches of min(batch_size, N), the last one padded by wrapping around to the start.

    One batch shape means one trace per compiled attack; ``_run`` drops the padding's results.
    """
    size = min(batch_size, len(x))
    indices = np.arange(-(-len(x) // size) * size) % len(x)
    return [(x[batch], y[batch]) for batch in np.split(indices, len(indices) // size)]


def _run(
    step: CorrectFn, batches: list[Batch], num_examples: int, description: str, progress: bool
) -> np.ndarray:
    """Applies ``step`` to every batch; returns the first ``num_examples`` bool flags."""
    flags = [
        step(tf.constant(images), tf.constant(labels)).numpy()
        for images, labels in tqdm(batches, desc=description, disable=not progress)
    ]
    return np.concatenate(flags)[:num_examples]


def _label_attacks(attacks: Sequence[Attack | str] | Mapping[str, Attack | str]) -> dict[str, Attack]:
    """Resolves names and specs; labels a list's attacks with ``attack_labels``."""
    if not isinstance(attacks, (list, tuple, Mapping)) or not attacks:
        raise ValueError(
            f"attacks must be a non-empty list or mapping of attacks or names. Received: {attacks!r}"
        )
    if isinstance(attacks, Mapping):
        return {label: _resolve_attack(a) for label, a in attacks.items()}
    resolved = [_resolve_attack(a) for a in attacks]
    return dict(zip(attack_labels(resolved), resolved))


def _resolve_attack(attack: Attack | str) -> Attack:
    """An Attack, or the one a name or spec (``"pgd_linf(steps=5)"``) describes."""
    return parse_attack(attack) if isinstance(attack, str) else attack


def _group_members(
    groups: Mapping[str, Sequence[str]], labelled: Mapping[str, Attack]
) -> dict[str, list[str]]:
    """Maps each group to the labels it names; an entry may be a label or an attack name."""
    members = {}
    for group, entries in groups.items():
        if isinstance(entries, str) or not entries:
            raise ValueError(
                f"Group {group!r} must be a non-empty list of attacks. Received: {entries!r}"
            )
        labels = []
        for entry in entries:
            matches = [label for label, a in labelled.items() if entry in (label, a.name)]
            if not matches:
                message = unknown_name_message("attack", entry, list(labelled))
                raise ValueError(f"Group {group!r}: {message}")
            labels += [label for label in matches if label not in labels]
        members[group] = labels
    return members


def _attack_settings(attack: Attack) -> dict[str, Any]:
    """JSON-friendly name, norm, eps and settings of an attack."""
    settings = {"name": attack.name, "norm": attack.norm, "eps": attack.eps, **attack.settings}
    return {key: _jsonable(value) for key, value in settings.items()}


def _jsonable(value: Any) -> Any:
    """Numbers as Python numbers (infinity as "inf"), other non-JSON values as strings."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return str(value)


def _norm_label(norm: Any) -> str:
    """'Linf', 'L2', ... for a norm given as a number or a string; '-' when unknown."""
    if norm is None:
        return "-"
    text = str(norm).lower().lstrip("l")
    if text in ("inf", "infinity"):
        return "Linf"
    try:
        return f"L{float(text):g}"
    except ValueError:
        return str(norm)
