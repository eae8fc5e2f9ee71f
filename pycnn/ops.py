"""The one door between pycnn's Python code and its compiled core, ``pycnn._core``.

This is the only module that imports ``_core``. What the core holds is described once, in
C++, by the files that implement it: each op registers its kind, named attributes (with types
and defaults), parameters, shape rule, forward and backward (csrc/op_registry.h); activations,
loss components and update components register the same way. :func:`registered_ops` and its
siblings read those registries, so no Python table lists op kinds.

Everything runs as a compiled network (:class:`Network`, csrc/network.h): a model's graph
compiled once, or one op compiled as a one-node network for an eager call (:func:`run`,
:class:`OpCall`). Arguments and results are NHWC float32 arrays; bad arguments raise
``ValueError`` / ``TypeError`` naming the layer, the op and what was expected.

Example::

    from pycnn import ops
    out = ops.run("conv2d", [x], params=[kernel, bias], attrs={"padding": "same", "activation": "relu"})
"""
from __future__ import annotations

import functools
import glob
import os
import sys
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np


def _load_core():
    """Import the compiled module, also when this package is the source checkout.

    Running from the repository root puts the source tree's pycnn/ (which has no compiled
    module unless built in place) ahead of the installed one; then the installed package's
    directory is added to the package's search path so `pip install .` works from anywhere.
    """
    try:
        from . import _core as core
        return core
    except ImportError as err:
        package = sys.modules[__package__]  # pycnn, being imported (not imported again from here)
        here = os.path.dirname(os.path.abspath(__file__))
        for entry in sys.path:
            candidate = os.path.join(os.path.abspath(entry or "."), "pycnn")
            if candidate != here and glob.glob(os.path.join(candidate, "_core*")):
                package.__path__.append(candidate)
                from . import _core as core
                return core
        raise ImportError(
            f"pycnn's compiled core (pycnn._core) was not found next to {here}. Build and install "
            "the package with `pip install .`, or run `bash .ci/dev-build.sh` for an in-tree "
            f"development build. Original error: {err}"
        ) from err


_core = _load_core()

# ----------------------------------------------------------------------------- runtime

def build_info() -> Dict[str, Any]:
    """What the core was compiled with (compiler, OpenMP, SIMD levels, CUDA)."""
    return _core.build_info()


def set_num_threads(n: int) -> None:
    _core.set_num_threads(n)


def get_num_threads() -> int:
    return _core.get_num_threads()


def get_isa() -> str:
    """The SIMD level the kernels run ('baseline', 'avx2', 'avx512')."""
    return _core.get_isa()


def fma_peak(seconds: float = 0.2) -> Dict[str, Any]:
    """The FP32 peak benchmarks divide by: independent register FMA chains on every thread at
    the active SIMD level, about ``seconds`` long -> {gflops, seconds, threads, lanes}."""
    probe = _core.fma_peak(1_000_000)
    iters = max(1, int(1_000_000 * seconds / max(probe["seconds"], 1e-6)))
    return dict(_core.fma_peak(iters))


def set_isa(name: str) -> None:
    """Cap the SIMD level (benchmarks, tests)."""
    _core.set_isa(name)


# ----------------------------------------------------------------------------- registries

class AttrSchema(NamedTuple):
    name: str
    type: str           # 'int', 'ints', 'float', 'floats', 'str'
    default: Any        # None when required
    required: bool


class ParamSchema(NamedTuple):
    name: str
    optional: bool      # may be None (a bias)
    state: bool         # written by the op after a training step (moving statistics)


class OpSchema(NamedTuple):
    """What the C++ op declares about itself (csrc/<family>.cpp)."""
    kind: str
    doc: str
    inputs: int         # 0: two or more
    params: Tuple[ParamSchema, ...]
    attrs: Tuple[AttrSchema, ...]
    reads: str = "float32"        # element type of its inputs: 'float32', 'uint8' (int8 ops) or 'any' (views)
    inference_only: bool = False  # no backward (the int8 ops)


