"""The seam between pycnn's Python code and its compiled kernels.

This is the only module that imports the compiled ``pycnn._core``: layers, losses,
optimizers and the trainer call the functions below, never ``_core`` itself, so a second
backend (CUDA) plugs in here and nowhere else. Each function looks its kernel up on
``_core`` when it is called, which keeps the seam one indirection thin and lets tests
wrap a kernel (``monkeypatch.setattr(pycnn._core, "conv2d_backward", ...)``).

Arguments and results are those of the bindings (csrc/bindings_*.cpp): NHWC float32
arrays, kernels ``(KH, KW, C, F)``, dense kernels ``(in, out)``; bad arguments raise
``ValueError`` / ``TypeError`` with the expected and the received values.

Merging tensors (concatenate, add, multiply) is memory bound and NumPy does it at memory
speed, so those eager ops are NumPy here; inside the one-call network step they are C++
(csrc/merge.cpp).
"""
from __future__ import annotations

import glob
import os
import sys
from typing import Any, Callable, List, Sequence

import numpy as np


def _load_core():
    """Import the compiled module, also when this package is the source checkout.

    Running from the repository root puts the source tree's pycnn/ (which has no compiled
    module unless built in place) ahead of the installed one; then the installed package's
    directory is added to the package's search path so `pip install .` works from anywhere.
    """
    import pycnn

    try:
        from . import _core as core
        return core
    except ImportError as err:
        here = os.path.dirname(os.path.abspath(__file__))
        for entry in sys.path:
            candidate = os.path.join(os.path.abspath(entry or "."), "pycnn")
            if candidate != here and glob.glob(os.path.join(candidate, "_core*")):
                pycnn.__path__.append(candidate)
                from . import _core as core
                return core
        raise ImportError(
            f"pycnn's compiled core (pycnn._core) was not found next to {here}. Build and install "
            "the package with `pip install .`, or run `bash .ci/dev-build.sh` for an in-tree "
            f"development build. Original error: {err}"
        ) from err


_core = _load_core()


