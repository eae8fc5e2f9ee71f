"""Layers that merge several tensors: Concatenate, Add, Multiply (as ``keras.layers``).

Each is called on a list of tensors, ``Concatenate(axis=3)([dx, dy, edges])``; shapes are
checked when the graph is written, and a mismatch names every input and its shape.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import ops, utils
from .base import Layer, NativeTwin, Shape, _full_shape


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

    def build(self, input_shape: Any) -> None:
        shapes = self._shape_list(input_shape)
        self.compute_output_shape(shapes)
        self.input_shape = [(None,) + tuple(s[1:]) for s in shapes]
        self.built = True

    def _shape_for(self, shapes: Any) -> Shape:
        if not self.built:
            self.build(shapes)
        return self.compute_output_shape(shapes)

    def _symbolic_output_shape(self, shapes: Any, input_names: Sequence[str]) -> Shape:
        out = self._checked_output_shape(self._shape_list(shapes), input_names)
        if not self.built:
            self.build(shapes)
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

    # ---------------------------------------------------------------- forward

    def _run(self, x: Any, training: bool = False, logits: bool = False) -> Tuple[np.ndarray, Any]:
        if not isinstance(x, (list, tuple)) or len(x) < 2:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) should be called on a list of at least "
                             f"2 arrays. Received: {type(x).__name__}.")
        xs = [utils.as_float32(v, f"Layer '{self.name}'", f"inputs[{i}]") for i, v in enumerate(x)]
        self._shape_for([v.shape for v in xs])
        return self._call(xs, bool(training), bool(logits))


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

    def _call(self, xs: List[np.ndarray], training: bool, logits: bool) -> Tuple[np.ndarray, Any]:
        return ops.add(xs), len(xs)

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool) -> Tuple[Any, list]:
        return ([dout] * ctx if need_input_grad else None), []

    def native_twin(self, training: bool, logits: bool) -> Optional[NativeTwin]:
        return NativeTwin("add")


class Multiply(_ElementWise):
    """Element-wise product of a list of tensors of one shape: ``Multiply()([x, y])``."""

    def _call(self, xs: List[np.ndarray], training: bool, logits: bool) -> Tuple[np.ndarray, Any]:
        return ops.multiply(xs), xs

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool) -> Tuple[Any, list]:
        return (ops.multiply_backward(dout, ctx) if need_input_grad else None), []

    def native_twin(self, training: bool, logits: bool) -> Optional[NativeTwin]:
        return NativeTwin("multiply")


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

    def _call(self, xs: List[np.ndarray], training: bool, logits: bool) -> Tuple[np.ndarray, Any]:
        axis = self._axis(xs[0].ndim, [x.shape for x in xs], None)
        return ops.concatenate(xs, axis), (axis, [x.shape[axis] for x in xs])

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool) -> Tuple[Any, list]:
        if not need_input_grad:
            return None, []
        axis, sizes = ctx
        return ops.concatenate_backward(dout, sizes, axis), []

    def native_twin(self, training: bool, logits: bool) -> Optional[NativeTwin]:
        ndim = len(self.input_shape[0])
        axis = self.axis + ndim if self.axis < 0 else self.axis
        return NativeTwin("concatenate", (), (axis - 1,))  # the native step's axes are per sample

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["axis"] = self.axis
        return config