@functools.lru_cache(maxsize=None)
def registered_ops() -> Dict[str, OpSchema]:
    """Every op the core registers, by kind."""
    out = {}
    for kind, info in _core.ops().items():
        out[kind] = OpSchema(kind, info["doc"], info["inputs"],
                             tuple(ParamSchema(p["name"], p["optional"], p["state"]) for p in info["params"]),
                             tuple(AttrSchema(a["name"], a["type"], a["default"], a["required"]) for a in info["attrs"]),
                             info["reads"], info["inference_only"])
    return out


@functools.lru_cache(maxsize=None)
def activations() -> Dict[str, str]:
    """Every activation the core registers: name -> one-line definition."""
    return dict(_core.activations())


@functools.lru_cache(maxsize=None)
def losses() -> Dict[str, str]:
    """The loss components a training step can fuse: name -> definition."""
    return dict(_core.losses())


@functools.lru_cache(maxsize=None)
def updates() -> Dict[str, Dict[str, Any]]:
    """The update components a training step can apply: name -> {doc, hyper, slots}."""
    return dict(_core.updates())


# ----------------------------------------------------------------------------- specs and networks

class OpSpec(NamedTuple):
    """A layer's description of itself as one op: the kind, its named attributes and the live
    parameter arrays in the op's order (None for an absent optional one, e.g. a bias)."""
    kind: str
    attrs: Dict[str, Any]
    params: Tuple[Optional[np.ndarray], ...] = ()

    def with_attrs(self, **changes: Any) -> "OpSpec":
        attrs = dict(self.attrs)
        attrs.update(changes)
        return self._replace(attrs=attrs)


#: A compiled network: ``Network(input_shapes, nodes, outputs, input_grads=False)`` with nodes
#: ``(kind, name, inputs, params, attrs, weights)`` (see csrc/bindings.cpp); methods
#: ``train_step``, ``forward`` -> (outputs, tape), ``backward``, ``commit``, ``predict``;
#: ``value_types``: per value 'float32' or 'uint8' (a quantized network's bytes between its
#: int8 ops; inputs and outputs are always float32).
Network = _core.Network
#: The CUDA executor on the host emulation of the device runtime (pycnn.cuda.network_class).
EmulatedDeviceNetwork = _core.EmulatedDeviceNetwork


def node(spec: OpSpec, name: Optional[str], inputs: Sequence[int], weights: Sequence[int] = ()) -> tuple:
    """The node tuple of ``spec`` reading values ``inputs``; ``weights``: the trained-weight
    index of each parameter (-1: not trained; default none trained)."""
    w = list(weights) if weights else [-1] * len(spec.params)
    return (spec.kind, name, list(inputs), list(spec.params), dict(spec.attrs), w)


