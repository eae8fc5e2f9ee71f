"""A pycnn model as an ONNX model: the compiled graph's op specs, one exporter per op kind.

``model.export("m.onnx", format="onnx")`` walks the model's graph with nested models
expanded (the leaf layers the executor runs) and asks every layer for its op spec at
inference (``layer.spec(training=False)``: kind, named attributes, parameters). Each kind
has one exporter function in :data:`EXPORTERS`; a new op adds one entry. A layer without a
native op (a user's Python layer) has no ONNX form and is refused by name.

What the graph looks like
-------------------------
* Inputs are NHWC float32 as pycnn takes them, named after the model's inputs, with a
  dynamic batch axis ``N`` (and dynamic spatial axes where the model has None); outputs are
  ``output_0``, ``output_1``... in pycnn's shapes and order.
* ONNX's image operators are channels-first, so an image is transposed to NCHW once, before
  the first op that needs it, and stays NCHW through convolutions, pooling, padding,
  cropping, batch normalization, activations and merges. It goes back to NHWC only where
  the NHWC order is visible: a graph output, a Reshape, a Dense applied to the channels of
  an image.
* Flatten of an NCHW image followed by Dense is exported without a Transpose: the flattened
  vector is in C, H, W order, and the Dense kernel's rows are permuted to match (exact: the
  same products and sums). The same permutation is folded into a BatchNormalization, a
  Rescaling or another Dense-side op that reads the flattened vector per feature.
* Convolutions are ``Conv`` (kernels transposed to (F, C / groups, KH, KW); depthwise with
  ``group = C``; separable as a depthwise then a 1x1 ``Conv``), Dense is ``Gemm`` (``MatMul``
  + ``Add`` above rank 2), 'same' padding is explicit ``pads`` (TensorFlow's rule: the extra
  row and column at the bottom and right) or ``auto_pad=SAME_UPPER`` for dynamic sizes,
  average pooling does not count padding, BatchNormalization at inference is ``Mul`` + ``Add``
  with the folded scale and shift, activations are ONNX's (GELU as ``Erf`` or ``Tanh``
  arithmetic), Sobel edges a grouped ``Conv`` after a reflect ``Pad``.

The opset is :data:`DEFAULT_OPSET` unless ``opset`` says otherwise (13 to 21 use the same
operators). ``onnx.checker.check_model`` accepts every exported model, and ONNX Runtime's
outputs equal pycnn's within float32 round-off (tests/test_onnx_export.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import require

#: The opset written unless another is asked for.
DEFAULT_OPSET = 17
#: The opsets whose operators the exporters use with the same meaning.
SUPPORTED_OPSETS = range(13, 22)

Shape = Tuple[Optional[int], ...]


class Value(NamedTuple):
    """One tensor of the export: its ONNX name, pycnn's (NHWC) shape with the batch axis, and
    how the ONNX tensor holds it:

    * ``'nhwc'``: as pycnn (any rank);
    * ``'nchw'``: a 4-D image with the channels moved to axis 1;
    * ``'chw_flat'``: the Flatten of an NCHW image (C, H, W order); ``source`` is that image;
    * ``'nchw_pairs'``: Sobel edges, pycnn's (N, H, W, C, 2) held as (N, 2C, H, W).
    """
    name: str
    shape: Shape
    layout: str = "nhwc"
    source: Any = None


class Export:
    """The graph being written: nodes, initializers and layout conversions (each done once)."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self._names: Dict[str, int] = {}
        self._used: set = set()
        self._converted: Dict[Tuple[str, str], Value] = {}

    def name(self, hint: str) -> str:
        """A tensor name not used before (layer names and their suffixes may collide)."""
        count = self._names.get(hint, 0)
        name = hint if count == 0 else f"{hint}_{count}"
        while name in self._used:
            count += 1
            name = f"{hint}_{count}"
        self._names[hint] = count + 1
        self._used.add(name)
        return name

    def const(self, array: Any, hint: str, dtype: Any = np.float32) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def ints(self, values: Sequence[int], hint: str) -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, np.int64)

    def node(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    # ----------------------------------------------------------------- layouts

    def nchw(self, v: Value, hint: str) -> Value:
        """``v`` (a 4-D image) as NCHW."""
        if v.layout == "nchw":
            return v
        v = self.nhwc(v, hint)
        if len(v.shape) != 4:
            raise ValueError(f"ONNX export: expected a 4-D image for {hint}, got shape {v.shape}.")
        key = (v.name, "nchw")
        if key not in self._converted:
            out = self.node("Transpose", [v.name], f"{hint}_nchw", perm=[0, 3, 1, 2])
            self._converted[key] = Value(out, v.shape, "nchw")
        return self._converted[key]

    def nhwc(self, v: Value, hint: str) -> Value:
        """``v`` in pycnn's order."""
        if v.layout == "nhwc":
            return v
        key = (v.name, "nhwc")
        if key in self._converted:
            return self._converted[key]
        if v.layout == "nchw":
            out = Value(self.node("Transpose", [v.name], f"{hint}_nhwc", perm=[0, 2, 3, 1]), v.shape)
        elif v.layout == "chw_flat":
            image = self.nhwc(v.source, hint)
            out = Value(self.node("Flatten", [image.name], f"{hint}_flat", axis=1), v.shape)
        elif v.layout == "nchw_pairs":
            t = self.node("Transpose", [v.name], f"{hint}_nhwc", perm=[0, 2, 3, 1])
            c = v.shape[3]
            out = Value(self.node("Reshape", [t, self.ints([0, 0, 0, c, 2], "pairs_shape")], f"{hint}_pairs"), v.shape)
        else:
            raise AssertionError(v.layout)
        self._converted[key] = out
        return out

    def same_layout(self, values: List[Value], hint: str) -> List[Value]:
        """The inputs of an element-wise merge, in one layout (NCHW when an image is)."""
        kinds = {v.layout for v in values}
        if kinds in ({"nhwc"}, {"nchw"}):
            return values
        if kinds == {"chw_flat"} and len({v.source.shape for v in values}) == 1:
            return values  # flattened alike: the same permutation of the same features
        if all(len(v.shape) == 4 for v in values) and "nchw" in kinds:
            return [self.nchw(v, hint) for v in values]
        return [self.nhwc(v, hint) for v in values]

    def per_feature(self, v: Value, vector: np.ndarray) -> np.ndarray:
        """A per-channel (last axis) vector shaped to broadcast over ``v`` in its layout."""
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        if v.layout == "nchw":
            return vector.reshape(-1, 1, 1)
        if v.layout == "chw_flat":
            if vector.size == 1:
                return vector
            return vector[_chw_permutation(v.source.shape)]
        return vector

    def activation(self, name: str, v: Value, hint: str) -> Value:
        if name not in ACTIVATIONS:
            raise ValueError(f"ONNX export has no form for activation '{name}' (in {hint}). Add an entry to "
                             "pycnn.interop.onnx_export.ACTIVATIONS.")
        return ACTIVATIONS[name](self, v, hint)


def _chw_permutation(image_shape: Shape) -> np.ndarray:
    """perm[j] = the NHWC-flatten index of the element at position j of the CHW flatten."""
    _, h, w, c = image_shape
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


# ----------------------------------------------------------------------------- activations

def _elementwise(op: str, **attrs: Any) -> Callable[[Export, Value, str], Value]:
    def apply(ex: Export, v: Value, hint: str) -> Value:
        return v._replace(name=ex.node(op, [v.name], f"{hint}_{op.lower()}", **attrs))
    return apply


def _linear(ex: Export, v: Value, hint: str) -> Value:
    return v


def _softmax(ex: Export, v: Value, hint: str) -> Value:
    if v.layout == "nchw_pairs":
        v = ex.nhwc(v, hint)
    # Over pycnn's last axis: the channels (axis 1 of NCHW); on a flattened vector the order
    # of its entries does not matter.
    axis = 1 if v.layout == "nchw" else -1
    return v._replace(name=ex.node("Softmax", [v.name], f"{hint}_softmax", axis=axis))


def _gelu(ex: Export, v: Value, hint: str) -> Value:
    """0.5 x (1 + erf(x / sqrt(2)))."""
    scaled = ex.node("Mul", [v.name, ex.const(np.float32(1.0 / math.sqrt(2.0)), "inv_sqrt2")], f"{hint}_gelu_in")
    erf = ex.node("Erf", [scaled], f"{hint}_erf")
    one = ex.node("Add", [erf, ex.const(np.float32(1.0), "one")], f"{hint}_erf1")
    half = ex.node("Mul", [v.name, ex.const(np.float32(0.5), "half")], f"{hint}_halfx")
    return v._replace(name=ex.node("Mul", [half, one], f"{hint}_gelu"))


def _gelu_tanh(ex: Export, v: Value, hint: str) -> Value:
    """0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    cube = ex.node("Mul", [v.name, ex.node("Mul", [v.name, v.name], f"{hint}_sq")], f"{hint}_cube")
    inner = ex.node("Add", [v.name, ex.node("Mul", [cube, ex.const(np.float32(0.044715), "gelu_c")], f"{hint}_c3")],
                    f"{hint}_inner")
    t = ex.node("Tanh", [ex.node("Mul", [inner, ex.const(np.float32(math.sqrt(2.0 / math.pi)), "gelu_k")],
                                 f"{hint}_scaled")], f"{hint}_tanh")
    one = ex.node("Add", [t, ex.const(np.float32(1.0), "one")], f"{hint}_tanh1")
    half = ex.node("Mul", [v.name, ex.const(np.float32(0.5), "half")], f"{hint}_halfx")
    return v._replace(name=ex.node("Mul", [half, one], f"{hint}_gelu"))


#: Activation name (pycnn.ops.activations()) -> its ONNX form.
ACTIVATIONS: Dict[str, Callable[[Export, Value, str], Value]] = {
    "linear": _linear, "relu": _elementwise("Relu"), "sigmoid": _elementwise("Sigmoid"),
    "tanh": _elementwise("Tanh"), "softmax": _softmax, "leaky_relu": _elementwise("LeakyRelu", alpha=0.2),
    "gelu": _gelu, "gelu_approximate": _gelu_tanh,
}


# ----------------------------------------------------------------------------- op exporters

def _pads(v: Value, window: Sequence[int], strides: Sequence[int], dilation: Sequence[int], padding: str
          ) -> Dict[str, Any]:
    """ONNX padding attributes for pycnn's 'valid' / 'same' (TensorFlow's rule)."""
    if padding == "valid":
        return {"pads": [0, 0, 0, 0]}
    sizes = v.shape[1:3]
    if any(s is None for s in sizes):
        return {"auto_pad": "SAME_UPPER"}  # the extra row / column at the end, as TensorFlow
    begin, end = [], []
    for size, k, s, d in zip(sizes, window, strides, dilation):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return {"pads": begin + end}


def _conv_like(ex: Export, x: Value, weight: np.ndarray, bias: Optional[np.ndarray], attrs: Dict[str, Any],
               hint: str, group: int, shape: Shape) -> Value:
    x = ex.nchw(x, hint)
    window = weight.shape[2:]
    inputs = [x.name, ex.const(weight, f"{hint}_W")]
    if bias is not None:
        inputs.append(ex.const(bias, f"{hint}_B"))
    strides = list(attrs.get("strides", (1, 1)))
    dilation = list(attrs.get("dilation_rate", (1, 1)))
    out = ex.node("Conv", inputs, hint, kernel_shape=list(window), strides=strides, dilations=dilation, group=group,
                  **_pads(x, window, strides, dilation, attrs.get("padding", "valid")))
    return ex.activation(attrs.get("activation", "linear"), Value(out, shape, "nchw"), hint)


def conv2d(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    kernel, bias = spec.params
    return _conv_like(ex, xs[0], np.transpose(kernel, (3, 2, 0, 1)), bias, spec.attrs, hint,
                      int(spec.attrs.get("groups", 1)), shape)


def depthwise_conv2d(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    kernel, bias = spec.params
    kh, kw, c, m = kernel.shape
    weight = np.transpose(kernel, (2, 3, 0, 1)).reshape(c * m, 1, kh, kw)  # output channel c * M + m
    return _conv_like(ex, xs[0], weight, bias, spec.attrs, hint, c, shape)


def separable_conv2d(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    depthwise, pointwise, bias = spec.params
    kh, kw, c, m = depthwise.shape
    attrs = dict(spec.attrs, activation="linear")
    mid_shape = shape[:3] + (c * m,)
    mid = _conv_like(ex, xs[0], np.transpose(depthwise, (2, 3, 0, 1)).reshape(c * m, 1, kh, kw), None, attrs,
                     f"{hint}_depthwise", c, mid_shape)
    point = {"activation": spec.attrs.get("activation", "linear")}
    return _conv_like(ex, mid, np.transpose(pointwise, (3, 2, 0, 1)), bias, point, hint, 1, shape)


def dense(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    kernel, bias = spec.params
    x = xs[0]
    if x.layout == "chw_flat":
        kernel = kernel[_chw_permutation(x.source.shape)]  # rows in the order ONNX's flatten holds
    elif x.layout != "nhwc":
        x = ex.nhwc(x, hint)
    w = ex.const(kernel, f"{hint}_W")
    if len(x.shape) == 2:
        inputs = [x.name, w] + ([ex.const(bias, f"{hint}_B")] if bias is not None else [])
        out = ex.node("Gemm", inputs, hint)
    else:
        out = ex.node("MatMul", [x.name, w], f"{hint}_matmul")
        if bias is not None:
            out = ex.node("Add", [out, ex.const(bias, f"{hint}_B")], hint)
    return ex.activation(spec.attrs.get("activation", "linear"), Value(out, shape), hint)


def flatten(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = xs[0]
    if len(x.shape) == 2 and x.layout in ("nhwc", "chw_flat"):
        return x._replace(shape=shape)
    if x.layout == "nchw" and all(d is not None for d in x.shape[1:]):
        # Flatten in C, H, W order; the readers that care (Dense, per-feature ops) permute.
        return Value(ex.node("Flatten", [x.name], hint, axis=1), shape, "chw_flat", x)
    x = ex.nhwc(x, hint)
    return Value(ex.node("Flatten", [x.name], hint, axis=1), shape)


def _pool(op: str) -> Callable[..., Value]:
    def export(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
        x = ex.nchw(xs[0], hint)
        window = list(spec.attrs["pool_size"])
        strides = list(spec.attrs["strides"])
        attrs = _pads(x, window, strides, (1, 1), spec.attrs.get("padding", "valid"))
        if op == "AveragePool":
            attrs["count_include_pad"] = 0  # as pycnn and Keras: padding is not counted
        return Value(ex.node(op, [x.name], hint, kernel_shape=window, strides=strides, **attrs), shape, "nchw")
    return export


def _global_pool(op: str) -> Callable[..., Value]:
    def export(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
        x = ex.nchw(xs[0], hint)
        pooled = ex.node(op, [x.name], hint)
        if int(spec.attrs.get("keepdims", 0)):
            return Value(pooled, shape, "nchw")
        return Value(ex.node("Flatten", [pooled], f"{hint}_flat", axis=1), shape)
    return export


def batchnorm(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    gamma, beta, mean, var = spec.params
    if int(spec.attrs.get("training", 0)):
        raise ValueError(f"ONNX export of '{hint}': batch normalization in training mode has no inference form.")
    eps = float(spec.attrs.get("epsilon", 1e-3))
    scale = (1.0 if gamma is None else gamma.astype(np.float64)) / np.sqrt(var.astype(np.float64) + eps)
    shift = (0.0 if beta is None else beta.astype(np.float64)) - mean.astype(np.float64) * scale
    x = xs[0] if xs[0].layout != "nchw_pairs" else ex.nhwc(xs[0], hint)
    y = ex.node("Mul", [x.name, ex.const(ex.per_feature(x, scale), f"{hint}_scale")], f"{hint}_mul")
    y = ex.node("Add", [y, ex.const(ex.per_feature(x, shift), f"{hint}_shift")], hint)
    return ex.activation(spec.attrs.get("activation", "linear"), x._replace(name=y, shape=shape), hint)


def rescaling(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = xs[0] if xs[0].layout != "nchw_pairs" else ex.nhwc(xs[0], hint)
    scale, offset = np.asarray(spec.attrs["scale"]), np.asarray(spec.attrs["offset"])
    y = ex.node("Mul", [x.name, ex.const(ex.per_feature(x, scale), f"{hint}_scale")], f"{hint}_mul")
    y = ex.node("Add", [y, ex.const(ex.per_feature(x, offset), f"{hint}_offset")], hint)
    return x._replace(name=y, shape=shape)


def activation(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = xs[0]
    if x.layout == "nchw_pairs":
        x = ex.nhwc(x, hint)
    return ex.activation(spec.attrs.get("activation", "linear"), x._replace(shape=shape), hint)


def leaky_relu(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = xs[0]
    return x._replace(name=ex.node("LeakyRelu", [x.name], hint, alpha=float(spec.attrs["negative_slope"])),
                      shape=shape)


def identity(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    return xs[0]


def _merge(op: str) -> Callable[..., Value]:
    def export(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
        xs = ex.same_layout(xs, hint)
        out = xs[0].name
        for i, x in enumerate(xs[1:]):
            out = ex.node(op, [out, x.name], hint if i == len(xs) - 2 else f"{hint}_{i}")
        return xs[0]._replace(name=out, shape=shape)
    return export


def concatenate(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    axis = int(spec.attrs["axis"])  # per sample: 0 is the first axis after the batch
    if len(shape) == 4 and any(x.layout == "nchw" for x in xs):
        xs = [ex.nchw(x, hint) for x in xs]
        return Value(ex.node("Concat", [x.name for x in xs], hint, axis=(2, 3, 1)[axis]), shape, "nchw")
    xs = [ex.nhwc(x, hint) for x in xs]
    return Value(ex.node("Concat", [x.name for x in xs], hint, axis=axis + 1), shape)


def reshape(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = xs[0]
    target = [int(d) for d in spec.attrs["target_shape"]]
    if x.layout == "nchw_pairs" and len(target) == 3 and target[:2] == list(x.shape[1:3]) and \
            target[2] in (-1, 2 * x.shape[3]):
        return Value(x.name, shape, "nchw")  # (H, W, C, 2) -> (H, W, 2C): the NCHW tensor already is that
    x = ex.nhwc(x, hint)
    return Value(ex.node("Reshape", [x.name, ex.ints([0] + target, f"{hint}_shape")], hint), shape)


def zero_padding2d(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = ex.nchw(xs[0], hint)
    t, b, l, r = (int(p) for p in spec.attrs["padding"])
    pads = ex.ints([0, 0, t, l, 0, 0, b, r], f"{hint}_pads")
    return Value(ex.node("Pad", [x.name, pads], hint, mode="constant"), shape, "nchw")


def cropping2d(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    x = ex.nchw(xs[0], hint)
    t, b, l, r = (int(c) for c in spec.attrs["cropping"])
    big = 2**62
    starts = ex.ints([t, l], f"{hint}_starts")
    ends = ex.ints([-b if b else big, -r if r else big], f"{hint}_ends")
    return Value(ex.node("Slice", [x.name, starts, ends, ex.ints([2, 3], f"{hint}_axes")], hint), shape, "nchw")


def image_gradient(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    """Forward differences along H (axis 0) or W (axis 1), the last row (column) zero."""
    x = ex.nchw(xs[0], hint)
    axis = 2 + int(spec.attrs["axis"])
    big = 2**62
    axes = ex.ints([axis], f"{hint}_axes")
    ahead = ex.node("Slice", [x.name, ex.ints([1], "one_i"), ex.ints([big], "end_i"), axes], f"{hint}_ahead")
    here = ex.node("Slice", [x.name, ex.ints([0], "zero_i"), ex.ints([-1], "minus_one_i"), axes], f"{hint}_here")
    diff = ex.node("Sub", [ahead, here], f"{hint}_diff")
    pads = [0, 0, 0, 0, 0, 0, 0, 0]
    pads[4 + axis] = 1
    return Value(ex.node("Pad", [diff, ex.ints(pads, f"{hint}_pads")], hint, mode="constant"), shape, "nchw")


_SOBEL_DY = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float32)


def sobel_edges(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    """tf.image.sobel_edges: reflect-pad one pixel, then per channel the dy and dx kernels
    (a grouped Conv: output channel 2c is dy of channel c, 2c + 1 its dx)."""
    x = ex.nchw(xs[0], hint)
    c = x.shape[3]
    padded = ex.node("Pad", [x.name, ex.ints([0, 0, 1, 1, 0, 0, 1, 1], f"{hint}_pads")], f"{hint}_reflect",
                     mode="reflect")
    weight = np.stack([_SOBEL_DY, _SOBEL_DY.T])[None].repeat(c, axis=0).reshape(2 * c, 1, 3, 3)
    out = ex.node("Conv", [padded, ex.const(weight, f"{hint}_W")], hint, kernel_shape=[3, 3], group=c,
                  pads=[0, 0, 0, 0])
    return Value(out, shape, "nchw_pairs")


# ----------------------------------------------------------------------------- int8 ops (pycnn.quantization)
#
# A quantized model (pycnn.quantization.QuantizedModel) exports in ONNX's QDQ form: uint8
# tensors where pycnn holds uint8 values, QuantizeLinear / DequantizeLinear around the float
# arithmetic of each int8 op, its int8 per-channel weights and int32 bias as DequantizeLinear
# of integer initializers. ONNX Runtime fuses those patterns into its integer kernels
# (QLinearConv, QGemm...). Its requantization rounds its own way, so its outputs are close to
# pycnn's, not identical (tests/test_quantization.py).

def _qdq(ex: Export, op: str, v: Value, scale: float, zero_point: int, hint: str) -> Value:
    inputs = [v.name, ex.const(np.float32(scale), f"{hint}_scale"),
              ex.const(np.uint8(zero_point), f"{hint}_zero_point", np.uint8)]
    return v._replace(name=ex.node(op, inputs, hint))


def quantize(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    return _qdq(ex, "QuantizeLinear", xs[0], spec.attrs["scale"], spec.attrs.get("zero_point", 0), hint)._replace(
        shape=shape)


def dequantize(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    return _qdq(ex, "DequantizeLinear", xs[0], spec.attrs["scale"], spec.attrs.get("zero_point", 0), hint)._replace(
        shape=shape)


def _int8_params(ex: Export, spec: Any, weight_layout: Callable[[np.ndarray], np.ndarray], axis: int,
                 hint: str) -> Tuple[str, Optional[str]]:
    """The op's weights as DequantizeLinear of the int8 weights the op computes (per output
    channel, on ``axis`` of the laid-out kernel) and its bias as DequantizeLinear of int32."""
    from ..ops import int8_per_channel_weights

    kernel, bias = spec.params
    q, sw = int8_per_channel_weights(kernel)
    channels = sw.size
    w = ex.node("DequantizeLinear", [ex.const(weight_layout(q), f"{hint}_Wq", np.int8),
                                     ex.const(sw.astype(np.float32), f"{hint}_W_scale"),
                                     ex.const(np.zeros(channels, np.int8), f"{hint}_W_zero_point", np.int8)],
                f"{hint}_W", axis=axis)
    if bias is None:
        return w, None
    bias_scale = (float(spec.attrs["in_scale"]) * sw).astype(np.float32)
    bq = np.rint(bias.astype(np.float64) / bias_scale.astype(np.float64))
    bq = np.clip(bq, -2**31 + 1, 2**31 - 1).astype(np.int32)
    b = ex.node("DequantizeLinear", [ex.const(bq, f"{hint}_Bq", np.int32), ex.const(bias_scale, f"{hint}_B_scale")],
                f"{hint}_B", axis=0)
    return w, b


def _int8_output(ex: Export, spec: Any, y: Value, hint: str) -> Value:
    y = ex.activation(spec.attrs.get("activation", "linear"), y, hint)
    if spec.attrs.get("out_dtype", "uint8") == "uint8":
        y = _qdq(ex, "QuantizeLinear", y, spec.attrs["out_scale"], spec.attrs.get("out_zero_point", 0), f"{hint}_q")
    return y


def conv2d_int8(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    a = spec.attrs
    x = ex.nchw(xs[0], hint)
    xf = _qdq(ex, "DequantizeLinear", x, a["in_scale"], a.get("in_zero_point", 0), f"{hint}_x")
    w, b = _int8_params(ex, spec, lambda q: np.transpose(q, (3, 2, 0, 1)), 0, hint)
    window = list(spec.params[0].shape[:2])
    strides = list(a.get("strides", (1, 1)))
    out = ex.node("Conv", [xf.name, w] + ([b] if b else []), hint, kernel_shape=window, strides=strides,
                  **_pads(x, window, strides, (1, 1), a.get("padding", "valid")))
    return _int8_output(ex, spec, Value(out, shape, "nchw"), hint)


def dense_int8(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
    a = spec.attrs
    x = xs[0]
    rows = None
    if x.layout == "chw_flat":
        rows = _chw_permutation(x.source.shape)  # the kernel's rows in the order ONNX's flatten holds
    elif x.layout != "nhwc":
        x = ex.nhwc(x, hint)
    xf = _qdq(ex, "DequantizeLinear", x, a["in_scale"], a.get("in_zero_point", 0), f"{hint}_x")
    w, b = _int8_params(ex, spec, lambda q: q if rows is None else q[rows], 1, hint)
    if len(x.shape) == 2:
        out = ex.node("Gemm", [xf.name, w] + ([b] if b else []), hint)
    else:
        out = ex.node("MatMul", [xf.name, w], f"{hint}_matmul")
        if b:
            out = ex.node("Add", [out, b], hint)
    return _int8_output(ex, spec, Value(out, shape), hint)


def _pool_int8(op: str, global_: bool) -> Callable[..., Value]:
    """Pooling of uint8: as float (exact for these small integers), the mean rounded as pycnn's
    op does, (sum + count / 2) // count, i.e. floor(mean + 1/2)."""
    def export(ex: Export, spec: Any, xs: List[Value], shape: Shape, hint: str) -> Value:
        x = ex.nchw(xs[0], hint)
        xf = x._replace(name=ex.node("Cast", [x.name], f"{hint}_float", to=ex.onnx.TensorProto.FLOAT))
        pooled = (_global_pool(op) if global_ else _pool(op))(ex, spec, [xf], shape, f"{hint}_pool")
        if op == "AveragePool" or op == "GlobalAveragePool":
            half = ex.node("Add", [pooled.name, ex.const(np.float32(0.5), f"{hint}_half")], f"{hint}_half")
            pooled = pooled._replace(name=ex.node("Floor", [half], f"{hint}_floor"))
        return pooled._replace(name=ex.node("Cast", [pooled.name], hint, to=ex.onnx.TensorProto.UINT8))
    return export


