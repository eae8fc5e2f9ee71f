"""Post-training static int8 quantization: ``quantize(model, calibration_data)`` returns a
:class:`QuantizedModel` that predicts with 8-bit integer arithmetic.

    qmodel = pycnn.quantization.quantize(model, x_train[:1000])
    qmodel.summary()                      # which layers run in int8
    probs = qmodel.predict(x_test, batch_size=256)
    qmodel.evaluate(x_test, y_test)       # [loss, accuracy]
    qmodel.save("lenet_int8.npz")         # pycnn.models.load_model reads it back

How a model is quantized
------------------------
1. The model is copied (its config and weights), so training it further leaves the
   quantized one alone.
2. Its graph gets the specs predict runs (pycnn/executor.py, :func:`executor.node_specs`):
   batch normalization folded into the convolution or dense layer before it, activations fused
   into their producer.
3. Each node gets a precision, from the op registry: an op ``K`` with a registered
   ``K_int8`` twin that declares quantization attributes (conv2d, dense) runs int8 when its
   other attributes are ones the twin supports (a conv2d with groups or dilation stays
   float32); a twin without them (the pooling ops) runs on uint8 when its input is uint8;
   views (flatten, reshape, identity) pass the element type on; every other op, and a
   Python layer, runs float32. A value an int8 op reads is uint8 (a ``quantize`` node is
   inserted after a float32 value), a value a float32 op or the model's output reads is
   float32 (a ``dequantize`` node after a uint8 one). A conv2d / dense writes uint8 when
   something downstream runs on uint8 and its activation is linear or relu (the
   requantization applies them); otherwise float32 directly, with any activation (a final
   dense with its softmax).
4. Calibration: the float model runs on ``calibration_data`` with every value that will be
   quantized as an output (one compiled graph, the same rewrites), and each gets a
   per-tensor range.
5. The quantized graph is compiled like any other (a native network, Python layers between
   segments), the int8 ops packing their weights once (csrc/quantized.cpp).

Numbers: weights int8 symmetric per output channel (scale ``max|w| / 127``), activations
uint8 asymmetric per tensor (``real = scale * (q - zero_point)``, the range widened to
include 0, so a real 0 -- relu's floor, the padding -- is exact), int32 sums,
requantization in float32 fused into the conv / dense kernels (csrc/quantized.h).

Calibration method. ``method='minmax'`` (the default) takes each tensor's range from the
smallest and largest value seen; ``'percentile'`` clips it at the given percentile of a
2048-bin histogram of the values (two passes). Min/max is the default because these
networks' activations are post-relu, single-sided, and their largest values carry the
decision: with 255 levels per tensor and per-channel weights, min/max lost at most a few
tenths of a point on LeNet / CIFAR-10 and the Fashion-MNIST model in bench/int8.py, while
clipping the top 0.01 % saturates exactly the large activations of the winning class.
Percentile clipping helps when a few outliers stretch a range far beyond the bulk (large
networks, unnormalized inputs); entropy (KL) calibration is not implemented.

File format: ``QuantizedModel.save`` writes the float model's file (pycnn/saving.py) with a
``quantization`` entry in its manifest: the format name and version, the calibration
method, the loss and metrics, and every quantized value's scale and zero point by its index
in the model's graph. Loading rebuilds the float model and quantizes it with those numbers,
which gives back the same int8 network bit for bit.

``QuantizedModel.export(path, format="onnx")`` writes the int8 model in ONNX's QDQ form
(pycnn/interop/onnx_export.py), which ONNX Runtime runs with its own integer kernels.
"""
from __future__ import annotations

import copy as copy_module
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import executor, losses as losses_module, metrics as metrics_module, ops, saving, utils
from .graph import Graph, GraphNode
from .layers import base as layers_base
from .layers.base import Layer
from .progress import Progbar, check_verbose

METHODS = ("minmax", "percentile")
FORMAT = "pycnn.int8"
FORMAT_VERSION = 1
#: The longest reduction (KH * KW * C, or a dense layer's inputs) whose int32 sums cannot
#: overflow: kMaxInt8K in csrc/quantized.h (the op refuses longer ones; such layers stay float32).
MAX_INT8_REDUCTION = 33000
_HISTOGRAM_BINS = 2048

QParams = Tuple[float, int]  # (scale, zero point)


# ----------------------------------------------------------------------------- public API

