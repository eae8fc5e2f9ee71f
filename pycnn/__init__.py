"""pycnn: small, fast convolutional neural networks on the CPU.

C++/OpenMP kernels (NHWC float32) under a Keras-style API::

    import pycnn
    from pycnn import layers

    model = pycnn.Sequential([
        layers.Input((32, 32, 3)),
        layers.Conv2D(6, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
"""
from __future__ import annotations

import os as _os

# OpenMP threads that spin while idle collapse when another process competes for the
# cores (measured here: a LeNet step goes from ~9 ms to 50-140 ms with one busy neighbour
# when threads spin, even briefly), so idle threads sleep unless the user chose otherwise.
# The runtime reads this when it is loaded, i.e. when _core is imported just below.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")



from . import ops as _ops  # noqa: E402  (loads the compiled core; the only module that imports it)

from ._version import __version__  # noqa: E402  (one source: pycnn/_version.py)

from . import (activations, augment, callbacks, cuda, datasets, image, initializers, layers, losses,  # noqa: E402
               distributed, metrics, models, optimizers, plotting, quantization, regularizers, utils, viz)
from .layers import Input  # noqa: E402
from .models import Model, Sequential, load_model  # noqa: E402
from .trainer import NonFiniteLossError, set_device  # noqa: E402
from .utils import set_random_seed  # noqa: E402


def build_info() -> dict:
    """What the native core was compiled with: version, compiler, OpenMP, SIMD levels, CUDA."""
    return dict(_ops.build_info())


def set_num_threads(n: int) -> None:
    """Set the number of threads every kernel uses (default: OMP_NUM_THREADS or all cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads() expected a positive integer. Received: n={n!r}.")
    _ops.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads kernels use."""
    return _ops.get_num_threads()


__all__ = ["build_info", "set_num_threads", "get_num_threads", "__version__", "Sequential", "Model", "Input",
           "load_model", "NonFiniteLossError", "set_device", "set_random_seed", "layers", "models", "losses", "optimizers", "callbacks",
           "activations", "initializers", "utils", "cuda", "datasets", "augment", "plotting", "viz", "image",
           "quantization"]
