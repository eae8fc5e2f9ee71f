"""Model files: pycnn's own ``.npz`` (weights, architecture and optimizer state, written
atomically), and the doors to Keras's and ONNX's formats.

Which format: ``model.save(path)`` writes a Keras 3 ``.keras`` file when ``path`` ends in
``.keras`` and pycnn's ``.npz`` otherwise; ``model.save_weights(path)`` writes Keras 3's
weights-file layout (HDF5) when ``path`` ends in ``.h5`` (``m.weights.h5``) and ``.npz``
otherwise. :func:`load_model` and ``load_weights`` read any of them, and legacy Keras
``.h5`` model files, recognising the format by the file's contents. The Keras formats live in
:mod:`pycnn.interop.keras_files` (docs/interop.md); ONNX export in
:mod:`pycnn.interop.onnx_export`. Only ``.npz`` keeps everything an exact resume needs
(optimizer slots and pycnn's random generator).

Layout of the ``.npz``
----------------------
A NumPy ``.npz`` archive (the name is used as given) holding:

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
  (``model.weights`` order), the keys of its optimizer slots (``optimizer.slot_names()``),
  stored as ``optimizer/{k:03d}/{slot}`` arrays, and ``"training_state"``: ``{"rng": ...,
  "epochs_done": n}``, the state of pycnn's random generator (:func:`pycnn.utils.get_rng_state`)
  and the epochs run when the file was written. ``load_model`` restores that generator state,
  so ``load_model(checkpoint)`` then ``fit(..., initial_epoch=n)``, even in a new process,
  shuffles, drops out and updates exactly as the uninterrupted run would have.

Files are written atomically (a temporary file in the same folder, fsync, then
``os.replace``). ``load_weights`` pairs the layers that have weights in order, checks every
class and shape before assigning anything, and refuses a mismatching file with a message
naming the layer and both shapes; layer names may differ (they depend on how many layers
a session has created).

Reading a file nobody vouches for
---------------------------------
A damaged or hostile file is a ``ValueError`` naming the file and what is wrong (``OSError``
for the file system), in bounded memory and time (:mod:`pycnn.interop.untrusted` states the
bounds): only the manifest and the members it names are opened; each member's ``.npy``
header is checked against its declared size, and its shape against the architecture, before
it is decompressed; the architecture is validated (sizes, shapes, nesting) and then built
with its weights counted against what the file stores, before anything large is allocated;
optimizer slots must be finite, of the count the optimizer keeps (``slot_names()``) and
non-negative where they are second moments; step and epoch counters non-negative; the
generator state one NumPy accepts.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from . import initializers
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import utils
from ._tempfiles import write_atomically
from .interop import untrusted
from .rebuilding import rebuild

MANIFEST_KEY = "__pycnn_manifest__"
WEIGHTS_FORMAT = "pycnn.weights"
FORMAT_VERSION = 1
#: The most steps (or epochs) a file may record.
MAX_COUNTER = 2**53

PathLike = Union[str, "os.PathLike[str]"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
    write_atomically(path, lambda f: np.savez(f, **{MANIFEST_KEY: np.array(json.dumps(manifest))}, **arrays))


# ----------------------------------------------------------------------------- formats

def _is_keras_name(path: str) -> bool:
    return path.lower().endswith(".keras")


def _is_h5_name(path: str) -> bool:
    return path.lower().endswith((".h5", ".hdf5"))


def sniff(path: str, what: str = "pycnn weights file") -> str:
    """What the file at ``path`` holds, by its contents: 'hdf5', 'zip', 'npy' or 'other'."""
    untrusted.check_file(path, what)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        raise
    if head.startswith(b"PK"):
        return "zip"
    for offset in (0, 512, 1024, 2048):
        if head[offset:offset + 8] == _HDF5_SIGNATURE:
            return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    return "other"


def save(model: Any, path: PathLike) -> None:
    """``model.save(path)``: ``.keras`` -> Keras 3's format, ``.h5`` refused, else ``.npz``."""
    path = os.fspath(path)
    if _is_keras_name(path):
        from .interop import keras_files
        keras_files.save_model(model, path)
    elif _is_h5_name(path):
        raise ValueError(f"Model.save() writes Keras files as '.keras' (Keras 3's format); legacy HDF5 model files "
                         f"are read but not written. Received: path='{path}'. Use a '.keras' name, a '.npz' name "
                         "for pycnn's own format (exact resume), or save_weights('m.weights.h5').")
    else:
        save_model(model, path)