def _float32(a: Any, what: str = "an array") -> np.ndarray:
    """A real numeric array-like as C-contiguous float32 (complex, object and string arrays
    are refused rather than silently cast)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"pycnn.ops expected a real numeric array for {what}. Received: dtype={arr.dtype}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


class OpCall:
    """One op compiled for inputs of given per-sample shapes (a one-node network): the eager
    form of every op, for lone layers and tests. ``trained``: per parameter, whether backward
    returns its gradient; ``input_grads``: whether backward returns the inputs' gradients."""

    def __init__(self, spec: OpSpec, input_shapes: Sequence[Sequence[int]], trained: Optional[Sequence[bool]] = None,
                 input_grads: bool = True, name: Optional[str] = None) -> None:
        schema = registered_ops()[spec.kind].params if spec.kind in registered_ops() else ()
        # State the op writes (moving statistics) must be the caller's own float32 array: a
        # converted copy would take the write; the binding says so when it is not.
        params = tuple(p if p is None or _is_exact(p) or (i < len(schema) and schema[i].state)
                       else _float32(p, f"parameter {i} of op '{spec.kind}'") for i, p in enumerate(spec.params))
        self.spec = spec._replace(params=params)
        if trained is None:  # every parameter present, but the state the op writes itself
            trained = [p is not None and not (i < len(schema) and schema[i].state) for i, p in enumerate(params)]
        trained = list(trained)
        self.trained = [bool(t) and p is not None for t, p in zip(trained, params)]
        index, weights = 0, []
        for t in self.trained:
            weights.append(index if t else -1)
            index += bool(t)
        k = len(input_shapes)
        self.network = Network([tuple(s) for s in input_shapes], [node(self.spec, name, range(k), weights)], [k],
                               input_grads)
        self.output_shape = tuple(self.network.output_shapes[0])

    def forward(self, xs: Sequence[np.ndarray]) -> Tuple[np.ndarray, Any]:
        """-> (output, tape for backward)."""
        outs, tape = self.network.forward(list(xs))
        return outs[0], tape

    def backward(self, tape: Any, dout: np.ndarray) -> Tuple[List[Optional[np.ndarray]], List[Optional[np.ndarray]]]:
        """-> (input gradients (None without input_grads), gradient per parameter (None where not trained))."""
        grads = [np.empty_like(p) for p, t in zip(self.spec.params, self.trained) if t]
        dinputs = self.network.backward(tape, [dout], grads)
        it = iter(grads)
        return list(dinputs), [next(it) if t else None for t in self.trained]

    def commit(self, tape: Any) -> None:
        """Write the state a training forward computed (batch normalization's moving statistics)."""
        self.network.commit(tape)


def _is_exact(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous


def run(kind: str, inputs: Sequence[Any], params: Sequence[Any] = (), attrs: Optional[Dict[str, Any]] = None
        ) -> np.ndarray:
    """Op ``kind`` on a batch: ``inputs`` are (N, ...) arrays (converted to float32)."""
    xs = list(inputs)
    shapes = [np.shape(x) for x in xs]
    if not xs or any(len(s) < 1 or s[0] < 1 for s in shapes):
        raise ValueError(f"ops.run('{kind}') expected non-empty batches (N, ...). Received shapes: {shapes}.")
    call = OpCall(OpSpec(kind, dict(attrs or {}), tuple(params)), [s[1:] for s in shapes],
                  trained=[False] * len(params), input_grads=False)
    return call.network.predict(xs)[0]


def apply_update(name: str, hyper: Sequence[float], weights: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                 slots: Sequence[Sequence[np.ndarray]]) -> None:
    """A registered update component (``'adam'``, ``'sgd'``) applied in place to every weight."""
    _core.apply_update((name, [float(h) for h in hyper], list(weights), [list(s) for s in slots]),
                       [_float32(g, "a gradient") for g in grads])


def loss(name: Any, outputs: np.ndarray, targets: np.ndarray, sample_weight: Optional[np.ndarray] = None,
         need_grad: bool = True) -> Tuple[float, int, Optional[np.ndarray]]:
    """A registered loss component on (N, classes) outputs -> (mean loss, hits, gradient);
    ``name`` is the loss's name or ``(name, [hyper-parameters])``."""
    value, hits, grad = _core.loss(name, outputs, targets, sample_weight, need_grad)
    return float(value), int(hits), grad


def int8_per_channel_weights(kernel: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The int8 weights the int8 ops compute from a float32 kernel whose last axis is the
    output channels (csrc/quantized.h): ``(wq, scale)`` with ``scale[f] = max|w[..., f]| / 127``
    (1 for an all-zero channel) and ``wq = clip(rint(w / scale), -127, 127)`` in float64, int8
    of the kernel's shape. Also pycnn.quantization.per_channel_weights; the ONNX export of
    quantized models reads it."""
    w = np.asarray(kernel, dtype=np.float32)
    amax = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0).astype(np.float64)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return np.clip(np.rint(w.astype(np.float64) / scale), -127, 127).astype(np.int8), scale
