"""The ``Layer`` base class shared by every pycnn layer.

Life cycle (the same as Keras):

1. ``__init__`` validates and normalises the arguments and picks an automatic name
   (``conv2d``, ``conv2d_1``, ...; see :func:`pycnn.utils.clear_session`).
2. ``build(input_shape)`` creates the weights once the input shape is known. Shapes
   include the batch axis as ``None``: ``(None, 32, 32, 3)``. A model builds its layers
   when they are added or called on symbolic tensors; a lone layer builds on first call.
3. ``layer(x)`` on a NumPy array runs forward (float32 NHWC; real dtypes are converted);
   on a symbolic tensor (``pycnn.Input``) it records a graph node instead
   (pycnn/symbolic.py).
4. ``layer.backward(dout)`` on a lone layer differentiates its last eager call and keeps
   the parameter gradients for ``get_gradients()`` (order and shapes of ``get_weights()``).

What a subclass implements:

* ``_create_weights``, ``compute_output_shape``, ``_check_input``: shapes and weights;
* ``_call(x, training, logits) -> (out, ctx)`` and ``_backward(ctx, dout, need_input_grad)
  -> (dinp, weight_grads)``: forward and backward through :mod:`pycnn.ops`. ``ctx`` is what
  backward needs from this call; it lives with the call (the model's executor keeps one per
  node), never on the layer, so a layer can be called several times (shared weights) and
  two threads can run one model;
* ``native_twin(training, logits)``: the node this layer is in the one-call native step
  (pycnn/fused_step.py, csrc/network.h), or None when it has none.

Subclasses register by class name for loading (:func:`get`); no other table lists layers.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .. import activations, initializers, ops, symbolic, utils

Shape = Tuple[Optional[int], ...]

_REGISTRY: Dict[str, type] = {}


def get(class_name: str) -> type:
    """Layer class by its class name (``'Conv2D'``), for rebuilding saved models.

    Raises:
        ValueError: for a name pycnn does not define.
    """
    if class_name not in _REGISTRY:
        raise ValueError(f"Unknown layer class. Expected one of {', '.join(sorted(_REGISTRY))}. "
                         f"Received: class_name={class_name!r}.")
    return _REGISTRY[class_name]


class NativeTwin(NamedTuple):
    """A layer's node in the native network step: see csrc/network.h and each op family's
    NetOp (conv2d.cpp, pool2d.cpp, ...) for what ``kind``, ``ints``, ``strs`` and
    ``floats`` mean. ``params`` are the live weight arrays in the op's order, None for an
    absent bias. ``state``: float32 arrays the op fills during a training step for the
    layer's :meth:`Layer.native_step_done` (batch normalization's batch moments)."""
    kind: str
    params: Tuple[Optional[np.ndarray], ...] = ()
    ints: Tuple[int, ...] = ()
    strs: Tuple[str, ...] = ()
    floats: Tuple[float, ...] = ()
    state: Tuple[np.ndarray, ...] = ()


class Layer:
    """Base class: a named, lazily built transformation with a forward and a backward.

    Args:
        name: the layer's name; default is the snake-case class name made unique
            (``dense``, ``dense_1``...).
        input_shape: shape of one sample (no batch axis), accepted on a model's first
            layer as in Keras, e.g. ``Conv2D(64, 3, input_shape=(224, 224, 1))``.
        trainable: when False the optimizer leaves the weights alone and ``summary()``
            counts them as non-trainable.
    """

    #: Number of input dimensions including the batch axis (None: any, at least 2).
    _input_ndim: Optional[int] = None
    _default_name: Optional[str] = None
    #: True for layers that take a list of tensors (Concatenate, Add, Multiply).
    _multi_input: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    def __init__(self, name: Optional[str] = None, input_shape: Optional[Sequence[Optional[int]]] = None,
                 trainable: bool = True) -> None:
        cls = type(self).__name__
        if name is None:
            name = utils.unique_name(self._default_name or utils.snake_case(cls))
        elif not isinstance(name, str) or not name:
            raise ValueError(f"Invalid value for argument 'name' of {cls}: expected a non-empty string. "
                             f"Received: name={name!r}.")
        if not isinstance(trainable, (bool, np.bool_)):
            raise ValueError(f"Invalid value for argument 'trainable' of {cls}: expected True or False. "
                             f"Received: trainable={trainable!r}.")
        self.name: str = name
        self.trainable: bool = bool(trainable)
        self.built: bool = False
        self.input_shape: Optional[Shape] = None
        self._input_shape_arg: Optional[Shape] = (
            None if input_shape is None else _sample_shape(input_shape, "input_shape", cls))
        self._param_names: List[str] = []
        self._params: List[np.ndarray] = []
        self._param_trainable: List[bool] = []  # False: a statistic, never given to the optimizer
        self._param_regularizers: List[Any] = []  # per weight: a pycnn.regularizers.Regularizer or None
        self._grads: List[Optional[np.ndarray]] = []
        self._last_call: Optional[Tuple[Any, Tuple[int, ...]]] = None  # a lone layer's (ctx, output shape)
        self._inbound_nodes: List[symbolic.Node] = []  # one per call on symbolic tensors

    # ----------------------------------------------------------------- shapes and build

    @property
    def batch_input_shape(self) -> Optional[Shape]:
        """``(None,) + input_shape`` when the layer was given ``input_shape=``, else None."""
        return None if self._input_shape_arg is None else (None,) + self._input_shape_arg

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included, may be None).

        Raises:
            ValueError: if the shape does not suit the layer (wrong rank, undefined
                dimension the weights depend on, output size zero or negative).
        """
        shape = _full_shape(input_shape, self.name)
        self._check_ndim(shape)
        self.compute_output_shape(shape)  # raises when an output dimension would be < 1
        if self.built:
            self._check_input(shape)  # weights exist: the new shape must suit them
        else:
            self._param_names, self._params, self._param_trainable, self._param_regularizers = [], [], [], []
            self._create_weights(shape)
            self._grads = [None] * len(self._params)
        self.input_shape = shape
        self.built = True

    def _create_weights(self, input_shape: Shape) -> None:
        """Subclasses with weights call ``_add_weight`` here."""

    def _add_weight(self, name: str, shape: Tuple[int, ...], initializer: Any, trainable: bool = True,
                    regularizer: Any = None) -> np.ndarray:
        """A new weight; ``trainable=False`` makes it state the layer updates itself (moving
        statistics): saved and loaded, counted as non-trainable, never optimised.
        ``regularizer``: a penalty on this weight that training adds to the loss."""
        values = initializers.initialize(initializer, shape)
        self._param_names.append(name)
        self._params.append(values)
        self._param_trainable.append(bool(trainable))
        self._param_regularizers.append(regularizer)
        return values

    @property
    def losses(self) -> List[float]:
        """The regularization penalties of this layer's weights, as ``keras.layers.Layer.losses``."""
        return [float(r.penalty(p)) for p, r in zip(self._params, self._param_regularizers) if r is not None]

    def _regularized_weights(self) -> List[Tuple[int, Any]]:
        """(index, regularizer) of every trainable weight with a penalty."""
        if not self.trainable:
            return []
        return [(i, r) for i, (r, t) in enumerate(zip(self._param_regularizers, self._param_trainable))
                if r is not None and t]

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """Output shape for ``input_shape`` (batch axis included); pure arithmetic."""
        return tuple(input_shape)

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

    # ----------------------------------------------------------------- forward / backward

    def __call__(self, x: Any, training: bool = False) -> Any:
        """Forward pass, or a graph node when ``x`` is symbolic.

        Args:
            x: array of shape (N, ...) (NHWC for conv and pooling layers); real numeric
                dtypes are converted to float32 without rescaling. A KerasTensor (from
                ``pycnn.Input`` or another layer) records a node and returns a KerasTensor.
            training: enables training-only behaviour (dropout).

        Returns:
            float32 array of shape ``compute_output_shape(x.shape)``.
        """
        if symbolic.is_symbolic(x):
            return symbolic.call_layer(self, x)
        out, ctx = self._run(x, training)
        self._last_call = (ctx, out.shape)
        return out

    def _run(self, x: Any, training: bool = False, logits: bool = False) -> Tuple[np.ndarray, Any]:
        """Checked forward on concrete data: returns ``(output, ctx for _backward)``."""
        x = utils.as_float32(x, f"Layer '{self.name}'")
        self._shape_for((None,) + x.shape[1:] if not self.built else x.shape)
        return self._call(x, bool(training), bool(logits))

    def _shape_for(self, shape: Shape) -> Shape:
        """Builds the layer for ``shape`` if needed, else checks ``shape`` against it; returns
        the output shape. Raises ValueError naming the layer when the shape does not fit."""
        shape = tuple(shape)
        if not self.built:
            self.build(shape)
        else:
            self._check_ndim(shape)
            self._check_input(shape)
        return self.compute_output_shape(shape)

    def _symbolic_output_shape(self, shape: Any, input_names: Sequence[str]) -> Shape:
        """Output shape of a call on symbolic inputs (names given for error messages)."""
        return self._shape_for(shape)

    def _call(self, x: np.ndarray, training: bool, logits: bool) -> Tuple[np.ndarray, Any]:
        """Forward on a checked float32 input; ``logits=True`` skips a final softmax.
        Returns the output and what ``_backward`` needs from this call."""
        raise NotImplementedError

    def backward(self, dout: Any, need_input_grad: bool = True) -> Optional[np.ndarray]:
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

    def _backward(self, ctx: Any, dout: np.ndarray, need_input_grad: bool
                  ) -> Tuple[Any, List[np.ndarray]]:
        """Input gradient (None when not needed) and weight gradients (``get_weights()`` order)."""
        raise NotImplementedError

    def native_twin(self, training: bool, logits: bool) -> Optional[NativeTwin]:
        """This layer as a node of the native network step, or None (the model then runs
        layer by layer). ``logits``: the layer's final softmax is left out (the loss fuses it)."""
        return None

    def native_step_done(self, twin: NativeTwin) -> None:
        """Called after a native training step with a finite loss ran this layer's ``twin``
        (which had ``state``): the layer takes what the step wrote there."""

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

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        if not self.trainable:
            return list(self._params)
        return [p for p, t in zip(self._params, self._param_trainable) if not t]

    def _is_trainable_weight(self, param: np.ndarray) -> bool:
        return self.trainable and any(p is param and t for p, t in zip(self._params, self._param_trainable))

    @property
    def weight_names(self) -> List[str]:
        """Names of the weights in ``get_weights()`` order, e.g. ``['kernel', 'bias']``."""
        return list(self._param_names)

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the weights, Keras order and shapes (``[kernel, bias]``)."""
        return [p.copy() for p in self._params]

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
        if len(weights) != len(self._params):
            raise ValueError(f"Layer '{self.name}' expected a list of {len(self._params)} weight arrays "
                             f"{self._param_names}. Received: a list of {len(weights)} arrays.")
        arrays = []
        for pname, param, value in zip(self._param_names, self._params, weights):
            arr = utils.check_real_array(value, f"Layer '{self.name}'.set_weights()", pname)
            if arr.shape != param.shape:
                raise ValueError(f"Layer '{self.name}' expected weight '{pname}' with shape {param.shape}. "
                                 f"Received: shape={arr.shape}.")
            arrays.append(arr)
        for param, arr in zip(self._params, arrays):
            param[...] = arr  # in place: optimizer state is keyed by these arrays

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
        return int(sum(p.size for p in self._params))

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
    """A layer whose weights are ``[kernel]`` or ``[kernel, bias]`` (Conv2D, Dense), with an
    activation the kernel applies itself, except softmax, which runs as a separate op."""

    use_bias: bool = True
    activation: str = "linear"

    @property
    def _fused_activation(self) -> str:
        """The part of the activation the conv2d/dense kernel applies."""
        return self.activation if self.activation in activations.FUSED else "linear"

    def _softmax_forward(self, out: np.ndarray, logits: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Applies an activation the kernel does not fuse (softmax, unless the loss fuses it
        (``logits``); leaky_relu); returns ``(output, output to keep for backward or None)``."""
        if self.activation == "softmax" and not logits:
            out = ops.softmax_forward(out)
            return out, out
        if self.activation == "leaky_relu":
            out = ops.leaky_relu_forward(out, activations.LEAKY_RELU_SLOPE)
            return out, out
        return out, None

    def _softmax_backward(self, dout: np.ndarray, softmax_out: Optional[np.ndarray]) -> np.ndarray:
        if softmax_out is None:
            return dout
        if self.activation == "leaky_relu":
            return ops.leaky_relu_backward(dout, softmax_out, activations.LEAKY_RELU_SLOPE)
        return ops.softmax_backward(dout, softmax_out)

    def _twin_activation(self, logits: bool) -> Optional[str]:
        """The activation the native node applies, or None when it cannot (softmax not fused)."""
        act = "linear" if (logits and self.activation == "softmax") else self.activation
        return act if act in activations.FUSED else None

    @property
    def kernel(self) -> np.ndarray:
        return self._params[0]

    @property
    def bias(self) -> Optional[np.ndarray]:
        return self._params[1] if self.use_bias else None
