"""Reshape: a new per-sample shape for the same values (row-major, as Keras)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import utils
from .base import Layer, NativeTwin, Shape


class Reshape(Layer):
    """Reshapes each sample to ``target_shape``, like ``keras.layers.Reshape``.

    ``Reshape((32, 32, 6))`` turns ``(N, 32, 32, 3, 2)`` into ``(N, 32, 32, 6)``. One entry
    may be -1: it is inferred from the input's size.

    Args:
        target_shape: the per-sample output shape (no batch axis); positive ints, at most
            one -1.
    """

    def __init__(self, target_shape: Sequence[int], name: Optional[str] = None,
                 input_shape: Optional[Sequence[Optional[int]]] = None, trainable: bool = True) -> None:
        try:
            dims = tuple(target_shape)
        except TypeError:
            dims = None
        ok = dims is not None and len(dims) >= 1 and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d >= 1 or d == -1) for d in dims)
        if not ok or dims.count(-1) > 1:
            raise ValueError("Invalid value for argument 'target_shape' of Reshape: expected a tuple of positive "
                             f"integers with at most one -1. Received: target_shape={target_shape!r}.")
        self.target_shape: Tuple[int, ...] = tuple(int(d) for d in dims)
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)

    def _check_ndim(self, shape: Shape) -> None:
        if len(shape) < 2:
            super()._check_ndim(shape)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        shape = tuple(input_shape)
        self._check_ndim(shape)
        rest = shape[1:]
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if any(d is None for d in rest):
            out = tuple(None if d == -1 else d for d in self.target_shape)
            return (shape[0],) + out
        size = int(np.prod(rest, dtype=np.int64))
        out = list(self.target_shape)
        if -1 in out and known > 0 and size % known == 0:
            out[out.index(-1)] = size // known
        if -1 in out or int(np.prod(out, dtype=np.int64)) != size:
            raise ValueError(f"Layer '{self.name}' (Reshape): the total size of the tensor must be unchanged. "
                             f"Received: input_shape={utils.shape_str(shape)} ({size} values per sample), "
                             f"target_shape={self.target_shape}.")
        return (shape[0],) + tuple(out)

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> Tuple[np.ndarray, Any]:
        out_shape = self.compute_output_shape(x.shape)
        return x.reshape(out_shape), x.shape

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool) -> Tuple[Any, list]:
        return (dout.reshape(ctx) if need_input_grad else None), []

    def native_twin(self, training: bool, logits: bool) -> Optional[NativeTwin]:
        return NativeTwin("reshape", (), self.target_shape)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["target_shape"] = self.target_shape
        return config
