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

    The key names what is evaluated (weights, data, protocol). A file written under another key,
    or one that cannot be read, is set aside with a warning and replaced as results come in, so
    stale results are never reused. Writes are atomic.
    """

    def __init__(self, path: str, key: str) -> None:
        self.path, self.key = path, key
        self._results: dict[str, dict[str, Any]] = self._read()

    def get(self, label: str, num_examples: int) -> tuple[np.ndarray, float] | None:
        """The flags and seconds stored for ``label``, or None if absent or of another length."""
        entry = self._results.get(label)
        if entry is None or len(entry["flags"]) != num_examples:
            return None
        return np.array([bit == "1" for bit in entry["flags"]], dtype=bool), float(entry["seconds"])

    def put(self, label: str, flags: np.ndarray, seconds: float) -> None:
        """Stores the results of ``label`` and rewrites the file."""
        self._results[label] = {"flags": "".join("1" if f else "0" for f in flags), "seconds": seconds}
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
    return EvaluationCache(path, evaluation_key([w.numpy() for w in model.weights], protocol, dataset))