def quantize(model: Any, calibration_data: Any, method: str = "minmax", percentile: float = 99.99,
             batch_size: int = 256) -> "QuantizedModel":
    """Post-training static int8 quantization of a built pycnn model.

    Args:
        model: a built ``Sequential`` or ``Model`` (trained; it is copied, not changed).
            Training-only layers (Dropout, the Random* augmentation layers) quantize to
            their inference behaviour.
        calibration_data: input samples, an array ``(N,) + input_shape`` (a list of arrays
            for a model with several inputs), scaled as for ``predict``; about 1,000
            training images are plenty.
        method: ``'minmax'`` or ``'percentile'`` (module docstring).
        percentile: for ``'percentile'``: the share of values kept inside the range, in
            (50, 100].
        batch_size: samples per calibration batch.

    Returns:
        A :class:`QuantizedModel`.

    Raises:
        ValueError: calibration data of the wrong shape, empty, or holding NaN or infinite
            values; an unknown method; a percentile out of range.
        TypeError: calibration data that is not numeric.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"quantize() expected method to be one of {', '.join(repr(m) for m in METHODS)}. "
                         f"Received: method={method!r}.")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 50.0 < percentile <= 100.0:
        raise ValueError(f"quantize() expected percentile to be a number in (50, 100]. Received: percentile={percentile!r}.")
    batch_size = utils.positive_int(batch_size, "batch_size", "quantize()")
    if isinstance(model, QuantizedModel):
        raise TypeError(f"quantize() expected a float32 model. Received: model '{model.name}', which is quantized "
                        "already; quantize its float_model again for other settings.")
    if not callable(getattr(model, "_graph", None)):
        raise TypeError(f"quantize() expected a pycnn model (Sequential or Model). Received: model of type "
                        f"{type(model).__name__}.")
    model._require_built("its quantization")
    xs = _calibration_arrays(model, calibration_data)
    copy = _copy_model(model)
    graph = copy._graph().expanded()
    specs, _ = executor.node_specs(graph, training=False, logits=False)
    wanted = _build(graph, specs, None).requested
    ranges = _calibrate(graph, wanted, xs, batch_size, method, float(percentile))
    qparams = {v: _qparams(*ranges[v]) for v in wanted}
    info = {"method": method, "percentile": float(percentile) if method == "percentile" else None,
            "calibration_samples": int(xs[0].shape[0])}
    loss, metrics = _evaluation_setup(model)
    return QuantizedModel(copy, qparams, info, loss, metrics)


class LayerPrecision(NamedTuple):
    """How one layer call of the float model runs in the quantized one."""
    name: str
    class_name: str
    output_shape: Tuple[Optional[int], ...]
    params: int
    runs: str      # 'int8', 'float32', or what became of it ('folded into conv2d', 'identity', ...)
    detail: str    # e.g. 'uint8 out, relu fused' / 'float32 out, softmax'


class QuantizedModel:
    """An int8 inference model made by :func:`quantize` (or read by ``load_model``).

    ``predict``, ``evaluate`` and ``summary`` work as on the float model; ``save`` writes a
    file ``pycnn.models.load_model`` reads back. It cannot be trained (the int8 ops have no
    backward): train the float model and quantize it again.
    """

    def __init__(self, float_model: Any, qparams: Dict[int, QParams], info: Dict[str, Any],
                 loss: Any = "sparse_categorical_crossentropy", metrics: Any = ("accuracy",)) -> None:
        self._float = float_model
        self._qparams = {int(v): (float(s), int(z)) for v, (s, z) in qparams.items()}
        self.info = dict(info)
        graph = float_model._graph().expanded()
        specs, _ = executor.node_specs(graph, training=False, logits=False)
        built = _build(graph, specs, self._qparams)
        missing = sorted(set(built.requested) - set(self._qparams))
        if missing:
            raise ValueError(f"QuantizedModel of '{float_model.name}' has no scale for the values {missing} of its "
                             "graph (a file written for another model?).")
        self._qgraph = built.graph
        self._layers = built.layers
        self._conversions = built.conversions
        self._plan = executor.CompiledGraph(self._qgraph, [(None,) + tuple(s[1:]) for s in self._qgraph.input_shapes],
                                            training=False, logits=False, trained=[], rewrite=False)
        self.compile(loss, metrics)

    # ------------------------------------------------------------------ description

    @property
    def name(self) -> str:
        return self._float.name

    @property
    def float_model(self) -> Any:
        """The float32 model this one was quantized from (a copy made by :func:`quantize`)."""
        return self._float

    @property
    def input_shape(self) -> Any:
        return self._float.input_shape

    @property
    def output_shape(self) -> Any:
        return self._float.output_shape

    @property
    def layers(self) -> List[LayerPrecision]:
        """Every layer call of the (expanded) float model and how it runs here."""
        return list(self._layers)

    @property
    def int8_layers(self) -> List[str]:
        """Names of the layers whose arithmetic runs in int8."""
        return [p.name for p in self._layers if p.runs == "int8"]

    @property
    def value_types(self) -> List[str]:
        """Element type of every value of the quantized native network(s), for inspection."""
        return [t for step in self._plan.steps if hasattr(step, "network") for t in step.network.value_types]

    def summary(self, print_fn: Optional[Callable[[str], Any]] = None) -> None:
        """A table of the float model's layers with how each runs (int8, float32, folded...),
        then the inserted conversions and the calibration."""
        emit = print if print_fn is None else print_fn
        rows = [(f"{p.name} ({p.class_name})", utils.shape_str(p.output_shape), str(p.params),
                 p.runs + (f" ({p.detail})" if p.detail else "")) for p in self._layers]
        header = ("Layer (type)", "Output Shape", "Param #", "Runs as")
        widths = [max([len(header[c])] + [len(r[c]) for r in rows]) + 2 for c in range(4)]
        widths[0] = max(widths[0], 32)
        widths[1] = max(widths[1], 20)
        total = sum(widths) + 1

        def fmt(cells: Sequence[str]) -> str:
            return (" " + "".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()

        int8 = self.int8_layers
        computing = [p for p in self._layers if p.runs in ("int8", "float32")]
        lines = [f'Model: "{self.name}" quantized to int8', "_" * total, fmt(header), "=" * total]
        lines += [fmt(r) for r in rows]
        lines += ["=" * total,
                  f"int8 layers: {len(int8)} of {len(computing)} that compute "
                  f"({', '.join(int8) if int8 else 'none'})",
                  f"Float32 layers: {', '.join(p.name for p in computing if p.runs == 'float32') or 'none'}"]
        for text in self._conversions:
            lines.append(text)
        method = self.info.get("method", "?")
        if method == "percentile":
            method += f" {self.info.get('percentile')}"
        lines.append(f"Calibration: {method} on {self.info.get('calibration_samples', '?')} samples; "
                     f"int8 kernels: {ops.build_info()['int8_kernels']}")
        lines.append("_" * total)
        for line in lines:
            emit(line)

    # ------------------------------------------------------------------ inference

    def predict(self, x: Any, batch_size: Optional[int] = None, verbose: Union[int, str] = "auto") -> Any:
        """Outputs for ``x`` (as the float model's ``predict``: float32, ``batch_size`` samples
        at a time, default 32; ``verbose`` 'auto' / 1 a progress bar, 0 nothing)."""
        batch_size = 32 if batch_size is None else utils.positive_int(batch_size, "batch_size", "predict()")
        verbose = check_verbose(verbose, "predict()")
        xs = self._float._prepare_inputs(x, "predict()")
        n = xs[0].shape[0]
        steps = (n + batch_size - 1) // batch_size
        bar = Progbar(steps, verbose=verbose) if verbose else None
        outs: List[List[np.ndarray]] = []
        for step in range(steps):
            part = slice(step * batch_size, (step + 1) * batch_size)
            outs.append(self._plan.predict([utils.as_float32(a[part], "predict()") for a in xs]))
            if bar is not None:
                bar.update(step + 1, finalize=step + 1 == steps)
        joined = [o[0] if len(outs) == 1 else np.concatenate(o, axis=0) for o in zip(*outs)]
        return joined[0] if len(joined) == 1 else joined

    def compile(self, loss: Any = "sparse_categorical_crossentropy", metrics: Any = ("accuracy",)) -> None:
        """The loss and metrics :meth:`evaluate` reports (default: the float model's when it
        was compiled, else sparse categorical cross-entropy and accuracy)."""
        self.loss = losses_module.get(loss)
        self._metric_specs = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
        metrics_module.CompiledMetrics(self._metric_specs)  # checks them now
        self.metrics_names = ["loss"] + list(metrics_module.CompiledMetrics(self._metric_specs).names)

    def evaluate(self, x: Any, y: Any, batch_size: Optional[int] = None, verbose: Union[int, str] = "auto",
                 return_dict: bool = False) -> Union[List[float], Dict[str, float]]:
        """``[loss, metric...]`` over ``(x, y)`` (a dict with ``return_dict=True``), as the
        float model's ``evaluate``."""
        batch_size = 32 if batch_size is None else utils.positive_int(batch_size, "batch_size", "evaluate()")
        verbose = check_verbose(verbose, "evaluate()")
        xs = self._float._prepare_inputs(x, "evaluate()")
        y = np.asarray(y)
        if y.shape[0] != xs[0].shape[0]:
            raise ValueError(f"x and y must contain the same number of samples. Received: x.shape[0]={xs[0].shape[0]}, "
                             f"y.shape[0]={y.shape[0]}.")
        metrics = metrics_module.CompiledMetrics(self._metric_specs)
        metrics.reset()
        n = xs[0].shape[0]
        steps = (n + batch_size - 1) // batch_size
        bar = Progbar(steps, verbose=verbose) if verbose else None
        loss_sum = 0.0
        for step in range(steps):
            part = slice(step * batch_size, (step + 1) * batch_size)
            out = self._plan.predict([utils.as_float32(a[part], "evaluate()") for a in xs])[0]
            yb = y[part]
            loss_sum += float(self.loss(yb, out)) * out.shape[0]
            metrics.update(yb, out, lambda out=out: out, None)
            logs = dict(sorted({**metrics.results(), "loss": loss_sum / min(n, (step + 1) * batch_size)}.items()))
            if bar is not None:
                bar.update(step + 1, logs, finalize=step + 1 == steps)
        results = {"loss": loss_sum / n, **metrics.results()}
        if return_dict:
            return results
        return [results[k] for k in self.metrics_names]

    # ------------------------------------------------------------------ files

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the model (the float model's weights and architecture plus the quantization:
        module docstring); ``pycnn.models.load_model(path)`` returns a QuantizedModel that
        predicts bit for bit as this one."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"QuantizedModel.save() writes pycnn's .npz format. Received: path={path!r}; use a "
                             "name ending in .npz.")
        entry = {"format": FORMAT, "version": FORMAT_VERSION, **self.info,
                 "loss": {"class_name": type(self.loss).__name__, "config": self.loss.get_config()},
                 "metrics": metrics_module.CompiledMetrics(self._metric_specs).config()["metrics"],
                 "values": [[v, s, z] for v, (s, z) in sorted(self._qparams.items())]}
        saving.save_wrapped(self._float, path, "quantization", entry)

    def export(self, filepath: Any, format: str = "onnx", verbose: Optional[bool] = None,
               opset_version: Optional[int] = None) -> None:
        """Write the int8 model as ONNX (QDQ form: QuantizeLinear / DequantizeLinear around
        each int8 op, int8 per-channel weights; pycnn/interop/onnx_export.py), which ONNX
        Runtime runs with its integer kernels. Needs the ``onnx`` package.

        Raises:
            ValueError: another format, or a Python layer in the model (no ONNX form).
            ImportError: onnx is not installed.
        """
        if format != "onnx":
            raise ValueError(f"QuantizedModel.export() writes format='onnx' only. Received: format={format!r}.")
        from .interop import onnx_export
        onnx_export.export(self, filepath, opset=opset_version, verbose=verbose)

    def _graph(self) -> Graph:
        """The quantized graph (what ONNX export walks)."""
        return self._qgraph

    @property
    def inputs(self) -> Any:
        """The float model's symbolic inputs (AttributeError for a Sequential, which has none)."""
        return self._float.inputs

    @property
    def _input_layer(self) -> Any:
        return getattr(self._float, "_input_layer", None)

    def __repr__(self) -> str:
        return f"<QuantizedModel '{self.name}': {len(self.int8_layers)} int8 layers>"


