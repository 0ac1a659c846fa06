"""metaadv_tf: meta-adversarial training (MAT) for TensorFlow / Keras 3, with a model zoo.

Importing the package is cheap: TensorFlow, CleverHans and TFDS load when first needed. It only
checks that TensorFlow is installed: the package leaves the choice of its build to the extras
``metaadv_tf[cpu]`` and ``metaadv_tf[gpu]`` (see BUILD.md). Example::

    from metaadv_tf import load_model
    model = load_model("cnn_mat_anchored")
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

if importlib.util.find_spec("tensorflow") is None:
    raise ImportError(
        "metaadv_tf needs TensorFlow, which is not installed: pip install 'metaadv_tf[cpu]' (CPU)"
        " or 'metaadv_tf[gpu]' (NVIDIA GPU, Linux), or install a TensorFlow build yourself."
    )

# oneDNN makes this library's steps 1.7-2.7x faster on CPUs where TensorFlow leaves it off.
# It only takes effect if TensorFlow is not imported yet; set the variable to 0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

_LAZY = {
    "load_model": "metaadv_tf.zoo",
    "list_models": "metaadv_tf.zoo",
    "get_card": "metaadv_tf.zoo",
    "build_model": "metaadv_tf.models",
    "get_attack": "metaadv_tf.attacks",
    "list_attacks": "metaadv_tf.attacks",
    "evaluate": "metaadv_tf.evaluation",
    "benchmark": "metaadv_tf.protocols",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metaadv_tf' has no attribute {name!r}")


__all__ = sorted(_LAZY)
