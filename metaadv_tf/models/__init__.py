"""Architectures by name: ``build_model("resnet18", input_shape=(28, 28, 1), num_classes=10)``."""
from __future__ import annotations

from typing import Any, Callable

import keras

from metaadv_tf.models.base import ClassifierModel
from metaadv_tf.models.cnn import SmallCNN
from metaadv_tf.models.layers import BatchNorm, Standardize
from metaadv_tf.models.precision import DTYPE_POLICIES, precision_twin
from metaadv_tf.models.resnet import ResNet18
from metaadv_tf.registry import Registry

ARCHITECTURES: Registry[Callable[..., ClassifierModel]] = Registry("model architecture")
ARCHITECTURES.register("cnn", SmallCNN)
ARCHITECTURES.register("resnet18", ResNet18)


def build_model(name: str, **arguments: Any) -> keras.Model:
    """Builds the architecture ``name`` (see ``list_architectures()``) with fresh weights."""
    return ARCHITECTURES.get(name)(**arguments)


def list_architectures() -> list[str]:
    """Names accepted by ``build_model``."""
    return ARCHITECTURES.names()


__all__ = [
    "DTYPE_POLICIES", "BatchNorm", "ClassifierModel", "ResNet18", "SmallCNN", "Standardize", "build_model",
    "list_architectures", "precision_twin",
]
