"""Weight penalties, as ``keras.regularizers``: ``Dense(64, kernel_regularizer=l2(1e-4))``.

A regularizer maps a weight array to a penalty that training adds to the loss (the loss
``fit`` reports includes it, as in Keras) and its gradient to the weight's gradient:

========  ================================  =========================================
L1        ``l1 * sum(|w|)``                 ``l1 * sign(w)``
L2        ``l2 * sum(w ** 2)``              ``2 * l2 * w``
L1L2      both                              both
========  ================================  =========================================

Defaults follow Keras: ``L1(l1=0.01)``, ``L2(l2=0.01)``, ``L1L2(l1=0.0, l2=0.0)`` and the
shortcut ``l1_l2(l1=0.01, l2=0.01)``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Union

import numpy as np


def _factor(value: Any, arg: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"Invalid value for argument '{arg}' of {owner}: expected a finite number >= 0. "
                         f"Received: {arg}={value!r}.")
    return float(value)


class Regularizer:
    """Base class: ``penalty(w)`` (a float) and ``gradient(w)`` (float32, w's shape)."""

    def __call__(self, w: np.ndarray) -> float:
        return self.penalty(w)

    def penalty(self, w: np.ndarray) -> float:
        raise NotImplementedError

    def gradient(self, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)``."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _factor(l1, "l1", type(self).__name__)
        self.l2 = _factor(l2, "l2", type(self).__name__)

    def penalty(self, w: np.ndarray) -> float:
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.abs(w).sum(dtype=np.float64))
        if self.l2:
            total += self.l2 * float(np.square(w, dtype=np.float64).sum())
        return total

    def gradient(self, w: np.ndarray) -> np.ndarray:
        grad = np.zeros_like(w, dtype=np.float32)
        if self.l1:
            grad += np.float32(self.l1) * np.sign(w).astype(np.float32)
        if self.l2:
            grad += np.float32(2.0 * self.l2) * w
        return grad

    def get_config(self) -> Dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)

    def get_config(self) -> Dict[str, Any]:
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)

    def get_config(self) -> Dict[str, Any]:
        return {"l2": self.l2}


def l1(l1: float = 0.01) -> L1:  # noqa: D103 - Keras's shortcut names
    return L1(l1)


def l2(l2: float = 0.01) -> L2:  # noqa: D103
    return L2(l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:  # noqa: D103
    return L1L2(l1=l1, l2=l2)


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01)}


def serialize(regularizer: Optional[Regularizer]) -> Optional[Dict[str, Any]]:
    """A JSON-able description (for saved models), or None."""
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def get(identifier: Union[None, str, Dict[str, Any], Regularizer], arg: str = "kernel_regularizer",
        owner: str = "layer") -> Optional[Regularizer]:
    """None, a name ('l1', 'l2', 'l1_l2', with Keras's default factors), a serialized dict
    or a :class:`Regularizer`.

    Raises:
        ValueError: for an unknown name or class.
        TypeError: for anything else.
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in _NAMES:
            return _NAMES[identifier.lower()]()
        raise ValueError(f"Invalid value for argument '{arg}' of {owner}: expected one of 'l1', 'l2', 'l1_l2' or a "
                         f"pycnn.regularizers.Regularizer. Received: {arg}={identifier!r}.")
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise TypeError(f"Invalid value for argument '{arg}' of {owner}: expected None, 'l1', 'l2', 'l1_l2' or a "
                    f"pycnn.regularizers.Regularizer. Received: {arg}={identifier!r}.")