#: Op kind (pycnn.ops.registered_ops()) -> exporter ``(export, spec, inputs, output shape, name) -> Value``.
#: A new op adds its entry here.
EXPORTERS: Dict[str, Callable[[Export, Any, List[Value], Shape, str], Value]] = {
    "activation": activation, "add": _merge("Add"), "avgpool2d": _pool("AveragePool"), "batchnorm": batchnorm,
    "concatenate": concatenate, "conv2d": conv2d, "cropping2d": cropping2d, "dense": dense,
    "depthwise_conv2d": depthwise_conv2d, "flatten": flatten, "global_avgpool2d": _global_pool("GlobalAveragePool"),
    "global_maxpool2d": _global_pool("GlobalMaxPool"), "identity": identity, "image_gradient": image_gradient,
    "leaky_relu": leaky_relu, "maxpool2d": _pool("MaxPool"), "multiply": _merge("Mul"), "rescaling": rescaling,
    "reshape": reshape, "separable_conv2d": separable_conv2d, "sobel_edges": sobel_edges,
    "zero_padding2d": zero_padding2d,
    # int8 (pycnn.quantization)
    "quantize": quantize, "dequantize": dequantize, "conv2d_int8": conv2d_int8, "dense_int8": dense_int8,
    "maxpool2d_int8": _pool("MaxPool"), "avgpool2d_int8": _pool_int8("AveragePool", False),
    "global_maxpool2d_int8": _pool_int8("GlobalMaxPool", True),
    "global_avgpool2d_int8": _pool_int8("GlobalAveragePool", True),
}


