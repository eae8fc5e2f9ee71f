"""Model files: weights, architecture and optimizer state in one ``.npz``, written atomically.

Layout
------
An uncompressed NumPy ``.npz`` archive (the name is used as given), read with
``allow_pickle=False``, holding:

* ``layer_{i:02d}_{name}/{weight}``: one float32 array per weight, e.g.
  ``layer_00_conv2d/kernel`` (KH, KW, C, F) and ``layer_00_conv2d/bias`` (F,), where ``i``
  is the layer's position in ``model.layers`` and ``weight`` is ``kernel`` or ``bias``;
* ``__pycnn_manifest__``: a 0-d unicode array holding JSON::

      {"format": "pycnn.weights", "version": 1, "model": "lenet",
       "input_shape": [null, 32, 32, 3],
       "layers": [{"index": 0, "name": "conv2d", "class": "Conv2D",
                   "weights": [{"name": "kernel", "key": "layer_00_conv2d/kernel",
                                "shape": [5, 5, 3, 6]}, ...]}, ...]}

``model.save_weights(path)`` writes just that. ``model.save(path)`` adds

* ``"model_class"``: ``"Sequential"`` or ``"Functional"``, and ``"config"``: the model's
  ``get_config()`` (layer classes and arguments; for a graph also every layer call and the
  tensors it reads), from which :func:`load_model` rebuilds the model through the layer
  registry (:func:`pycnn.layers.get`) -- nothing is unpickled;
* when the model is compiled, ``"compile"``: the optimizer's and the loss's class and
  arguments and the metrics, and ``"optimizer_state"``: the step count and, per weight
  (``model.weights`` order), the keys of its optimizer slots, stored as
  ``optimizer/{k:03d}/{slot}`` arrays, and ``"training_state"``: ``{"rng": ..., "epochs_done":
  n}``, the state of pycnn's random generator (:func:`pycnn.utils.get_rng_state`) and the
  epochs run when the file was written. ``load_model`` restores that generator state, so
  ``load_model(checkpoint)`` then ``fit(..., initial_epoch=n)``, even in a new process,
  shuffles, drops out and updates exactly as the uninterrupted run would have.

Files are written atomically (a temporary file in the same folder, fsync, then
``os.replace``). ``load_weights`` pairs the layers that have weights in order, checks every
class and shape before assigning anything, and refuses a mismatching file with a message
naming the layer and both shapes; layer names may differ (they depend on how many layers
a session has created). A file of another format version, or a damaged one, is refused
with a message that says so.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _tempfiles
from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import utils

MANIFEST_KEY = "__pycnn_manifest__"
WEIGHTS_FORMAT = "pycnn.weights"
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------- writing

def _manifest(model: Any) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    arrays: Dict[str, np.ndarray] = {}
    entries = []
    for i, layer in enumerate(model.layers):
        weights = []
        for pname, param in zip(layer.weight_names, layer.weights):
            key = f"layer_{i:02d}_{layer.name}/{pname}"
            arrays[key] = param
            weights.append({"name": pname, "key": key, "shape": list(param.shape)})
        entries.append({"index": i, "name": layer.name, "class": layer.class_name, "weights": weights})
    shape = model.input_shape
    if isinstance(shape, list):
        input_shape: Any = [list(s) for s in shape]
    else:
        input_shape = None if shape is None else list(shape)
    manifest = {"format": WEIGHTS_FORMAT, "version": FORMAT_VERSION, "model": model.name,
                "input_shape": input_shape, "layers": entries}
    return manifest, arrays


def save_weights(model: Any, path: PathLike) -> None:
    """Write every weight of ``model`` to ``path`` atomically (layout: module docstring).

    Raises:
        RuntimeError: if the model has not been built.
    """
    from . import distributed

    if not distributed.is_primary():
        return  # under MPI only rank 0 writes (every rank holds the same weights)
    model._require_built("the weights")
    manifest, arrays = _manifest(model)
    _write_npz(os.fspath(path), manifest, arrays)


def save_model(model: Any, path: PathLike) -> None:
    """Write architecture, weights and (when compiled) optimizer state; see the module docstring.

    Callable initialisers are not stored (they do not matter once weights are loaded).
    """
    from . import distributed

    if not distributed.is_primary():
        return  # under MPI only rank 0 writes (every rank holds the same weights)
    model._require_built("the weights")
    manifest, arrays = _manifest(model)
    manifest["model_class"] = model.class_name
    manifest["config"] = _jsonable(model.get_config())
    if model.compiled:
        manifest["compile"] = {
            "optimizer": {"class_name": type(model.optimizer).__name__, "config": model.optimizer.get_config()},
            "loss": {"class_name": type(model.loss).__name__, "config": model.loss.get_config()},
            **model._metrics.config()}
        slot_keys = []
        for k, slots in enumerate(model.optimizer.get_slots(model.weights)):
            keys = []
            for s, arr in enumerate(slots):
                key = f"optimizer/{k:03d}/{s}"
                arrays[key] = arr
                keys.append(key)
            slot_keys.append(keys)
        manifest["optimizer_state"] = {"iterations": int(model.optimizer.iterations), "slots": slot_keys}
        # What a resumed fit() needs to continue exactly as an uninterrupted one: the random
        # generator that shuffles and draws dropout masks, and how many epochs have run.
        manifest["training_state"] = {"rng": _jsonable(utils.get_rng_state()),
                                      "epochs_done": int(getattr(model, "_epochs_done", 0))}
    _write_npz(os.fspath(path), manifest, arrays)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_npz(path: str, manifest: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> None:
    fd, tmp = _tempfiles.make_temp(path, ".tmp")  # also removes what killed writers left
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{MANIFEST_KEY: np.array(json.dumps(manifest))}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- reading

def _read_npz(path: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No weights file at '{path}'.")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # truncated or foreign files
    # The file is opened here, not by np.load: np.load leaves its own handle open when a file
    # that starts like a zip archive turns out to be damaged (a ResourceWarning, and on
    # Windows a file that cannot be deleted). Every array is read before the file closes.
    try:
        f = open(path, "rb")
    except OSError as exc:  # a folder, no permission
        raise ValueError(f"'{path}' is not a readable pycnn weights file ({type(exc).__name__}: {exc}).") from exc
    with f:
        try:
            loaded = np.load(f, allow_pickle=False)
        except unreadable as exc:
            raise ValueError(f"'{path}' is not a readable pycnn weights file ({type(exc).__name__}: {exc}).") from exc
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"'{path}' is not a pycnn weights file: it holds a single array, not an .npz archive.")
        with loaded as data:
            if MANIFEST_KEY not in data.files:
                raise ValueError(f"'{path}' is not a pycnn weights file: it has no '{MANIFEST_KEY}' entry. "
                                 "Write weights with model.save_weights().")
            try:
                manifest = json.loads(str(data[MANIFEST_KEY]))
                arrays = {k: data[k] for k in data.files if k != MANIFEST_KEY}
            except unreadable as exc:
                raise ValueError(f"'{path}' is not a readable pycnn weights file ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != WEIGHTS_FORMAT or "layers" not in manifest:
        raise ValueError(f"'{path}' is not a pycnn weights file: its manifest has no format '{WEIGHTS_FORMAT}'.")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"'{path}' is a pycnn file of format version {manifest.get('version')!r}; this pycnn "
                         f"reads version {FORMAT_VERSION}. Save it again with the pycnn that reads it.")
    _check_layer_entries(manifest["layers"], path)
    return manifest, arrays


def _check_layer_entries(entries: Any, path: str) -> None:
    """The manifest's layer list has the documented shape (a damaged or hand-edited file must
    give a ValueError that says where, not a KeyError deep in the loader)."""
    def bad(where: str, what: str) -> None:
        raise ValueError(f"'{path}' has a damaged manifest: {where} {what}.")

    if not isinstance(entries, list):
        bad("'layers'", f"should be a list, not {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            bad(f"layers[{i}]", f"should be an object, not {type(entry).__name__}")
        for key in ("name", "class"):
            if not isinstance(entry.get(key), str):
                bad(f"layers[{i}]", f"has no string '{key}'")
        weights = entry.get("weights")
        if not isinstance(weights, list):
            bad(f"layers[{i}] ('{entry['name']}')", "has no 'weights' list")
        for j, w in enumerate(weights):
            if not (isinstance(w, dict) and isinstance(w.get("name"), str) and isinstance(w.get("key"), str)):
                bad(f"layers[{i}] ('{entry['name']}') weights[{j}]", "should be an object with string 'name' and 'key'")


def load_weights(model: Any, path: PathLike) -> None:
    """Load weights written by ``save_weights`` (or ``save``) into ``model``.

    An unbuilt Sequential model is first built with the input shape stored in the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pycnn weights file, or its layers/shapes do not match this
            model (nothing is changed then); the message names the layer and shapes.
    """
    path = os.fspath(path)
    manifest, arrays = _read_npz(path)
    if not model.built or getattr(model, "_batch_input_shape", True) is None:
        shape = manifest.get("input_shape")
        if shape is None or (shape and isinstance(shape[0], list)):
            raise RuntimeError(f"Model '{model.name}' has not been built and '{path}' stores no input shape. "
                               "Build the model first.")
        model.build(tuple(shape))
    _assign(model, manifest, arrays, path)


def _assign(model: Any, manifest: Dict[str, Any], arrays: Dict[str, np.ndarray], path: str) -> None:
    prefix = f"Cannot load weights from '{path}' into model '{model.name}'"
    file_layers = [entry for entry in manifest["layers"] if entry["weights"]]
    model_layers = [layer for layer in model.layers if layer.weights]
    if len(file_layers) != len(model_layers):
        raise ValueError(
            f"{prefix}: the file has weights for {len(file_layers)} layers "
            f"({', '.join(e['name'] + ' (' + e['class'] + ')' for e in file_layers)}), but the model has "
            f"{len(model_layers)} layers with weights "
            f"({', '.join(l.name + ' (' + type(l).__name__ + ')' for l in model_layers)}).")
    assignments = []
    for entry, layer in zip(file_layers, model_layers):
        cls = layer.class_name
        if entry["class"] != cls:
            raise ValueError(f"{prefix}: the model's layer '{layer.name}' is a {cls}, but the matching layer "
                             f"in the file, '{entry['name']}', is a {entry['class']}.")
        # A nested model's weights are named "layer/weight" after layer names, which depend on
        # how many layers a session created: compare the weights' own names only.
        file_names = [w["name"].split("/")[-1] for w in entry["weights"]]
        if file_names != [n.split("/")[-1] for n in layer.weight_names]:
            raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) has weights {layer.weight_names}, but the "
                             f"file's layer '{entry['name']}' has {file_names} (use_bias differs?).")
        for w, param in zip(entry["weights"], layer.weights):
            if w["key"] not in arrays:
                raise ValueError(f"{prefix}: the file is missing the array '{w['key']}' its manifest lists.")
            value = arrays[w["key"]]
            if value.shape != param.shape:
                raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) expects {w['name']} of shape "
                                 f"{param.shape}, but the file's layer '{entry['name']}' has {w['name']} of "
                                 f"shape {value.shape}.")
            if value.dtype.kind != "f":
                raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) expects floating-point {w['name']}, but "
                                 f"the file's array '{w['key']}' has dtype {value.dtype}.")
            if not np.isfinite(value).all():
                raise ValueError(f"{prefix}: the file's {w['name']} of layer '{entry['name']}' holds "
                                 f"{int(np.count_nonzero(~np.isfinite(value)))} NaN or infinite values.")
            assignments.append((param, value))
    for param, value in assignments:
        param[...] = value


def load_model(path: PathLike, compile: bool = True, custom_objects: Optional[Dict[str, Any]] = None) -> Any:
    """Rebuild a model written by ``model.save`` and load its weights.

    Args:
        path: the file.
        compile: when the file was saved from a compiled model, compile the rebuilt one the
            same way and restore the optimizer's state (so training continues where it
            stopped); False returns it uncompiled.
        custom_objects: ``{'ClassName': Class}`` for a user's own layers in the model, as
            in Keras (their ``get_config`` went into the file; ``from_config`` rebuilds them).

    Raises:
        ValueError: if the file holds only weights (written by ``save_weights``), is damaged,
            is of another format version, or names a layer, optimizer or loss pycnn lacks.
    """
    path = os.fspath(path)
    manifest, arrays = _read_npz(path)
    if "config" not in manifest:
        raise ValueError(f"'{path}' holds weights only (written by save_weights()), not an architecture. Build the "
                         "model in code and call model.load_weights(path).")
    model_class = manifest.get("model_class", "Sequential")
    try:
        with layers_module.base.custom_object_scope(custom_objects):
            model = layers_module.get(model_class).from_config(manifest["config"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"Cannot rebuild the model stored in '{path}': {type(exc).__name__}: {exc}") from exc
    if not hasattr(model, "compile"):
        raise ValueError(f"Cannot rebuild the model stored in '{path}': its class {model_class!r} is not a model.")
    if not model.built or getattr(model, "_batch_input_shape", True) is None:
        if manifest.get("input_shape") is None:
            raise ValueError(f"'{path}' stores no input shape for model '{model.name}'.")
        model.build(tuple(manifest["input_shape"]))
    _assign(model, manifest, arrays, path)
    if compile and "compile" in manifest:
        _restore_compile(model, manifest, arrays, path)
    return model


def _restore_compile(model: Any, manifest: Dict[str, Any], arrays: Dict[str, np.ndarray], path: str) -> None:
    spec = manifest["compile"]
    try:
        optimizer = _instance(optimizers_module, optimizers_module.Optimizer, spec["optimizer"])
        loss = _instance(losses_module, losses_module.Loss, spec["loss"])
        # Metrics that could not be saved (user functions) are None and left out.
        metrics, weighted = ([metrics_module.deserialize(m) for m in spec.get(key) or [] if m is not None]
                             for key in ("metrics", "weighted_metrics"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"Cannot restore the training setup stored in '{path}': {type(exc).__name__}: {exc}") from exc
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None, weighted_metrics=weighted or None)
    state = manifest.get("optimizer_state")
    if state is not None:
        slot_keys = state.get("slots", [])
        if len(slot_keys) != len(model.weights) or any(k not in arrays for keys in slot_keys for k in keys):
            raise ValueError(f"'{path}' has optimizer state that does not match its model's "
                             f"{len(model.weights)} weights.")
        optimizer.set_slots(model.weights, [[arrays[k] for k in keys] for keys in slot_keys],
                            int(state.get("iterations", 0)))
    training = manifest.get("training_state")
    if training is not None:
        try:
            utils.set_rng_state(training["rng"])
            model._epochs_done = int(training.get("epochs_done", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"'{path}' has a damaged training state: {type(exc).__name__}: {exc}") from exc


def _instance(module: Any, base: type, spec: Dict[str, Any]) -> Any:
    cls = getattr(module, spec["class_name"], None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"unknown {base.__name__.lower()} class {spec['class_name']!r}")
    return cls(**spec.get("config", {}))