# The int8 ops' weights from a float32 kernel (csrc/quantized.h's rule): defined beside the ops,
# which the ONNX export of quantized models reads too.
per_channel_weights = ops.int8_per_channel_weights


def _load(model: Any, entry: Any, path: str) -> QuantizedModel:
    """saving.load_model's hook for files with a 'quantization' entry."""
    def bad(what: str) -> ValueError:
        return ValueError(f"'{path}' has a damaged quantization entry: {what}.")

    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise bad(f"expected format '{FORMAT}'")
    if entry.get("version") != FORMAT_VERSION:
        raise ValueError(f"'{path}' holds a quantized model of format version {entry.get('version')!r}; this pycnn "
                         f"reads version {FORMAT_VERSION}.")
    values = entry.get("values")
    try:
        qparams = {int(v): (float(s), int(z)) for v, s, z in values}
    except (TypeError, ValueError) as exc:
        raise bad("'values' should be a list of [value, scale, zero_point]") from exc
    for v, (s, z) in qparams.items():
        if not (np.isfinite(s) and s > 0 and 0 <= z <= 255):
            raise bad(f"value {v} has scale {s} and zero point {z}")
    info = {k: entry.get(k) for k in ("method", "percentile", "calibration_samples")}
    try:
        loss_spec = entry.get("loss") or {"class_name": "SparseCategoricalCrossentropy", "config": {}}
        cls = getattr(losses_module, loss_spec["class_name"], None)
        if not (isinstance(cls, type) and issubclass(cls, losses_module.Loss)):
            raise ValueError(f"unknown loss class {loss_spec['class_name']!r}")
        loss = cls(**loss_spec.get("config", {}))
        metrics = [metrics_module.deserialize(m) for m in entry.get("metrics") or [] if m is not None]
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"its loss or metrics ({type(exc).__name__}: {exc})") from exc
    return QuantizedModel(model, qparams, info, loss, metrics)