def save_weights_any(model: Any, path: PathLike) -> None:
    """``model.save_weights(path)``: ``.h5`` -> Keras 3's weights layout, else ``.npz``."""
    path = os.fspath(path)
    if _is_h5_name(path):
        from .interop import keras_files
        keras_files.save_weights(model, path)
    elif _is_keras_name(path):
        raise ValueError(f"save_weights() writes weights only; a '.keras' file holds a whole model. Received: "
                         f"path='{path}'. Use model.save('{path}'), or a name ending in '.weights.h5' or '.npz'.")
    else:
        save_weights(model, path)


def load_weights_any(model: Any, path: PathLike) -> None:
    """``model.load_weights(path)`` for any format (by contents)."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind == "hdf5" or (kind == "zip" and _is_keras_zip(path)):
        from .interop import keras_files
        keras_files.load_weights(model, path)
    else:
        load_weights(model, path)


def _is_keras_zip(path: str) -> bool:
    import zipfile
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist()[:1000])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
    return "config.json" in names and MANIFEST_KEY + ".npy" not in names


# ----------------------------------------------------------------------------- reading .npz

class _Npz:
    """An open pycnn ``.npz``: its manifest (checked), and the arrays it names, each read
    only after its ``.npy`` header has been checked."""

    def __init__(self, path: str) -> None:
        self.path = path
        kind = sniff(path)
        if kind == "npy":
            raise ValueError(f"'{path}' is not a pycnn weights file: it holds a single array, not an .npz archive.")
        self.zf = untrusted.open_zip(path, "pycnn weights file")
        try:
            text = untrusted.read_npy_text(self.zf, MANIFEST_KEY + ".npy", path, "manifest")
            if text is None:
                raise ValueError(f"'{path}' is not a pycnn weights file: it has no '{MANIFEST_KEY}' entry. "
                                 "Write weights with model.save_weights().")
            manifest = untrusted.parse_json(text, path, "manifest")
            if not isinstance(manifest, dict) or manifest.get("format") != WEIGHTS_FORMAT or "layers" not in manifest:
                raise ValueError(f"'{path}' is not a pycnn weights file: its manifest has no format "
                                 f"'{WEIGHTS_FORMAT}'.")
            if manifest.get("version") != FORMAT_VERSION:
                raise ValueError(f"'{path}' is a pycnn file of format version {manifest.get('version')!r}; this "
                                 f"pycnn reads version {FORMAT_VERSION}. Save it again with the pycnn that reads it.")
            _check_layer_entries(manifest["layers"], path)
            shape = manifest.get("input_shape")
            if shape is not None:
                for s in (shape if shape and isinstance(shape[0], list) else [shape]):
                    untrusted.check_sample_shape(s, path, "the input shape", batch_axis=True)
        except BaseException:
            self.zf.close()
            raise
        self.manifest: Dict[str, Any] = manifest
        self._headers: Dict[str, untrusted.NpyHeader] = {}

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> "_Npz":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def header(self, key: str, who: str) -> untrusted.NpyHeader:
        """The checked header of the array ``key`` (its dtype, shape and size)."""
        if key not in self._headers:
            info = untrusted.zip_member(self.zf, key + ".npy", self.path, 8 * untrusted.MAX_WEIGHT_VALUES
                                        + untrusted.MAX_NPY_HEADER, "array")
            if info is None:
                raise ValueError(f"{who}: the file is missing the array '{key}' its manifest lists.")
            self._headers[key] = untrusted.npy_header(self.zf, info, self.path, kinds="fiub")
        return self._headers[key]

    def read(self, key: str, who: str) -> np.ndarray:
        header = self.header(key, who)
        return untrusted.read_npy(self.zf, self.zf.getinfo(key + ".npy"), header, self.path)

    def stored_values(self) -> int:
        """The weight values the manifest's layers declare (headers checked; bounded)."""
        total = 0
        for entry in self.manifest["layers"]:
            for w in entry["weights"]:
                total += self.header(w["key"], f"'{self.path}'").size
                if total > untrusted.MAX_WEIGHT_VALUES:
                    raise untrusted.refuse(self.path, f"declares more than {untrusted.MAX_WEIGHT_VALUES} weight "
                                                      "values; pycnn reads at most that many from a file.")
        return total


