"""Whether the optional CUDA backend is usable here, and why not.

The CUDA backend is a separate compiled module, ``pycnn._cuda``, built only on request
(``pip install . -Ccmake.define.PYCNN_CUDA=ON`` with nvcc installed), so that the default
build and a machine without the CUDA driver import pycnn exactly as before. This module is
the Python side's one door to it: everything else asks :func:`why_unavailable` /
:func:`is_available` and never imports ``pycnn._cuda`` itself.

``model.compile(..., device="cuda")`` trains with the CUDA executor (``pycnn._cuda.DeviceNetwork``:
weights and optimizer slots resident on the GPU, docs/cuda.md); ``device="cuda-emulated"`` runs
the same executor on the host emulation of the device runtime (``pycnn._core.EmulatedDeviceNetwork``,
built into every pycnn, for tests). :func:`network_class` gives either class.

Example::

    import pycnn
    if pycnn.cuda.is_available():
        print(pycnn.cuda.device_name())
    else:
        print(pycnn.cuda.why_unavailable())
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from . import ops

_BUILD_HINT = ("Rebuild pycnn with the CUDA backend on a machine with the CUDA toolkit: "
               "pip install . -Ccmake.define.PYCNN_CUDA=ON")

_loaded: Optional[Tuple[Any, Optional[str]]] = None


def _load() -> Tuple[Any, Optional[str]]:
    """(module, None) or (None, the import error's text); tried once per process."""
    global _loaded
    if _loaded is None:
        try:
            from . import _cuda  # type: ignore[attr-defined]
            _loaded = (_cuda, None)
        except ImportError as err:
            _loaded = (None, str(err))
    return _loaded


def is_built() -> bool:
    """True when this pycnn was compiled with the CUDA backend (``build_info()["cuda"]``)."""
    return bool(ops.build_info().get("cuda", False))


def _reason(built: bool, load_error: Optional[str], status: Optional[str]) -> Optional[str]:
    """Why CUDA is unusable, from what was found (None when it is usable)."""
    if not built:
        return f"pycnn was built without CUDA (the default build is CPU-only). {_BUILD_HINT}."
    if load_error is not None:
        return (f"pycnn was built with CUDA, but its CUDA module pycnn._cuda could not be loaded "
                f"({load_error}). Check that the CUDA libraries it was linked with (cuBLAS) are installed.")
    if status is None or status == "ok":
        return None
    if "NoDevice" in status or "no CUDA device" in status:
        return f"no CUDA device was found ({status})."
    if "Driver" in status or "driver" in status:
        return (f"no usable NVIDIA driver: the CUDA runtime reports '{status}'. Install or update the "
                "NVIDIA driver (CUDA 13 needs driver 580 or newer).")
    return f"the CUDA runtime reports '{status}'."


def why_unavailable() -> Optional[str]:
    """A sentence saying why CUDA cannot be used here, or None when a device is usable.

    The reasons, checked in order: pycnn was built without CUDA; ``pycnn._cuda`` failed to
    load; no driver (or one too old for the runtime); no device.
    """
    built = is_built()
    module, error = _load() if built else (None, None)
    status = module.status() if module is not None else None
    return _reason(built, error, status)


def is_available() -> bool:
    """True when pycnn was built with CUDA and a CUDA device is usable."""
    return why_unavailable() is None


def device_count() -> int:
    """Number of usable CUDA devices (0 when CUDA is unavailable for any reason)."""
    if not is_built():
        return 0
    module, _ = _load()
    return int(module.device_count()) if module is not None else 0


def device_name(index: int = 0) -> str:
    """Name and compute capability of CUDA device ``index``, e.g. ``'NVIDIA H200 (sm_90)'``.

    Raises:
        RuntimeError: when CUDA is not usable (the message says why).
        ValueError: when ``index`` is not a valid device index.
    """
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(f"pycnn.cuda.device_name() found no usable CUDA device: {reason}")
    count = device_count()
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"pycnn.cuda.device_name() expected a device index in [0, {count}). "
                         f"Received: index={index!r}.")
    module, _ = _load()
    return str(module.device_name(index))


def build_info() -> dict:
    """How ``pycnn._cuda`` was built (runtime version, architectures, cuBLAS), or {} when it is absent."""
    if not is_built():
        return {}
    module, _ = _load()
    return dict(module.build_info()) if module is not None else {}


def network_class(device: str) -> Any:
    """The DeviceNetwork class of ``device``: ``'cuda'`` (``pycnn._cuda.DeviceNetwork``, a GPU) or
    ``'cuda-emulated'`` (``pycnn._core.EmulatedDeviceNetwork``: the same CUDA executor on the
    host emulation of the device runtime, on any machine; slow, for tests).

    Raises:
        RuntimeError: for ``'cuda'`` when CUDA is not usable here (the message says why).
    """
    if device == "cuda-emulated":
        return ops.EmulatedDeviceNetwork
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(f"CUDA is not usable here: {reason}")
    module, _ = _load()
    return module.DeviceNetwork


__all__ = ["is_available", "is_built", "why_unavailable", "device_count", "device_name", "build_info", "network_class"]