def _kernel(name: str, doc: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_core, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    return call


# Runtime
build_info = _kernel("build_info", "What the core was compiled with (compiler, OpenMP, SIMD levels, CUDA).")
set_num_threads = _kernel("set_num_threads", "Threads every kernel uses.")
get_num_threads = _kernel("get_num_threads", "Threads kernels use.")

# Convolution, dense, pooling (forward and backward side by side, as in csrc/)
conv2d_forward = _kernel("conv2d_forward", "(inp, weight, bias, strides, padding, activation) -> out.")
conv2d_backward = _kernel("conv2d_backward", "-> (dinp or None, dweight, dbias or None).")
conv2d_grouped_forward = _kernel("conv2d_grouped_forward",
                                 "(inp, weight (KH, KW, C // groups, F), bias, strides, padding, dilation_rate, "
                                 "groups, activation) -> out.")
conv2d_grouped_backward = _kernel("conv2d_grouped_backward", "-> (dinp or None, dweight, dbias or None).")
depthwise_conv2d_forward = _kernel("depthwise_conv2d_forward",
                                   "(inp, weight (KH, KW, C, M), bias (C*M), strides, padding, dilation_rate, "
                                   "activation) -> out (N, OH, OW, C*M).")
depthwise_conv2d_backward = _kernel("depthwise_conv2d_backward", "-> (dinp or None, dweight, dbias or None).")
dense_forward = _kernel("dense_forward", "(inp (N, in), weight (in, out), bias, activation) -> out.")
dense_backward = _kernel("dense_backward", "-> (dinp or None, dweight, dbias or None).")
maxpool2d_forward = _kernel("maxpool2d_forward", "(inp, pool_size, strides, padding) -> (out, argmax).")
maxpool2d_backward = _kernel("maxpool2d_backward", "(dout, argmax, input_shape, pool_size, ...) -> dinp.")
avgpool2d_forward = _kernel("avgpool2d_forward", "(inp, pool_size, strides, padding) -> out.")
avgpool2d_backward = _kernel("avgpool2d_backward", "(dout, input_shape, pool_size, ...) -> dinp.")

# Activations and softmax
relu_forward = _kernel("relu_forward", "max(x, 0).")
relu_backward = _kernel("relu_backward", "(dout, out) -> dinp.")
sigmoid_forward = _kernel("sigmoid_forward", "1 / (1 + exp(-x)).")
sigmoid_backward = _kernel("sigmoid_backward", "(dout, out) -> dinp.")
tanh_forward = _kernel("tanh_forward", "tanh(x).")
tanh_backward = _kernel("tanh_backward", "(dout, out) -> dinp.")
softmax_forward = _kernel("softmax_forward", "Softmax over the last axis.")
softmax_backward = _kernel("softmax_backward", "(dout, out) -> dinp through the softmax Jacobian.")
softmax_crossentropy_forward = _kernel("softmax_crossentropy_forward", "(logits, labels) -> (loss, probs).")
softmax_crossentropy_backward = _kernel("softmax_crossentropy_backward", "(probs, labels) -> dlogits.")

# Batch normalization over the last axis (csrc/batchnorm.h)
batchnorm_forward_train = _kernel("batchnorm_forward_train", "(inp, gamma, beta, epsilon) -> (out, mean, var).")
batchnorm_backward_train = _kernel("batchnorm_backward_train", "-> (dinp or None, dgamma or None, dbeta or None).")
batchnorm_forward_infer = _kernel("batchnorm_forward_infer", "(inp, gamma, beta, moving_mean, moving_var, eps) -> out.")
batchnorm_backward_infer = _kernel("batchnorm_backward_infer", "-> (dinp or None, dgamma or None, dbeta or None).")

# Images (TensorFlow's tf.image definitions)
sobel_edges_forward = _kernel("sobel_edges_forward", "(N, H, W, C) -> (N, H, W, C, 2): [dy, dx].")
sobel_edges_backward = _kernel("sobel_edges_backward", "(N, H, W, C, 2) -> (N, H, W, C).")
image_gradient_forward = _kernel("image_gradient_forward", "(images, axis) -> forward differences.")
image_gradient_backward = _kernel("image_gradient_backward", "(dout, axis) -> dinp.")

# Padding, cropping, rescaling, leaky ReLU (csrc/padding.cpp, rescaling.cpp, activation.cpp)
zero_padding2d_forward = _kernel("zero_padding2d_forward", "(inp, (top, bottom, left, right)) -> zero-padded out.")
zero_padding2d_backward = _kernel("zero_padding2d_backward", "(dout, (top, bottom, left, right)) -> cropped dinp.")
cropping2d_forward = _kernel("cropping2d_forward", "(inp, (top, bottom, left, right)) -> cropped out.")
cropping2d_backward = _kernel("cropping2d_backward", "(dout, (top, bottom, left, right)) -> zero-framed dinp.")
rescaling_forward = _kernel("rescaling_forward", "(inp, scale, offset) -> inp * scale + offset (last axis).")
rescaling_backward = _kernel("rescaling_backward", "(dout, scale) -> dout * scale.")
leaky_relu_forward = _kernel("leaky_relu_forward", "(inp, negative_slope) -> x > 0 ? x : slope * x.")
leaky_relu_backward = _kernel("leaky_relu_backward", "(dout, out, negative_slope) -> dinp.")

# ISA dispatch
get_isa = _kernel("get_isa", "The SIMD level the kernels run.")
set_isa = _kernel("set_isa", "Force a SIMD level (benchmarks, tests).")

# Optimizers
adam_update = _kernel("adam_update", "In-place Adam step over lists of variables, gradients and moments.")

# The whole network in one call (csrc/network.h)
network_train_step = _kernel("network_train_step", "(x, labels, nodes, adam=None) -> (loss, correct).")
network_predict = _kernel("network_predict", "(x, nodes, softmax=False) -> out.")


# ----------------------------------------------------------------------------- merging

def concatenate(inputs: Sequence[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate(inputs, axis=axis)


def concatenate_backward(dout: np.ndarray, sizes: Sequence[int], axis: int) -> List[np.ndarray]:
    """Splits ``dout`` along ``axis`` into pieces of ``sizes``."""
    return [np.ascontiguousarray(p) for p in np.split(dout, np.cumsum(sizes)[:-1], axis=axis)]


def add(inputs: Sequence[np.ndarray]) -> np.ndarray:
    out = np.add(inputs[0], inputs[1])
    for x in inputs[2:]:
        out += x
    return out


def multiply(inputs: Sequence[np.ndarray]) -> np.ndarray:
    out = np.multiply(inputs[0], inputs[1])
    for x in inputs[2:]:
        out *= x
    return out


def multiply_backward(dout: np.ndarray, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
    """d/dx_j of prod(x) is the product of the others (computed directly, never divided)."""
    grads = []
    for j in range(len(inputs)):
        g = dout.copy()
        for k, x in enumerate(inputs):
            if k != j:
                g *= x
        grads.append(g)
    return grads