def _check_layer_entries(entries: Any, path: str) -> None:
    """The manifest's layer list has the documented shape (a damaged or hand-edited file must
    give a ValueError that says where, not a KeyError deep in the loader)."""
    def bad(where: str, what: str) -> None:
        raise ValueError(f"'{path}' has a damaged manifest: {where} {what}.")

    if not isinstance(entries, list):
        bad("'layers'", f"should be a list, not {type(entries).__name__}")
    if len(entries) > untrusted.MAX_LAYERS:
        bad("'layers'", f"lists {len(entries)} layers, more than {untrusted.MAX_LAYERS}")
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
    with untrusted.reading(path, "pycnn weights file"), _Npz(path) as npz:
        manifest = npz.manifest
        if not model.built or getattr(model, "_batch_input_shape", True) is None:
            shape = manifest.get("input_shape")
            if shape is None or (shape and isinstance(shape[0], list)):
                raise RuntimeError(f"Model '{model.name}' has not been built and '{path}' stores no input shape. "
                                   "Build the model first.")
            with initializers.loading(npz.stored_values(), path):
                model.build(tuple(shape))
        _assign(model, npz)


def _assign(model: Any, npz: _Npz) -> None:
    """Pair the file's layers with the model's, check every class, shape and value, then
    assign (all or nothing)."""
    path, manifest = npz.path, npz.manifest
    prefix = f"Cannot load weights from '{path}' into model '{model.name}'"
    file_layers = [entry for entry in manifest["layers"] if entry["weights"]]
    model_layers = [layer for layer in model.layers if layer.weights]
    if len(file_layers) != len(model_layers):
        raise ValueError(
            f"{prefix}: the file has weights for {len(file_layers)} layers "
            f"({', '.join(e['name'] + ' (' + e['class'] + ')' for e in file_layers[:50])}), but the model has "
            f"{len(model_layers)} layers with weights "
            f"({', '.join(l.name + ' (' + type(l).__name__ + ')' for l in model_layers[:50])}).")
    pairs = []
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
            header = npz.header(w["key"], prefix)
            if header.shape != param.shape:
                raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) expects {w['name']} of shape "
                                 f"{param.shape}, but the file's layer '{entry['name']}' has {w['name']} of "
                                 f"shape {header.shape}.")
            if header.dtype.kind != "f":
                raise ValueError(f"{prefix}: layer '{layer.name}' ({cls}) expects floating-point {w['name']}, but "
                                 f"the file's array '{w['key']}' has dtype {header.dtype}.")
            pairs.append((param, w, entry))
    assignments = []
    for param, w, entry in pairs:  # every header checked: now read (each at most its weight's size)
        value = npz.read(w["key"], prefix)
        if not np.isfinite(value).all():
            raise ValueError(f"{prefix}: the file's {w['name']} of layer '{entry['name']}' holds "
                             f"{int(np.count_nonzero(~np.isfinite(value)))} NaN or infinite values.")
        assignments.append((param, value))
    for param, value in assignments:
        param[...] = value


