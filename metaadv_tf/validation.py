"""Checks on user-supplied images and numbers, with messages that name the bad value."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Raises ValueError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number. Received: {name}={value!r}") from None
    ok = np.isfinite(number) and (number >= 0 if allow_zero else number > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}. Received: {name}={value!r}")
    return number


def check_positive_int(name: str, value: int, *, allow_zero: bool = False) -> int:
    """Raises ValueError unless ``value`` is an integer >= 1 (>= 0 with ``allow_zero``)."""
    bound = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < bound:
        raise ValueError(f"{name} must be an integer >= {bound}. Received: {name}={value!r}")
    return int(value)


def check_images(images: np.ndarray, input_shape: Sequence[int] | None = None) -> np.ndarray:
    """Checks a batch of images: float32 [batch, H, W, C], finite, in [0, 1].

    ``input_shape`` (H, W, C), when given, must match the batch's image shape. Returns the input.
    """
    array = np.asarray(images)
    if array.dtype != np.float32:
        raise ValueError(
            f"Images must be float32 in [0, 1]. Received dtype {array.dtype}"
            " (convert uint8 images with images.astype('float32') / 255)."
        )
    if array.ndim != 4:
        raise ValueError(
            f"Images must have rank 4 [batch, height, width, channels]."
            f" Received shape {array.shape} (rank {array.ndim})."
        )
    if input_shape is not None and tuple(array.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"Images must have shape [batch, {', '.join(map(str, input_shape))}]."
            f" Received shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        count = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"Images contain {count} NaN or Inf values; expected finite values in [0, 1].")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(
            f"Images must lie in [0, 1]. Received values in [{array.min():.4g}, {array.max():.4g}]."
        )
    return array
