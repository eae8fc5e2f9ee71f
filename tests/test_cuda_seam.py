"""The Python seam of the optional CUDA backend (pycnn/cuda.py) and compile(device=...).

On a machine without a CUDA build or without a device (CI, and the machines this suite is
developed on) CUDA must be reported unavailable with a reason, and compile(device='cuda')
must raise RuntimeError saying why, never crash. The reason classification is tested on
its own with the states a GPU machine would report.
"""
from __future__ import annotations

import numpy as np
import pytest

import pycnn
from pycnn import cuda, layers


def tiny_model():
    return pycnn.Sequential([layers.Input((4, 4, 1)), layers.Flatten(), layers.Dense(2, activation="softmax")])


def test_build_info_reports_cuda_as_a_bool():
    info = pycnn.build_info()
    assert isinstance(info["cuda"], bool)
    assert cuda.is_built() is info["cuda"]


@pytest.mark.skipif(cuda.is_available(), reason="a CUDA device is usable here")
def test_unavailable_here_with_a_reason():
    assert cuda.is_available() is False
    reason = cuda.why_unavailable()
    assert isinstance(reason, str) and reason
    if not pycnn.build_info()["cuda"]:
        assert "built without CUDA" in reason and "PYCNN_CUDA=ON" in reason
        assert cuda.build_info() == {}
    assert cuda.device_count() == 0
    with pytest.raises(RuntimeError, match="found no usable CUDA device"):
        cuda.device_name()


@pytest.mark.skipif(cuda.is_available(), reason="a CUDA device is usable here")
def test_compile_device_cuda_raises_why():
    model = tiny_model()
    with pytest.raises(RuntimeError, match=r"device='cuda', but CUDA is not usable here: .*Use device='cpu'") as err:
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", device="cuda")
    assert cuda.why_unavailable() in str(err.value)
    assert not model.compiled  # a failed compile leaves the model uncompiled
    with pytest.raises(RuntimeError, match="not usable"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", device="CUDA")


def test_compile_device_cpu_is_the_default_and_trains():
    x = np.random.default_rng(0).standard_normal((8, 4, 4, 1)).astype(np.float32)
    y = np.arange(8) % 2
    for device in ("cpu", "CPU", None):
        model = tiny_model()
        kwargs = {} if device is None else {"device": device}
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", **kwargs)
        before = model.get_weights()
        losses = model.fit(x, y, epochs=20, verbose=0).history["loss"]
        assert losses[-1] < losses[0]
        assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_compile_device_validation():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expected device 'cpu', 'cuda' or 'cuda-emulated'. Received: device='gpu'"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", device="gpu")
    with pytest.raises(TypeError, match=r"device to be a string.*Received: device=0"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", device=0)


def test_compile_device_cuda_with_a_usable_device_trains_on_its_device_network(monkeypatch):
    # A usable device as pycnn.cuda would report one, whose module's DeviceNetwork is the
    # emulated one: compile(device='cuda') takes the GPU path down to the executor's class.
    class FakeCuda:
        DeviceNetwork = pycnn.ops.EmulatedDeviceNetwork

    monkeypatch.setattr(cuda, "why_unavailable", lambda: None)
    monkeypatch.setattr(cuda, "_load", lambda: (FakeCuda, None))
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", device="cuda")
    x = np.random.default_rng(0).standard_normal((8, 4, 4, 1)).astype(np.float32)
    losses = model.fit(x, np.arange(8) % 2, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert model._step.device.network_class is FakeCuda.DeviceNetwork


def test_set_device_is_the_compile_default():
    try:
        pycnn.set_device("cuda-emulated")
        model = tiny_model()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        assert model._step.device is not None and model._step.device.device == "cuda-emulated"
        with pytest.raises(ValueError, match="set_device\\(\\) expected device 'cpu', 'cuda' or 'cuda-emulated'"):
            pycnn.set_device("tpu")
    finally:
        pycnn.set_device("cpu")
    model = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert model._step.device is None


@pytest.mark.parametrize("built,load_error,status,expect", [
    (False, None, None, "built without CUDA"),
    (True, "libcublas.so.13: cannot open shared object file", None, "could not be loaded (libcublas.so.13"),
    (True, None, "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version",
     "no usable NVIDIA driver"),
    (True, None, "cudaErrorNoDevice: no CUDA-capable device is detected", "no CUDA device was found"),
    (True, None, "no CUDA device found", "no CUDA device was found"),
    (True, None, "cudaErrorUnknown: unknown error", "the CUDA runtime reports"),
])
def test_reason_classification(built, load_error, status, expect):
    assert expect in cuda._reason(built, load_error, status)


def test_reason_none_when_usable():
    assert cuda._reason(True, None, "ok") is None