# ----------------------------------------------------------------------------- the walk

def to_onnx(model: Any, opset: Optional[int] = None) -> Any:
    """``model`` as an ``onnx.ModelProto`` (see the module docstring), checked by
    ``onnx.checker``.

    Raises:
        ValueError: an opset outside :data:`SUPPORTED_OPSETS`, or a layer with no ONNX form.
        ImportError: onnx is not installed.
    """
    onnx = require("onnx", "onnx", "ONNX export")
    import onnx.checker  # noqa: F401  (submodules onnx does not import itself)
    import onnx.helper  # noqa: F401
    import onnx.numpy_helper  # noqa: F401
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in SUPPORTED_OPSETS:
        raise ValueError(f"ONNX export writes opsets {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1}. "
                         f"Received: opset_version={opset!r}.")
    graph = model._graph().expanded()
    shapes = graph.value_shapes(graph.input_shapes)
    ex = Export(onnx, opset)
    helper = onnx.helper
    k = graph.num_inputs
    input_names = _input_names(model, k)
    ex._used.update(input_names + [f"output_{o}" for o in range(len(graph.outputs))])
    values: List[Value] = [Value(name, shapes[i]) for i, name in enumerate(input_names)]
    for i, node in enumerate(graph.nodes):
        layer = node.layer
        spec = layer.spec(False)
        if spec is None:
            raise ValueError(f"Layer '{layer.name}' ({layer.class_name}) has no native op (it computes in Python), so "
                             "it has no ONNX form. ONNX export covers the layers whose spec() names an op.")
        exporter = EXPORTERS.get(spec.kind)
        if exporter is None:
            raise ValueError(f"Layer '{layer.name}' ({layer.class_name}): ONNX export has no exporter for op "
                             f"'{spec.kind}'. Add one to pycnn.interop.onnx_export.EXPORTERS.")
        values.append(exporter(ex, spec, [values[j] for j in node.inputs], shapes[k + i], layer.name))
    outputs = []
    for o, index in enumerate(graph.outputs):
        v = ex.nhwc(values[index], f"output_{o}")
        name = f"output_{o}"
        ex.nodes.append(helper.make_node("Identity", [v.name], [name], name=f"{name}_identity"))
        outputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, _dims(shapes[index], f"out{o}")))
    inputs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, _dims(shapes[i], f"in{i}"))
              for i, name in enumerate(input_names)]
    g = helper.make_graph(ex.nodes, model.name, inputs, outputs, ex.initializers)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="pycnn",
                              producer_version=_version())
    # The oldest IR version that can carry the opset, so that older runtimes open the file.
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _version() -> str:
    from .._version import __version__
    return __version__


def _dims(shape: Shape, prefix: str) -> List[Any]:
    return ["N"] + [d if d is not None else f"{prefix}_d{i + 1}" for i, d in enumerate(shape[1:])]


def _input_names(model: Any, k: int) -> List[str]:
    try:
        names = [t.name for t in model.inputs]
    except AttributeError:  # a Sequential has no symbolic inputs
        layer = getattr(model, "_input_layer", None)
        names = [layer.name if layer is not None else "input"]
    return names if len(set(names)) == k else [f"input_{i}" for i in range(k)]


def export(model: Any, path: Any, opset: Optional[int] = None, verbose: Optional[bool] = None) -> None:
    """Write ``model`` to ``path`` as ONNX (atomically)."""
    import os

    from .. import _tempfiles

    proto = to_onnx(model, opset)
    data = proto.SerializeToString()
    _tempfiles.write_atomically(os.fspath(path), lambda f: f.write(data))
    if verbose:
        print(f"Saved ONNX model (opset {proto.opset_import[0].version}) to '{os.fspath(path)}': "
              f"{len(proto.graph.node)} nodes.")