def load_model(path: PathLike, compile: bool = True, custom_objects: Optional[Dict[str, Any]] = None) -> Any:
    """Rebuild a saved model and load its weights: pycnn's ``.npz`` (``model.save``), a Keras 3
    ``.keras`` file or a legacy Keras ``.h5`` model file (recognised by their contents).

    Args:
        path: the file.
        compile: when the file was saved from a compiled model, compile the rebuilt one the
            same way and restore the optimizer's state (so training continues where it
            stopped); False returns it uncompiled.
        custom_objects: ``{'ClassName': Class}`` for a user's own layers in the model, as
            in Keras (their ``get_config`` went into the file; ``from_config`` rebuilds them).

    Raises:
        FileNotFoundError: no such file.
        ValueError: if the file holds only weights, is damaged or hostile (see the module
            docstring), is of another format version, or names a layer, argument,
            optimizer or loss pycnn lacks.
        ImportError: a Keras HDF5 file without h5py installed (the message says which
            ``pip install`` fixes it).
    """
    path = os.fspath(path)
    kind = sniff(path, "pycnn model file")
    if kind == "hdf5" or (kind == "zip" and (_is_keras_zip(path) or _is_keras_name(path))):
        from .interop import keras_files
        return keras_files.load_model(path, compile=compile, custom_objects=custom_objects)
    with untrusted.reading(path, "pycnn model file"), _Npz(path) as npz:
        manifest = npz.manifest
        if "config" not in manifest:
            raise ValueError(f"'{path}' holds weights only (written by save_weights()), not an architecture. Build "
                             "the model in code and call model.load_weights(path).")
        model_class = manifest.get("model_class", "Sequential")
        untrusted.check_model_config(model_class, manifest["config"], path)
        model = rebuild(model_class, manifest["config"], path, npz.stored_values(), custom_objects,
                        manifest.get("input_shape"))
        _assign(model, npz)
        if compile and "compile" in manifest:
            _restore_compile(model, npz)
    for key, loader in _WRAPPERS.items():
        if key in manifest:
            return loader(model, manifest[key], path)
    return model


def _restore_compile(model: Any, npz: _Npz) -> None:
    path, manifest = npz.path, npz.manifest
    spec = manifest["compile"]
    try:
        if not isinstance(spec, dict):
            raise TypeError(f"'compile' should be an object, not {type(spec).__name__}")
        optimizer = _instance(optimizers_module, optimizers_module.Optimizer, spec["optimizer"])
        loss = _instance(losses_module, losses_module.Loss, spec["loss"])
        # Metrics that could not be saved (user functions) are None and left out.
        metrics, weighted = ([metrics_module.deserialize(m) for m in _list(spec.get(key)) if m is not None]
                             for key in ("metrics", "weighted_metrics"))
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None, weighted_metrics=weighted or None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"Cannot restore the training setup stored in '{path}': {type(exc).__name__}: {exc}") from exc
    state = manifest.get("optimizer_state")
    if state is not None:
        slots, iterations = _optimizer_state(model, optimizer, state, npz)
        optimizer.set_slots(model.weights, slots, iterations)
    training = manifest.get("training_state")
    if training is not None:
        if not isinstance(training, dict) or not isinstance(training.get("rng"), dict):
            raise ValueError(f"'{path}' has a damaged training state: expected an object with an 'rng' state.")
        epochs = training.get("epochs_done", 0)
        _counter(epochs, "training_state.epochs_done", path)
        try:
            utils.set_rng_state(training["rng"])
        except (KeyError, TypeError, ValueError, OverflowError, IndexError) as exc:
            raise ValueError(f"'{path}' has a damaged training state: {type(exc).__name__}: {exc}") from exc
        model._epochs_done = int(epochs)


