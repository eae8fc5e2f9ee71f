"""Layers that merge several tensors: Concatenate, Add, Multiply (as ``keras.layers``).

Each is called on a list of tensors, ``Concatenate(axis=3)([dx, dy, edges])``; shapes are
checked when the graph is written, and a mismatch names every input and its shape.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .. import ops, utils
from .base import Layer, Shape, _full_shape

__all__ = ["Add", "Multiply", "Concatenate"]


class _Merge(Layer):
    """Base of the merging layers: the input is a list of at least two tensors."""

    _multi_input = True

    def __init__(self, name: Optional[str] = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)

    # ---------------------------------------------------------------- shapes

    def _shape_list(self, input_shape: Any) -> List[Shape]:
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2 or \
                not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) should be called on a list of at least "
                             f"2 inputs. Received: input_shape={input_shape!r}.")
        return [_full_shape(s, self.name) for s in input_shape]

    def _symbolic_output_shape(self, shapes: Any, input_names: Sequence[str]) -> Shape:
        out = self._checked_output_shape(self._shape_list(shapes), input_names)
        self._shape_for(shapes)
        return out

    def compute_output_shape(self, input_shape: Any) -> Shape:
        return self._checked_output_shape(self._shape_list(input_shape), None)

    def _checked_output_shape(self, shapes: List[Shape], names: Optional[Sequence[str]]) -> Shape:
        raise NotImplementedError

    def _received(self, shapes: List[Shape], names: Optional[Sequence[str]]) -> str:
        if names is None:
            return "input shapes " + ", ".join(utils.shape_str(s) for s in shapes)
        return "inputs " + ", ".join(f"'{n}' {utils.shape_str(s)}" for n, s in zip(names, shapes))

    @property
    def output_shape(self) -> Shape:
        if not self.built:
            return super().output_shape
        return self.compute_output_shape(self.input_shape)


class _ElementWise(_Merge):
    def _checked_output_shape(self, shapes: List[Shape], names: Optional[Sequence[str]]) -> Shape:
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or any(a is not None and b is not None and a != b
                                           for a, b in zip(s[1:], first[1:])):
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) expected inputs of the same shape. "
                                 f"Received: {self._received(shapes, names)}.")
        # A dimension is known when any input knows it.
        return tuple(next((s[i] for s in shapes if s[i] is not None), None) for i in range(len(first)))


class Add(_ElementWise):
    """Element-wise sum of a list of tensors of one shape: ``Add()([x, y])``."""

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("add", {})


class Multiply(_ElementWise):
    """Element-wise product of a list of tensors of one shape: ``Multiply()([x, y])``."""

    def spec(self, training: bool = False) -> ops.OpSpec:
        return ops.OpSpec("multiply", {})


class Concatenate(_Merge):
    """Joins a list of tensors along ``axis`` (default -1, the channels), like
    ``keras.layers.Concatenate``. All other dimensions must match.

    Args:
        axis: the axis to join along, counting the batch axis (-1 = last; 0 is refused).
    """

    def __init__(self, axis: int = -1, name: Optional[str] = None, trainable: bool = True) -> None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Invalid value for argument 'axis' of Concatenate: expected an integer. "
                             f"Received: axis={axis!r}.")
        self.axis = int(axis)
        super().__init__(name=name, trainable=trainable)

    def _axis(self, ndim: int, shapes: List[Shape], names: Optional[Sequence[str]]) -> int:
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(f"Layer '{self.name}' (Concatenate) got axis={self.axis}, which is not a non-batch "
                             f"axis of its {ndim}-D {self._received(shapes, names)}.")
        return axis

    def _checked_output_shape(self, shapes: List[Shape], names: Optional[Sequence[str]]) -> Shape:
        ndim = len(shapes[0])
        if any(len(s) != ndim for s in shapes):
            raise ValueError(f"Layer '{self.name}' (Concatenate) expected inputs of the same rank. "
                             f"Received: {self._received(shapes, names)}.")
        axis = self._axis(ndim, shapes, names)
        out = list(shapes[0])
        for i in range(1, ndim):
            if i == axis:
                out[i] = None if any(s[i] is None for s in shapes) else sum(int(s[i]) for s in shapes)
                continue
            known = {s[i] for s in shapes if s[i] is not None}
            if len(known) > 1:
                raise ValueError(f"Layer '{self.name}' (Concatenate) expected inputs with matching shapes except "
                                 f"along the concatenation axis {self.axis}. Received: "
                                 f"{self._received(shapes, names)}.")
            out[i] = known.pop() if known else None
        out[0] = next((s[0] for s in shapes if s[0] is not None), None)
        return tuple(out)

    def spec(self, training: bool = False) -> ops.OpSpec:
        ndim = len(self.input_shape[0])
        axis = self.axis + ndim if self.axis < 0 else self.axis
        return ops.OpSpec("concatenate", {"axis": axis - 1})  # the op's axes are per sample

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["axis"] = self.axis
        return config