saving.register_wrapper("quantization", _load)


# ----------------------------------------------------------------------------- helpers

def _calibration_arrays(model: Any, data: Any) -> List[np.ndarray]:
    """The calibration samples as float32 arrays, one per model input, checked."""
    shapes = model._graph().input_shapes
    if len(shapes) > 1:
        if not isinstance(data, (list, tuple)) or len(data) != len(shapes):
            raise ValueError(f"quantize() expected calibration_data as a list of {len(shapes)} arrays (one per model "
                             f"input). Received: {type(data).__name__}"
                             f"{' of length ' + str(len(data)) if isinstance(data, (list, tuple)) else ''}.")
        items = list(data)
    else:
        items = [data]
    arrays = []
    for i, (item, shape) in enumerate(zip(items, shapes)):
        arg = "calibration_data" if len(items) == 1 else f"calibration_data[{i}]"
        if item is None:
            raise TypeError(f"quantize() expected {arg} to be an array of input samples. Received: None.")
        arr = utils.check_real_array(item, "quantize()", arg)
        want = (None,) + tuple(shape[1:])
        if arr.ndim != len(want) or any(w is not None and w != d for w, d in zip(want[1:], arr.shape[1:])):
            expected = "(N, " + ", ".join("None" if d is None else str(d) for d in want[1:]) + ")"
            raise ValueError(f"quantize() expected {arg} of shape {expected} (the model's input shape "
                             f"{utils.shape_str(shape)}). Received: {arg}.shape={arr.shape}.")
        if arr.shape[0] == 0:
            raise ValueError(f"quantize() expected at least one calibration sample. Received: {arg}.shape={arr.shape}.")
        arr = utils.as_float32(arr, "quantize()", arg)
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"quantize() expected finite calibration samples. Received: {arg} holds "
                             f"{int(bad.sum())} NaN or infinite values (the first at index {first}).")
        arrays.append(arr)
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError(f"quantize() expected the same number of samples for every input. Received: "
                         f"{[a.shape[0] for a in arrays]}.")
    return arrays


