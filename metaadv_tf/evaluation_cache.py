"""Resumable evaluations: each attack's per-example results are saved as soon as it finishes.

A ResNet-18 evaluation under CW-L2 and SPSA runs for hours on a CPU; with a cache, a restarted
evaluation recomputes only the attacks that had not finished. Example::

    cache = EvaluationCache("runs/eval/cache.json", key=evaluation_key(model, protocol))
    report = evaluate(model, x, y, attacks, seed=0, cache=cache)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Mapping

import numpy as np

from metaadv_tf.io_utils import atomic_write_text


class EvaluationCache:
    """Per-example correctness flags and seconds by attack label, in one JSON file under a key.

    The key names what is evaluated (weights, data, protocol settings other than the attacks);
    each entry also records its attack's full spec, so changing one attack of a protocol reruns
    that attack only. A file written under another key, or one that cannot be read, is set aside
    with a warning and replaced as results come in, so stale results are never reused. Writes
    are atomic.
    """

    def __init__(self, path: str, key: str) -> None:
        self.path, self.key = path, key
        self._results: dict[str, dict[str, Any]] = self._read()

    def get(self, label: str, num_examples: int, attack: str) -> tuple[np.ndarray, float] | None:
        """The flags and seconds stored for ``label``, or None if absent, of another length or
        made by another ``attack`` (its spec)."""
        entry = self._results.get(label)
        if entry is None or len(entry["flags"]) != num_examples or entry.get("attack") != attack:
            return None
        return np.array([bit == "1" for bit in entry["flags"]], dtype=bool), float(entry["seconds"])

    def put(self, label: str, flags: np.ndarray, seconds: float, attack: str) -> None:
        """Stores the results of ``label`` made by ``attack`` (its spec) and rewrites the file."""
        self._results[label] = {"flags": "".join("1" if f else "0" for f in flags), "seconds": seconds,
                                "attack": attack}
        text = json.dumps({"key": self.key, "results": self._results}, indent=1)
        atomic_write_text(self.path, text + "\n")

    def _read(self) -> dict[str, dict[str, Any]]:
        """The stored results when the file exists and holds this key, else nothing."""
        if not os.path.exists(self.path):
            return {}
        try:
            with open(self.path, encoding="utf-8") as file:
                content = json.load(file)
            stored_key, results = content["key"], content["results"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            logging.warning("Ignoring unreadable evaluation cache %s (%s); starting afresh.", self.path, error)
            return {}
        if stored_key != self.key:
            logging.warning("Evaluation cache %s belongs to another model or protocol; starting afresh.",
                            self.path)
            return {}
        return results


# protocol settings that name attacks or group their results: not part of a cache's key (each
# cache entry records its own attack), as the per-example flags do not depend on them
ATTACK_SETTINGS = ("attacks", "groups", "unions", "seen", "unseen")


def evaluation_key(weights: list[np.ndarray], protocol: Mapping[str, Any], dataset: str) -> str:
    """A sha256 over the weight values, the dataset name and the protocol (attacks, N, seed...)."""
    digest = hashlib.sha256()
    for array in weights:
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps({"dataset": dataset, **protocol}, sort_keys=True).encode())
    return digest.hexdigest()


def open_cache(path: str | None, model: Any, protocol: Mapping[str, Any], dataset: str) -> EvaluationCache | None:
    """The cache at ``path`` for ``model``'s weights under ``protocol`` (None without a path)."""
    if not path:
        return None
    data = {key: value for key, value in protocol.items() if key not in ATTACK_SETTINGS}
    return EvaluationCache(path, evaluation_key([w.numpy() for w in model.weights], data, dataset))
