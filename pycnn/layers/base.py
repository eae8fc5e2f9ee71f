"""The ``Layer`` base class: every pycnn layer, built-in or a user's own.

A layer is its weights plus a description of what it computes. Built-in layers describe
themselves as one native op (:meth:`Layer.spec` returns an :class:`pycnn.ops.OpSpec`: the
op's kind, its named attributes and the weight arrays it reads); the eager call, the node of a
compiled network, the config and exports all derive from that one spec. A user's layer
writes :meth:`Layer.call` and :meth:`Layer.gradient` in NumPy instead, as in Keras::

    class Scale(pycnn.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")
        def call(self, inputs, training=False):
            return inputs * self.w
        def gradient(self, inputs, outputs, doutputs):
            return doutputs * self.w, [np.sum(doutputs * inputs, axis=tuple(range(inputs.ndim - 1)))]

and trains inside a model next to native layers: the compiled network runs the native parts
and calls back into Python for it (pycnn/executor.py).

Life cycle (the same as Keras):

1. ``__init__`` validates and normalises the arguments and picks an automatic name
   (``conv2d``, ``conv2d_1``, ...; see :func:`pycnn.utils.clear_session`).
2. ``build(input_shape)`` creates the weights with :meth:`add_weight` once the input shape is
   known (batch axis included, as None). The base class wraps every subclass's ``build``: it
   checks the shape first and marks the layer built after.
3. ``layer(x)`` on a NumPy array runs forward (float32 NHWC; real dtypes are converted); on a
   symbolic tensor (``pycnn.Input``) it records a graph node instead (pycnn/symbolic.py).
4. ``layer.backward(dout)`` on a lone layer differentiates its last eager call and keeps the
   weight gradients for ``get_gradients()`` (order and shapes of ``get_weights()``).

Subclasses register by class name for loading (:func:`get`); no other table lists layers.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import initializers, ops, symbolic, utils

Shape = Tuple[Optional[int], ...]

_REGISTRY: Dict[str, type] = {}


_CUSTOM = threading.local()  # the custom_objects of the load in progress, per thread
_STRUCTURE = [0]  # bumped whenever a layer's weights or trainable flag, or a model's layers, change


def structure_changed() -> None:
    """Something a compiled step depends on changed (weights created, trainable flags, a
    model's layers): steps planned before are planned again (pycnn/step.py)."""
    _STRUCTURE[0] += 1


def structure_version() -> int:
    return _STRUCTURE[0]


def register(name: str, cls: type) -> None:
    """Make ``get(name)`` return ``cls`` (a second name for a class, e.g. Keras's 'Functional')."""
    _REGISTRY[name] = cls


@contextlib.contextmanager
def custom_object_scope(custom_objects: Optional[Dict[str, Any]]) -> Iterator[None]:
    """Within the block, :func:`get` also finds the classes of ``custom_objects`` (a user's own
    layers, by the class name a saved model records), as Keras's ``custom_object_scope``."""
    saved = getattr(_CUSTOM, "objects", None)
    _CUSTOM.objects = {**(saved or {}), **(custom_objects or {})}
    try:
        yield
    finally:
        _CUSTOM.objects = saved


def get(class_name: str) -> type:
    """Layer (or model) class by its class name (``'Conv2D'``), for rebuilding saved models;
    inside :func:`custom_object_scope` also the user's classes it names.

    Raises:
        ValueError: for a name neither pycnn nor the custom objects define.
    """
    custom = getattr(_CUSTOM, "objects", None) or {}
    if class_name in custom:
        return custom[class_name]
    if class_name not in _REGISTRY:
        raise ValueError(f"Unknown layer class. Expected one of {', '.join(sorted(_REGISTRY))}, or a custom layer "
                         "passed as load_model(path, custom_objects={'Name': Class}). "
                         f"Received: class_name={class_name!r}.")
    return _REGISTRY[class_name]


def _wrap_build(build: Callable[..., None]) -> Callable[..., None]:
    """A subclass's ``build``, checked first (rank, output size, fit with existing weights) and
    marked built after: what Keras 3's build wrapper does."""

    @functools.wraps(build)
    def wrapped(self: "Layer", input_shape: Any) -> None:
        shape = self._prepare_build(input_shape)
        if shape is None:  # already built and checked
            return
        build(self, shape)
        self._finish_build(shape)

    wrapped._pycnn_wrapped = True  # type: ignore[attr-defined]
    return wrapped


class Layer:
    """Base class: a named, lazily built transformation with a forward and a backward.

    Args:
        name: the layer's name; default is the snake-case class name made unique
            (``dense``, ``dense_1``...).
        input_shape: shape of one sample (no batch axis), accepted on a model's first
            layer as in Keras, e.g. ``Conv2D(64, 3, input_shape=(224, 224, 1))``.
        trainable: when False the optimizer leaves the weights alone and ``summary()``
            counts them as non-trainable.
        dtype: accepted for Keras compatibility; only 'float32' (or None).
    """

    #: Number of input dimensions including the batch axis (None: any, at least 2).
    _input_ndim: Optional[int] = None
    _default_name: Optional[str] = None
    #: True for layers that take a list of tensors (Concatenate, Add, Multiply).
    _multi_input: bool = False
    #: True for layers that act only in training (RandomFlip...): a trainer may run them on
    #: each batch in NumPy ahead of the compiled network (they have no weights).
    _preprocessing: bool = False

    #: Models build their own layers: their ``build`` is not wrapped.
    _builds_itself: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "build" in cls.__dict__ and not getattr(cls.__dict__["build"], "_pycnn_wrapped", False) \
                and not cls._builds_itself:
            cls.build = _wrap_build(cls.__dict__["build"])
        # pycnn's own classes register by name; a user's own are found through
        # custom_objects when a model is loaded, as in Keras (and never shadow pycnn's).
        if not cls.__name__.startswith("_") and cls.__module__.split(".")[0] == "pycnn":
            _REGISTRY[cls.__name__] = cls

    def __init__(self, name: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None,
                 trainable: bool = True, dtype: Any = None, **kwargs: Any) -> None:
        cls = type(self).__name__
        if kwargs:
            raise TypeError(f"{cls} got unexpected keyword arguments: {', '.join(sorted(kwargs))}.")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"Invalid value for argument 'dtype' of {cls}: pycnn computes in float32. "
                             f"Received: dtype={dtype!r}.")
        if name is None:
            name = utils.unique_name(self._default_name or utils.snake_case(cls))
        elif not isinstance(name, str) or not name:
            raise ValueError(f"Invalid value for argument 'name' of {cls}: expected a non-empty string. "
                             f"Received: name={name!r}.")
        trainable = utils.boolean(trainable, "trainable", cls)
        self.name: str = name
        self._trainable: bool = trainable
        self.built: bool = False
        if not self._builds_itself:  # a model's input_shape is its graph's
            self.input_shape: Optional[Shape] = None
        self._input_shape_arg: Optional[Shape] = (
            None if input_shape is None else _sample_shape(input_shape, "input_shape", cls))
        self._param_names: List[str] = []
        self._params: List[np.ndarray] = []
        self._param_trainable: List[bool] = []  # False: a statistic, never given to the optimizer
        self._param_created_trainable: List[bool] = []  # add_weight's trainable (set_weight_trainable's limit)
        self._param_regularizers: List[Any] = []  # per weight: a pycnn.regularizers.Regularizer or None
        self._grads: List[Optional[np.ndarray]] = []
        self._last_call: Optional[Tuple[Any, Any]] = None  # a lone layer's (ctx, output shape)
        self._inbound_nodes: List[symbolic.Node] = []  # one per call on symbolic tensors
        self._op_calls: Dict[Any, ops.OpCall] = {}  # eager calls compiled, by what they depend on
        self._output_shapes: Dict[Any, Shape] = {}  # inferred output shapes of user layers

    @property
    def class_name(self) -> str:
        """The class name configs, saved files and ``summary()`` record for this layer."""
        return type(self).__name__

    # ----------------------------------------------------------------- trainable

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        structure_changed()

    # ----------------------------------------------------------------- shapes and build

    @property
    def batch_input_shape(self) -> Optional[Shape]:
        """``(None,) + input_shape`` when the layer was given ``input_shape=``, else None."""
        return None if self._input_shape_arg is None else (None,) + self._input_shape_arg

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included, may be None),
        with :meth:`add_weight`. Layers without weights need not override it.

        Raises:
            ValueError: if the shape does not suit the layer (wrong rank, undefined
                dimension the weights depend on, output size zero or negative).
        """

    def _prepare_build(self, input_shape: Any) -> Optional[Shape]:
        """Checks before a build; returns the shape to build for, or None when the layer is
        already built (and the shape fits its weights)."""
        if self._multi_input:
            if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2 or \
                    not all(isinstance(s, (list, tuple)) for s in input_shape):
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) should be called on a list of at "
                                 f"least 2 inputs. Received: input_shape={input_shape!r}.")
            shapes = [_full_shape(s, self.name) for s in input_shape]
            self.compute_output_shape(shapes)
            if self.built:
                return None
            self._op_calls = {}
            return shapes
        shape = _full_shape(input_shape, self.name)
        self._check_ndim(shape)
        if self.built:
            self._check_input(shape)  # weights exist: the new shape must suit them
            self.compute_output_shape(shape)
            self.input_shape = shape
            return None
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            self.compute_output_shape(shape)  # raises when an output dimension would be < 1
        self._param_names, self._params, self._param_trainable, self._param_regularizers = [], [], [], []
        self._param_created_trainable = []
        self._op_calls = {}
        return shape

    def _finish_build(self, shape: Any) -> None:
        structure_changed()
        self._grads = [None] * len(self._params)
        self.input_shape = [(None,) + tuple(s[1:]) for s in shape] if self._multi_input else shape
        self.built = True

    def add_weight(self, name: Optional[str] = None, shape: Sequence[int] = (), initializer: Any = "glorot_uniform",
                   trainable: bool = True, regularizer: Any = None, dtype: Any = None) -> np.ndarray:
        """A new weight of ``shape`` (Keras's ``add_weight``), created in :meth:`build`.

        Args:
            name: the weight's name (``get_config``, saved files); default ``variable_<i>``.
            shape: its shape.
            initializer: a :mod:`pycnn.initializers` name (``'glorot_uniform'``, ``'zeros'``,
                ``'ones'``, ...) or a callable ``(shape) -> array``.
            trainable: False makes it state the layer updates itself (moving statistics):
                saved and loaded, counted as non-trainable, never optimised.
            regularizer: a penalty (:mod:`pycnn.regularizers`) training adds to the loss.

        Returns:
            The live float32 array that training updates in place (keep it, e.g. ``self.w``).
        """
        from .. import regularizers

        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"Layer '{self.name}'.add_weight() creates float32 weights. Received: dtype={dtype!r}.")
        name = name or f"variable_{len(self._params)}"
        dims = tuple(int(d) for d in shape)
        values = initializers.initialize(initializers.get(initializer, "initializer", f"Layer '{self.name}'"), dims)
        self._param_names.append(name)
        self._params.append(values)
        self._param_trainable.append(bool(trainable))
        self._param_created_trainable.append(bool(trainable))
        self._param_regularizers.append(regularizers.get(regularizer, "regularizer", f"Layer '{self.name}'"))
        return values

    @property
    def losses(self) -> List[float]:
        """The regularization penalties of this layer's weights, as ``keras.layers.Layer.losses``."""
        return [float(r.penalty(p)) for p, r in zip(self._params, self._param_regularizers) if r is not None]

    def regularized_weights(self) -> List[Tuple[np.ndarray, Any]]:
        """(weight, regularizer) of every trainable weight with a penalty."""
        if not self.trainable:
            return []
        return [(p, r) for p, r, t in zip(self._params, self._param_regularizers, self._param_trainable)
                if r is not None and t]

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Output shape for ``input_shape`` (batch axis included); pure arithmetic. A user layer
        that leaves it out gets the shape of one call on zeros (fixed input sizes only)."""
        if type(self).call is Layer.call:
            return tuple(input_shape)
        return self._inferred_output_shape(input_shape)

    def _inferred_output_shape(self, input_shape: Any) -> Any:
        shapes = [tuple(s) for s in input_shape] if self._multi_input else [tuple(input_shape)]
        key = tuple(shapes)
        if key in self._output_shapes:
            return self._output_shapes[key]
        if any(d is None for s in shapes for d in s[1:]):
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) cannot infer its output shape for an input "
                             f"of undefined size {', '.join(utils.shape_str(s) for s in shapes)}: implement "
                             "compute_output_shape(input_shape).")
        dummy = [np.zeros((1,) + s[1:], np.float32) for s in shapes]
        out = np.asarray(self.call(dummy if self._multi_input else dummy[0], training=False))
        result = (shapes[0][0],) + tuple(out.shape[1:])
        self._output_shapes[key] = result
        return result

    @property
    def output_shape(self) -> Shape:
        """Output shape for the shape the layer was built with, e.g. ``(None, 28, 28, 6)``."""
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' has not been built yet, so it has no output shape. "
                               "Call it on an input, add it to a model with a known input shape, "
                               "or call build(input_shape) first.")
        return self.compute_output_shape(self.input_shape)

    def _check_ndim(self, shape: Shape) -> None:
        ndim = self._input_ndim
        if ndim is not None and len(shape) != ndim:
            hint = ""
            if ndim == 4 and len(shape) == 3:
                hint = (" Images need a channel axis: reshape grayscale (N, H, W) data to (N, H, W, 1), "
                        "e.g. x[..., None].")
            raise ValueError(f"Layer '{self.name}' expected a {ndim}-D input (N, H, W, C), but received input "
                             f"with shape {utils.shape_str(shape)}.{hint}")
        if ndim is None and len(shape) < 2:
            raise ValueError(f"Layer '{self.name}' expected an input with a batch axis and at least one more "
                             f"axis, but received input with shape {utils.shape_str(shape)}.")

    def _check_input(self, shape: Shape) -> None:
        """Checks a concrete input against the built layer (channels, features)."""

    def _shape_for(self, shape: Any) -> Any:
        """Builds the layer for ``shape`` if needed, else checks ``shape`` against it; returns
        the output shape. Raises ValueError naming the layer when the shape does not fit."""
        if self._multi_input:
            shape = [tuple(s) for s in shape]
        else:
            shape = tuple(shape)
            if self.built:
                self._check_ndim(shape)
                self._check_input(shape)
        if not self.built:
            self.build(shape)
        return self.compute_output_shape(shape)

    def _symbolic_output_shape(self, shape: Any, input_names: Sequence[str]) -> Any:
        """Output shape of a call on symbolic inputs (names given for error messages)."""
        return self._shape_for(shape)

    # ----------------------------------------------------------------- what it computes

    def spec(self, training: bool = False) -> Optional[ops.OpSpec]:
        """This layer as one native op, or None for a layer that computes in Python
        (:meth:`call` / :meth:`gradient`). ``training``: the spec for training mode (batch
        normalization uses the batch's moments then; dropout has no native op then)."""
        return None

    def call(self, inputs: Any, training: bool = False) -> np.ndarray:
        """A Python layer's forward: float32 NumPy inputs (a list for a merging layer) ->
        the output array. Layers with a native op (:meth:`spec`) never need it."""
        raise NotImplementedError(f"Layer '{self.name}' ({type(self).__name__}) has neither a native op (spec()) "
                                  "nor a call() method: implement call(inputs, training=False).")

    def gradient(self, inputs: Any, outputs: np.ndarray, doutputs: np.ndarray
                 ) -> Tuple[Any, List[Optional[np.ndarray]]]:
        """A Python layer's backward: given the inputs and outputs of one :meth:`call` and the
        loss's gradient w.r.t. the outputs, returns ``(dinputs, [one gradient per trainable
        weight, in add_weight order])`` (a list of dinputs for a merging layer)."""
        raise NotImplementedError(f"Layer '{self.name}' ({type(self).__name__}) cannot be trained: implement "
                                  "gradient(inputs, outputs, doutputs) -> (dinputs, [dweight, ...]).")

    def _keep_for_gradient(self, outputs: np.ndarray, state: Any) -> None:
        """For a Python layer: what :meth:`gradient` will need from the call that returned
        ``outputs`` (a mask, the random draws), found again by those outputs, so that a layer
        called twice in one step differentiates each call with its own."""
        kept = getattr(self, "_kept", None)
        kept = {k: v for k, v in (kept or {}).items() if v[0]() is not None}
        kept[id(outputs)] = (weakref.ref(outputs), state)
        self._kept = kept

    def _kept_for_gradient(self, outputs: np.ndarray) -> Any:
        entry = getattr(self, "_kept", {}).get(id(outputs))
        if entry is None or entry[0]() is not outputs:
            raise RuntimeError(f"Layer '{self.name}'.gradient() received outputs that no call of this layer returned.")
        return entry[1]

    def _spec_for(self, training: bool, logits: bool) -> Optional[ops.OpSpec]:
        """``spec(training)``; with ``logits`` a final softmax activation is left out (the loss fuses it)."""
        spec = self.spec(training)
        if spec is not None and logits and spec.attrs.get("activation") == "softmax":
            spec = spec.with_attrs(activation="linear")
        return spec

    @property
    def output_activation(self) -> Optional[str]:
        """The activation the layer's op applies last (``'softmax'``...), None when unknown."""
        spec = self.spec(False)
        return None if spec is None else spec.attrs.get("activation")

    # ----------------------------------------------------------------- eager forward / backward

    def __call__(self, x: Any, training: bool = False) -> Any:
        """Forward pass, or a graph node when ``x`` is symbolic.

        Args:
            x: array of shape (N, ...) (NHWC for conv and pooling layers); real numeric
                dtypes are converted to float32 without rescaling. A KerasTensor (from
                ``pycnn.Input`` or another layer) records a node and returns a KerasTensor.
            training: enables training-only behaviour (dropout, batch statistics).

        Returns:
            float32 array of shape ``compute_output_shape(x.shape)``.
        """
        if symbolic.is_symbolic(x):
            return symbolic.call_layer(self, x)
        out, ctx = self._run(x, training)
        self._last_call = (ctx, out.shape)
        return out

    def _inputs(self, x: Any) -> List[np.ndarray]:
        if self._multi_input:
            if not isinstance(x, (list, tuple)) or len(x) < 2:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) should be called on a list of at least "
                                 f"2 arrays. Received: {type(x).__name__}.")
            return [utils.as_float32(v, f"Layer '{self.name}'", f"inputs[{i}]") for i, v in enumerate(x)]
        return [utils.as_float32(x, f"Layer '{self.name}'")]

    def _run(self, x: Any, training: bool = False, logits: bool = False) -> Tuple[np.ndarray, Any]:
        """Checked forward on concrete data: returns ``(output, ctx for _backward)``."""
        xs = self._inputs(x)
        if self._multi_input:
            self._shape_for([v.shape for v in xs])
        else:
            self._shape_for((None,) + xs[0].shape[1:] if not self.built else xs[0].shape)
        spec = self._spec_for(bool(training), bool(logits))
        if spec is None:
            arg = xs if self._multi_input else xs[0]
            out = utils.as_float32(self.call(arg, training=bool(training)), f"Layer '{self.name}'.call()", "output")
            return out, ("python", arg, out)
        call = self._op_call(spec, [v.shape[1:] for v in xs])
        out, tape = call.forward(xs)
        if training:
            call.commit(tape)  # batch statistics -> moving statistics, as a Keras training call
        return out, ("native", call, tape)

    def _op_call(self, spec: ops.OpSpec, shapes: Sequence[Tuple[int, ...]]) -> ops.OpCall:
        """The eager call of ``spec`` on inputs of ``shapes``, compiled once and kept."""
        key = (spec.kind, tuple(sorted((k, repr(v)) for k, v in spec.attrs.items())),
               tuple(id(p) for p in spec.params), tuple(tuple(s) for s in shapes))
        call = self._op_calls.get(key)
        if call is None:
            trained = [p is not None and not _is_state(spec.kind, i) for i, p in enumerate(spec.params)]
            call = ops.OpCall(spec, shapes, trained, input_grads=True, name=self.name)
            if len(self._op_calls) >= 16:
                self._op_calls.clear()
            self._op_calls[key] = call
        return call

    def backward(self, dout: Any, need_input_grad: bool = True) -> Optional[Any]:
        """Backward pass through the last (eager) forward of this layer.

        Args:
            dout: gradient of the loss w.r.t. this layer's output (shape of that output).
            need_input_grad: False skips the input gradient and returns None.

        Returns:
            The gradient w.r.t. the layer's input, float32 of the input's shape, or None.

        Raises:
            RuntimeError: if no forward pass has been run.
            ValueError: if ``dout`` does not have the forward output's shape.
        """
        if self._last_call is None:
            raise RuntimeError(f"Layer '{self.name}' has no forward pass to differentiate: "
                               "call the layer on an input before backward().")
        ctx, out_shape = self._last_call
        dout = utils.as_float32(dout, f"Layer '{self.name}'.backward()", "dout")
        if dout.shape != out_shape:
            raise ValueError(f"Layer '{self.name}'.backward() expected 'dout' with the forward output's shape "
                             f"{out_shape}. Received: dout.shape={dout.shape}.")
        dinp, grads = self._backward(ctx, dout, bool(need_input_grad))
        self._grads = list(grads)
        return dinp

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool) -> Tuple[Any, List[Optional[np.ndarray]]]:
        """Input gradient (a list for a merging layer) and one gradient per weight in
        ``get_weights()`` order (None for statistics and weights nothing trains)."""
        if ctx[0] == "python":
            _, inputs, outputs = ctx
            dinputs, dweights = self.gradient(inputs, outputs, dout)
            return (dinputs if need_input_grad else None), self._python_weight_grads(dweights)
        _, call, tape = ctx
        dinputs, dparams = call.backward(tape, dout)
        by_param = {id(p): g for p, g in zip(call.spec.params, dparams) if p is not None}
        grads = [by_param.get(id(p)) for p in self._params]
        if not need_input_grad:
            return None, grads
        return (dinputs if self._multi_input else dinputs[0]), grads

    def _python_weight_grads(self, dweights: Sequence[Any]) -> List[Optional[np.ndarray]]:
        """A Python layer's gradients (one per trainable weight) -> one per weight, checked."""
        trainable = [i for i, t in enumerate(self._param_trainable) if t]
        dweights = list(dweights or [])
        if len(dweights) != len(trainable):
            raise ValueError(f"Layer '{self.name}'.gradient() expected one gradient per trainable weight "
                             f"({len(trainable)}: {[self._param_names[i] for i in trainable]}). "
                             f"Received: {len(dweights)}.")
        grads: List[Optional[np.ndarray]] = [None] * len(self._params)
        for i, g in zip(trainable, dweights):
            g = utils.as_float32(g, f"Layer '{self.name}'.gradient()", self._param_names[i])
            if g.shape != self._params[i].shape:
                raise ValueError(f"Layer '{self.name}'.gradient() expected the gradient of '{self._param_names[i]}' "
                                 f"with shape {self._params[i].shape}. Received: shape={g.shape}.")
            grads[i] = g
        return grads

    # ----------------------------------------------------------------- weights

    @property
    def weights(self) -> List[np.ndarray]:
        """The live weight arrays (the optimizer updates them in place)."""
        return list(self._params)

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        """The weights the optimizer updates: none when ``trainable`` is False, never the
        statistics a layer keeps itself (BatchNormalization's moving mean and variance)."""
        if not self.trainable:
            return []
        return [p for p, t in zip(self._params, self._param_trainable) if t]

    def set_weight_trainable(self, name: str, trainable: bool) -> None:
        """Freeze (or unfreeze) one weight of the layer: pycnn's spelling of Keras 3's
        ``layer.kernel.trainable = False`` (a NumPy weight carries no flag). Not saved with the
        model; weights a layer keeps itself (moving statistics) cannot be made trainable.

        Raises:
            ValueError: for a name the layer has no weight of, or such a statistic.
        """
        trainable = utils.boolean(trainable, "trainable", "set_weight_trainable()")
        if name not in self._param_names:
            raise ValueError(f"Layer '{self.name}' has no weight named {name!r}. Expected one of "
                             f"{self._param_names}.")
        i = self._param_names.index(name)
        if trainable and not self._param_created_trainable[i]:
            raise ValueError(f"Layer '{self.name}': {name!r} was created non-trainable (a statistic the layer "
                             "updates itself); it cannot be trained.")
        self._param_trainable[i] = trainable
        structure_changed()

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        if not self.trainable:
            return list(self._params)
        return [p for p, t in zip(self._params, self._param_trainable) if not t]

    @property
    def weight_names(self) -> List[str]:
        """Names of the weights in ``get_weights()`` order, e.g. ``['kernel', 'bias']``."""
        return list(self._param_names)

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the weights, Keras order and shapes (``[kernel, bias]``)."""
        return [p.copy() for p in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Copy ``weights`` (Keras order and shapes) into the layer.

        Raises:
            RuntimeError: if the layer has not been built.
            ValueError: if the number of arrays or any shape differs; the message names
                the layer, the weight, the expected and the received shape.
        """
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' has not been built yet, so its weights do not exist. "
                               "Call it on an input or call build(input_shape) before set_weights().")
        weights = list(weights)
        params, names = self.weights, self.weight_names
        if len(weights) != len(params):
            raise ValueError(f"Layer '{self.name}' expected a list of {len(params)} weight arrays "
                             f"{names}. Received: a list of {len(weights)} arrays.")
        arrays = []
        for pname, param, value in zip(names, params, weights):
            arr = utils.check_real_array(value, f"Layer '{self.name}'.set_weights()", pname)
            if arr.shape != param.shape:
                raise ValueError(f"Layer '{self.name}' expected weight '{pname}' with shape {param.shape}. "
                                 f"Received: shape={arr.shape}.")
            arrays.append(arr)
        for param, arr in zip(params, arrays):
            param[...] = arr  # in place: optimizer state and compiled networks hold these arrays

    def get_gradients(self) -> List[Optional[np.ndarray]]:
        """Gradients from the last backward(), in ``get_weights()`` order and shapes."""
        return list(self._grads)

    def count_params(self) -> int:
        """Number of scalars in the weights.

        Raises:
            RuntimeError: if the layer has not been built.
        """
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' has not been built yet, so its number of parameters is "
                               "unknown. Call it on an input or call build(input_shape) first.")
        return int(sum(p.size for p in self.weights))

    # ----------------------------------------------------------------- config

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments; ``type(layer)(**config)`` makes an equivalent fresh layer."""
        config: Dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self._input_shape_arg is not None:
            config["input_shape"] = self._input_shape_arg
        return config

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Layer":
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


Layer.build = _wrap_build(Layer.build)  # type: ignore[method-assign]  (layers without weights too)


def _is_state(kind: str, index: int) -> bool:
    params = ops.registered_ops()[kind].params
    return index < len(params) and params[index].state


def _sample_shape(shape: Any, arg: str, owner: str) -> Shape:
    """A per-sample shape: an int or a sequence of positive ints / None."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    dims = _dims_or_none(shape)
    if dims is None:
        raise ValueError(f"The '{arg}' argument of {owner} must be a tuple of positive integers or None "
                         f"(one sample, no batch axis), e.g. (28, 28, 1). Received: {arg}={shape!r}.")
    return dims


def _full_shape(shape: Any, name: str) -> Shape:
    dims = _dims_or_none(shape)
    if dims is None:
        raise ValueError(f"Layer '{name}'.build() expected a shape tuple including the batch axis, "
                         f"e.g. (None, 28, 28, 1). Received: input_shape={shape!r}.")
    return dims


def _dims_or_none(shape: Any) -> Optional[Shape]:
    """``shape`` as a tuple of positive ints / None, or None if it is not one."""
    try:
        dims = tuple(shape)
    except TypeError:
        return None
    ok = len(dims) >= 1 and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1) for d in dims)
    return tuple(None if d is None else int(d) for d in dims) if ok else None


class KernelLayer(Layer):
    """A layer whose weights are ``[kernel]`` or ``[kernel, bias]`` (Conv2D, Dense) with an
    activation its op applies."""

    use_bias: bool = True
    activation: str = "linear"

    @property
    def kernel(self) -> np.ndarray:
        return self._params[0]

    @property
    def bias(self) -> Optional[np.ndarray]:
        return self._params[1] if self.use_bias else None