def _copy_model(model: Any) -> Any:
    """A copy of ``model``: rebuilt from its config (a user's own layers by their classes), its weights copied."""
    custom = {}
    for layer in _all_layers(model):
        cls = type(layer)
        if cls.__module__.split(".")[0] != "pycnn":
            custom[cls.__name__] = cls
    try:
        with layers_base.custom_object_scope(custom):
            copy = layers_base.get(model.class_name).from_config(copy_module.deepcopy(model.get_config()))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"quantize() copies the model from its config, which failed for model '{model.name}': "
                         f"{type(exc).__name__}: {exc}. A layer of your own needs get_config() returning its "
                         "constructor arguments.") from exc
    if not copy.built or getattr(copy, "_batch_input_shape", True) is None:
        copy.build(model.input_shape)
    copy.set_weights([np.array(w, dtype=np.float32, copy=True) for w in model.get_weights()])
    return copy


def _all_layers(model: Any) -> List[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if callable(getattr(layer, "_graph", None)):
            out.extend(_all_layers(layer))
    return out


def _evaluation_setup(model: Any) -> Tuple[Any, Any]:
    """The float model's loss and metrics when it was compiled, else the defaults."""
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        specs = list(model._metrics.specs) or ["accuracy"]
        return model.loss, specs
    return "sparse_categorical_crossentropy", ["accuracy"]


def _qparams(lo: float, hi: float) -> QParams:
    """Scale and zero point of uint8 covering [lo, hi] widened to include 0 (0 is exact)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (hi - lo > 1e-30) or not np.isfinite(hi - lo):
        return 1.0, 0  # a tensor that is always 0
    scale = (hi - lo) / 255.0
    zero_point = int(min(255, max(0, round(-lo / scale))))
    return scale, zero_point


def _calibrate(graph: Graph, values: Sequence[int], xs: Sequence[np.ndarray], batch_size: int, method: str,
               percentile: float) -> Dict[int, Tuple[float, float]]:
    """(lo, hi) of every value in ``values`` over the calibration samples: the float graph
    compiled for inference with those values as its outputs."""
    values = list(values)
    if not values:
        return {}
    cgraph = Graph(graph.input_shapes, graph.nodes, values)
    plan = executor.CompiledGraph(cgraph, [(None,) + tuple(s[1:]) for s in graph.input_shapes], False, False, [])
    n = xs[0].shape[0]

    def batches():
        for start in range(0, n, batch_size):
            yield plan.predict([a[start:start + batch_size] for a in xs])

    lo = {v: np.inf for v in values}
    hi = {v: -np.inf for v in values}
    for outs in batches():
        for v, out in zip(values, outs):
            lo[v] = min(lo[v], float(out.min()))
            hi[v] = max(hi[v], float(out.max()))
    if method == "minmax":
        return {v: (lo[v], hi[v]) for v in values}
    # percentile: a histogram of each value over its full range, then the clipped range
    hist = {v: np.zeros(_HISTOGRAM_BINS, np.int64) for v in values}
    for outs in batches():
        for v, out in zip(values, outs):
            if hi[v] > lo[v]:
                hist[v] += np.histogram(out, bins=_HISTOGRAM_BINS, range=(lo[v], hi[v]))[0]
    ranges = {}
    tail = (100.0 - percentile) / 100.0
    for v in values:
        if not hi[v] > lo[v]:
            ranges[v] = (lo[v], hi[v])
            continue
        edges = np.linspace(lo[v], hi[v], _HISTOGRAM_BINS + 1)
        cum = np.cumsum(hist[v]) / hist[v].sum()
        top = edges[min(_HISTOGRAM_BINS, int(np.searchsorted(cum, 1.0 - tail)) + 1)]
        bottom = edges[int(np.searchsorted(cum, tail))] if lo[v] < 0 else lo[v]
        ranges[v] = (min(bottom, 0.0) if lo[v] < 0 else lo[v], max(top, 0.0))
    return ranges


# ----------------------------------------------------------------------------- the quantized graph

class _NodeLayer(Layer):
    """A node of a quantized graph: one fixed op spec (a quantize or dequantize node, an
    int8 op, or a float32 op with its parameters copied) and its output's sample shape."""

    def __init__(self, spec: ops.OpSpec, sample_shape: Tuple[int, ...], name: str, inputs: int) -> None:
        super().__init__(name=name)
        self._spec = spec
        self._sample_shape = tuple(sample_shape)
        self._multi_input = inputs > 1
        self.built = True

    def spec(self, training: bool = False) -> ops.OpSpec:
        return self._spec

    def compute_output_shape(self, input_shape: Any) -> Tuple[Optional[int], ...]:
        first = input_shape[0] if self._multi_input else input_shape
        return (first[0],) + self._sample_shape


class _Built(NamedTuple):
    graph: Graph
    requested: List[int]           # float values whose ranges the construction used
    layers: List[LayerPrecision]
    conversions: List[str]


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _twin(spec: Optional[ops.OpSpec]) -> Tuple[Optional[str], bool, str]:
    """(the registered uint8 twin of the spec's op, whether it takes quantization attributes,
    "") when the twin supports the spec's attributes, else (None, False, why not)."""
    if spec is None:
        return None, False, "Python layer"
    registered = ops.registered_ops()
    name = f"{spec.kind}_int8"
    if name not in registered:
        return None, False, "no int8 kernel"
    declared = {a.name for a in registered[name].attrs}
    defaults = {a.name: a.default for a in registered[spec.kind].attrs}
    for key, value in spec.attrs.items():
        if key not in declared and _norm(value) != _norm(defaults.get(key)):
            return None, False, f"the int8 kernel has no {key}={_norm(value)!r}"
    weighted = "in_scale" in declared
    if weighted:
        kernel = spec.params[0]
        if kernel is None or int(np.prod(kernel.shape[:-1])) > MAX_INT8_REDUCTION:
            return None, False, f"a reduction over more than {MAX_INT8_REDUCTION} values"
    return name, weighted, ""


def _build(graph: Graph, specs: List[Optional[ops.OpSpec]], qparams: Optional[Dict[int, QParams]]) -> _Built:
    """The quantized graph of ``graph`` (expanded, its inference ``specs``). ``qparams``: the
    scale and zero point of each float value that is quantized, by value index (None: a dry
    run that only lists them in ``requested``)."""
    registered = ops.registered_ops()
    k = graph.num_inputs
    count = k + len(graph.nodes)
    shapes = graph.value_shapes(graph.input_shapes)
    kind = ["input"] * k + [("python" if s is None else s.kind) for s in specs]

    # Identity nodes (folded batchnorm, fused activations, Dropout and Random* at inference)
    # alias their input: one value, several indices; its ranges are measured at the last index.
    root = list(range(count))
    for i, node in enumerate(graph.nodes):
        if kind[k + i] == "identity":
            root[k + i] = root[node.inputs[0]]
    last = {}
    for v in range(count):
        last[root[v]] = v

    # Which values something downstream wants as uint8 (reverse order: readers first).
    twins = [_twin(s) for s in specs]
    want = [False] * count
    for i in range(len(graph.nodes) - 1, -1, -1):
        name, weighted, _ = twins[i]
        spec = specs[i]
        passes = spec is not None and (registered[spec.kind].reads == "any" or (name is not None and not weighted))
        pull = (name is not None and weighted) or (passes and want[k + i])
        if pull:
            for u in graph.nodes[i].inputs:
                want[u] = True
    for v in range(count):
        want[root[v]] = want[root[v]] or want[v]

    nodes: List[GraphNode] = []
    new_shapes: List[Tuple[int, ...]] = [tuple(s[1:]) for s in graph.input_shapes]
    f32: Dict[int, int] = {r: r for r in range(k)}   # root value -> new value holding it as float32
    u8: Dict[int, int] = {}                          # root value -> new value holding it as uint8
    qp: Dict[int, QParams] = {}                      # new uint8 value -> its scale and zero point
    requested: List[int] = []
    conversions: List[str] = []
    layers_out: List[LayerPrecision] = []

    def add(spec: ops.OpSpec, inputs: List[int], shape: Tuple[int, ...], name: str, layer: Any = None) -> int:
        node_layer = layer if layer is not None else _NodeLayer(spec, shape, name, len(inputs))
        nodes.append(GraphNode(node_layer, tuple(inputs)))
        new_shapes.append(tuple(shape))
        return k + len(nodes) - 1

    def params_of(v: int) -> QParams:
        measured = last[root[v]]
        if measured not in requested:
            requested.append(measured)
        return (1.0, 0) if qparams is None else qparams.get(measured, (1.0, 0))

    def reader_name(v: int) -> str:
        return "the input" if root[v] < k else f"'{graph.nodes[root[v] - k].layer.name}'"

    def as_u8(v: int, reader: str) -> int:
        r = root[v]
        if r not in u8:
            scale, zero_point = params_of(v)
            u8[r] = add(ops.OpSpec("quantize", {"scale": scale, "zero_point": zero_point}), [f32[r]],
                        new_shapes[f32[r]], f"quantize_{r}")
            qp[u8[r]] = (scale, zero_point)
            conversions.append(f"quantize: float32 -> uint8 after {reader_name(v)}, before '{reader}' "
                               f"(scale {scale:.4g}, zero point {zero_point})")
        return u8[r]

    def as_f32(v: int, reader: str) -> int:
        r = root[v]
        if r not in f32:
            scale, zero_point = qp[u8[r]]
            f32[r] = add(ops.OpSpec("dequantize", {"scale": scale, "zero_point": zero_point}), [u8[r]],
                         new_shapes[u8[r]], f"dequantize_{r}")
            conversions.append(f"dequantize: uint8 -> float32 after {reader_name(v)}, before {reader}")
        return f32[r]

    def on_bytes(u: int, v: int) -> bool:
        """A pooling op or view from u to v runs on uint8: u is held as uint8, and either
        that is its own type (no float32 copy made yet) or something after v wants uint8."""
        return root[u] in u8 and (root[u] not in f32 or want[root[v]])

    def copied(spec: ops.OpSpec) -> ops.OpSpec:
        return spec._replace(params=tuple(None if p is None else np.array(p, dtype=np.float32, copy=True)
                                          for p in spec.params))

    for i, node in enumerate(graph.nodes):
        v, layer, spec = k + i, node.layer, specs[i]
        shape = tuple(shapes[v][1:])
        ins = list(node.inputs)
        params = int(sum(int(w.size) for w in layer.weights))

        def row(runs: str, detail: str = "", layer: Any = layer, v: int = v, params: int = params) -> None:
            layers_out.append(LayerPrecision(layer.name, layer.class_name, shapes[v], params, runs, detail))

        name, weighted, why_not = twins[i]
        if spec is None:  # a Python layer
            inputs = [as_f32(u, f"'{layer.name}'") for u in ins]
            f32[v] = add(spec, inputs, shape, layer.name, layer=layer)
            row("float32", "Python layer")
        elif spec.kind == "identity":
            own = layer.spec(False)
            producer = graph.nodes[root[v] - k].layer.name if root[v] >= k else "the input"
            if own is not None and own.kind == "batchnorm":
                row(f"folded into {producer}")
            elif own is not None and own.kind == "activation":
                row(f"fused into {producer}")
            else:
                row("identity", "at inference" if layer.class_name != "InputLayer" else "")
        elif name is not None and weighted:
            inp = as_u8(ins[0], layer.name)
            in_scale, in_zp = qp[inp]
            activation = spec.attrs.get("activation", "linear")
            u8_out = want[root[v]] and activation in ("linear", "relu")
            declared = {a.name for a in registered[name].attrs}
            attrs = {key: value for key, value in spec.attrs.items() if key in declared}
            attrs.update(in_scale=in_scale, in_zero_point=in_zp, out_dtype="uint8" if u8_out else "float32")
            if u8_out:
                out_scale, out_zp = params_of(v)
                attrs.update(out_scale=out_scale, out_zero_point=out_zp)
            new = add(copied(ops.OpSpec(name, attrs, spec.params)), [inp], shape, layer.name)
            if u8_out:
                u8[v] = new
                qp[new] = (attrs["out_scale"], attrs["out_zero_point"])
                row("int8", f"uint8 out{', relu fused' if activation == 'relu' else ''}")
            else:
                f32[v] = new
                row("int8", f"float32 out{'' if activation == 'linear' else ', ' + activation}")
        elif name is not None and on_bytes(ins[0], v):
            new = add(ops.OpSpec(name, dict(spec.attrs)), [u8[root[ins[0]]]], shape, layer.name)
            u8[v] = new
            qp[new] = qp[u8[root[ins[0]]]]
            row("int8", "on uint8")
        elif registered[spec.kind].reads == "any" and on_bytes(ins[0], v):
            new = add(spec, [u8[root[ins[0]]]], shape, layer.name)
            u8[v] = new
            qp[new] = qp[u8[root[ins[0]]]]
            row("int8", "view of uint8")
        else:
            inputs = [as_f32(u, f"'{layer.name}'") for u in ins]
            f32[v] = add(copied(spec), inputs, shape, layer.name)
            row("float32", why_not if registered[spec.kind].reads != "any" else "")
    outputs = [as_f32(o, "the model's output") for o in graph.outputs]
    qgraph = Graph(graph.input_shapes, nodes, outputs)
    return _Built(qgraph, requested, layers_out, conversions)
