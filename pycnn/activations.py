"""Activation functions on NumPy arrays, computed by the native core.

Every activation the core registers (csrc/activation.cpp and the files beside it: ``relu``,
``sigmoid``, ``tanh``, ``softmax`` over the last axis, ``leaky_relu`` with Keras's
activation default slope 0.2, ``linear``, ...) is a function of this module taking any real
numeric array and returning float32 of the same shape: ``pycnn.activations.relu(x)``. Layers
refer to activations by name; :func:`get` turns a name, ``None`` or one of these functions
into that name. :func:`names` lists them; nothing here lists them by hand.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple, Union

import numpy as np

from . import ops
from .utils import as_float32


def names() -> Tuple[str, ...]:
    """Every activation name a layer accepts."""
    return tuple(ops.activations())


def _function(name: str) -> Callable[[Any], np.ndarray]:
    def activation(x: Any) -> np.ndarray:
        arr = as_float32(x, f"{name}()")
        if arr.ndim == 0:
            return ops.run("activation", [arr.reshape(1, 1)], attrs={"activation": name}).reshape(())
        return ops.run("activation", [arr[None]], attrs={"activation": name})[0]

    activation.__name__ = activation.__qualname__ = name
    activation.__doc__ = f"{ops.activations()[name]}; float32 with the shape of ``x``."
    activation._pycnn_activation = name  # type: ignore[attr-defined]
    return activation


_FUNCTIONS: Dict[str, Callable[[Any], np.ndarray]] = {}


def __getattr__(name: str) -> Callable[[Any], np.ndarray]:
    """``pycnn.activations.relu`` and the like, one function per registered activation."""
    if name in ops.activations():
        if name not in _FUNCTIONS:
            _FUNCTIONS[name] = _function(name)
        return _FUNCTIONS[name]
    raise AttributeError(f"module 'pycnn.activations' has no attribute {name!r}")


def gelu(x: Any, approximate: bool = False) -> np.ndarray:
    """Keras's ``gelu(x, approximate=False)``: ``x * Phi(x)`` in the exact erf form, or its tanh
    approximation (the registered activation 'gelu_approximate'); float32 of ``x``'s shape."""
    if not isinstance(approximate, (bool, np.bool_)):
        raise TypeError(f"gelu() expected approximate to be True or False. Received: approximate={approximate!r}.")
    return __getattr__("gelu_approximate" if approximate else "gelu")(x)


gelu._pycnn_activation = "gelu"  # type: ignore[attr-defined]


def __dir__() -> List[str]:
    return sorted(list(globals()) + list(names()))


def get(identifier: Union[None, str, Callable], owner: str = "get()") -> str:
    """Normalise an activation identifier to its name.

    Args:
        identifier: ``None`` (-> 'linear'), a name in any case, or one of the functions
            of this module.
        owner: who is asking, for the error message (e.g. ``Conv2D``).

    Returns:
        A registered activation name, e.g. 'relu'.

    Raises:
        ValueError: for an unknown name or function.
    """
    if identifier is None:
        return "linear"
    if isinstance(identifier, str) and identifier.lower() in ops.activations():
        return identifier.lower()
    name = getattr(identifier, "_pycnn_activation", None)
    if callable(identifier) and name is not None:
        return name
    raise ValueError(
        f"Invalid value for argument 'activation' of {owner}: expected one of "
        f"{', '.join(repr(n) for n in names())} or None. Received: activation={identifier!r}.")
