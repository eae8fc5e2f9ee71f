"""Models in other formats: Keras 3 ``.keras`` and ``.weights.h5``, legacy Keras ``.h5``, ONNX.

One job per module:

* :mod:`pycnn.interop.untrusted`: the limits and checked readers every file reader uses (JSON,
  zip members, ``.npy`` headers, HDF5 datasets), so that a damaged or hostile file is a
  ``ValueError`` naming the file, in bounded memory and time;
* :mod:`pycnn.interop.keras_config`: Keras 3 (and Keras 2) architecture and training configs
  to pycnn's and back;
* :mod:`pycnn.interop.keras_files`: the containers: the ``.keras`` zip, Keras 3's weights-file
  layout in HDF5, the legacy ``.h5`` model file;
* :mod:`pycnn.interop.onnx_export`: a model's compiled graph as an ONNX model.

``pycnn.models.load_model``, ``Model.save`` / ``save_weights`` / ``load_weights`` and
``Model.export`` call these; docs/interop.md describes the formats. pycnn's own ``.npz``
lives in :mod:`pycnn.saving`. h5py and onnx are optional extras (``pip install
'pycnn[keras]'``, ``pip install 'pycnn[onnx]'``), imported only when a file needs them.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which ``pip install`` provides it.

    Raises:
        ImportError: naming the package and the pycnn extra that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the '{module}' package, which is not installed. Install it with "
                          f"`pip install 'pycnn[{extra}]'` (or `pip install {module}`).") from exc