def _list(value: Any) -> List[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected a list of metrics, not {type(value).__name__}")
    return value


def _counter(value: Any, what: str, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"'{path}' has a damaged {what}: expected an integer in [0, {MAX_COUNTER}]. "
                         f"Received: {value!r:.80}.")
    return value


def _optimizer_state(model: Any, optimizer: Any, state: Any, npz: _Npz) -> Tuple[List[List[np.ndarray]], int]:
    """The saved slots, checked: one list per weight, each empty or of the optimizer's slot
    count, every array of its weight's shape, finite, second moments non-negative."""
    path = npz.path
    if not isinstance(state, dict) or not isinstance(state.get("slots", []), list):
        raise ValueError(f"'{path}' has a damaged optimizer state: expected an object with a 'slots' list.")
    iterations = _counter(state.get("iterations", 0), "optimizer step count ('iterations')", path)
    slot_keys = state.get("slots", [])
    weights = model.weights
    names = optimizer.slot_names()
    if len(slot_keys) != len(weights):
        raise ValueError(f"'{path}' has optimizer state that does not match its model's {len(weights)} weights "
                         f"(it has state for {len(slot_keys)}).")
    where = f"'{path}' has optimizer state"
    for k, keys in enumerate(slot_keys):
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError(f"{where} whose entry {k} is not a list of array names.")
        if keys and len(keys) != len(names):
            raise ValueError(f"{where} with {len(keys)} slots for weight {k}, but {type(optimizer).__name__} keeps "
                             f"{len(names)} per weight ({', '.join(names) or 'none'}).")
        for key in keys:
            header = npz.header(key, where)
            if header.shape != weights[k].shape or header.dtype.kind != "f":
                raise ValueError(f"{where} '{key}' of shape {header.shape} and dtype {header.dtype}; expected "
                                 f"float values of its weight's shape {weights[k].shape}.")
    slots = []
    for k, keys in enumerate(slot_keys):
        arrays = []
        for name, key in zip(names, keys):
            value = npz.read(key, where)
            if not np.isfinite(value).all():
                raise ValueError(f"{where} '{key}' ({name}) holding {int(np.count_nonzero(~np.isfinite(value)))} "
                                 "NaN or infinite values.")
            if name in optimizer.nonnegative_slots and (value < 0).any():
                raise ValueError(f"{where} '{key}' ({name}, a second moment) holding "
                                 f"{int(np.count_nonzero(value < 0))} negative values.")
            arrays.append(value.astype(np.float32))
        slots.append(arrays)
    return slots, iterations


def _instance(module: Any, base: type, spec: Any) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise TypeError(f"expected an object with a 'class_name' for the {base.__name__.lower()}")
    cls = getattr(module, spec["class_name"], None) if not spec["class_name"].startswith("_") else None
    if not (isinstance(cls, type) and issubclass(cls, base)) or cls is base:
        raise ValueError(f"unknown {base.__name__.lower()} class {spec['class_name']!r}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise TypeError(f"the {base.__name__.lower()} config should be an object, not {type(config).__name__}")
    return cls(**config)


# ----------------------------------------------------------------------------- models wrapped by others

#: A file written by :func:`save_wrapped` holds a model plus one more manifest entry, under a
#: key registered here with the function that turns (the loaded model, the entry, the path)
#: into what :func:`load_model` returns: pycnn.quantization registers ``"quantization"``.
_WRAPPERS: Dict[str, Callable[[Any, Any, str], Any]] = {}


def register_wrapper(key: str, loader: Callable[[Any, Any, str], Any]) -> None:
    """Let :func:`load_model` return ``loader(model, manifest[key], path)`` for files that have ``key``."""
    _WRAPPERS[key] = loader


def save_wrapped(model: Any, path: PathLike, key: str, entry: Dict[str, Any]) -> None:
    """Write ``model`` as :func:`save_model` does without its training state (architecture and
    weights), plus ``entry`` under the manifest key ``key`` (registered with :func:`register_wrapper`)."""
    from . import distributed

    if not distributed.is_primary():
        return
    model._require_built("the weights")
    manifest, arrays = _manifest(model)
    manifest["model_class"] = model.class_name
    manifest["config"] = _jsonable(model.get_config())
    manifest[key] = _jsonable(entry)
    _write_npz(os.fspath(path), manifest, arrays)
