"""Keras's files: the ``.keras`` zip, Keras 3's weights-file layout (HDF5) and legacy ``.h5``
model files, read and (the first two) written. Needs h5py (``pip install 'pycnn[keras]'``).

``.keras`` (Keras 3): a zip holding ``config.json`` (the model entry:
``{"module", "class_name", "config", "build_config", "compile_config"}``), ``metadata.json``
(``{"keras_version", "date_saved"}``) and ``model.weights.h5``.

The weights file (``model.weights.h5`` in the zip, or ``m.weights.h5`` from
``save_weights``) names layers by class, not by layer name, as Keras's saving walks the
model: ``layers/<snake_case(class)>[_<n>]/vars/<i>`` for the i-th variable of each layer of
``model.layers`` (a counter per class name within one model; a Sequential leaves its
InputLayer out; a nested model's layers under ``layers/<its path>/layers/``), variables in
creation order (trainable first: kernel, bias; gamma, beta, moving_mean, moving_variance),
and ``optimizer/vars/<i>``: the step count, the learning rate (absent with a schedule), then
per trainable weight the optimizer's slots (Adam: momentum, velocity; SGD: momentum;
RMSprop: velocity). Each ``vars`` group carries the object's name as an attribute.

Legacy ``.h5`` (``model.save('m.h5')`` in Keras 2 and 3): root attributes ``model_config``
and ``training_config`` (JSON), weights under ``model_weights/<layer name>/`` listed by the
group's ``weight_names`` attribute (a layer's trainable weights, then its non-trainable ones).
Read only; its optimizer weights are not restored (the model is compiled afresh).

Every reader follows pycnn/interop/untrusted.py: only what the config names is opened,
every dataset's shape is compared with the rebuilt architecture before it is read, and the
architecture is built with its weights counted against what the file declares.
"""
from __future__ import annotations

import datetime
import io
import os
import shutil
import tempfile
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .. import _version
from . import keras_config, require, untrusted

CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "model.weights.h5"
#: The largest weights member pycnn extracts from a ``.keras`` zip (8 bytes per value for
#: float64 weights, plus HDF5's own structures).
MAX_WEIGHTS_BYTES = 8 * untrusted.MAX_WEIGHT_VALUES + 2**26
#: Weights members up to this size are read into memory; larger ones into a temporary file.
IN_MEMORY_BYTES = 2**26
#: The most variables one layer (or the optimizer) may list.
MAX_VARS = 1_000_000


def _h5py() -> Any:
    return require("h5py", "keras", "Reading and writing Keras files")


# ============================================================================ reading

def load_model(path: str, compile: bool = True, custom_objects: Optional[Dict[str, Any]] = None) -> Any:
    """A model from a Keras 3 ``.keras`` file or a legacy Keras ``.h5`` model file (see the
    module docstring), compiled from the file's training config when it has one and
    ``compile`` is True."""
    _h5py()
    with untrusted.reading(path, "Keras model file"):
        with open(path, "rb") as f:
            is_zip = f.read(2) == b"PK"
        if is_zip:
            return _load_keras_zip(path, compile, custom_objects)
        return _load_legacy_h5(path, compile, custom_objects)


def _load_keras_zip(path: str, compile: bool, custom_objects: Optional[Dict[str, Any]]) -> Any:
    with untrusted.open_zip(path, "Keras file") as zf:
        info = untrusted.zip_member(zf, CONFIG_NAME, path, untrusted.MAX_TEXT_BYTES, "config")
        if info is None:
            raise untrusted.refuse(path, f"is not a Keras file: it has no '{CONFIG_NAME}'.")
        document = untrusted.parse_json(untrusted.read_member(zf, info, path), path, CONFIG_NAME)
        meta = untrusted.zip_member(zf, METADATA_NAME, path, 2**20, "metadata")
        if meta is not None:
            untrusted.parse_json(untrusted.read_member(zf, meta, path), path, METADATA_NAME)
        spec = keras_config.model_from_keras(document, path)
        training = keras_config.compile_from_keras(document.get("compile_config"), path) if compile else None
        with _weights_member(zf, path) as (h5, size):
            store = _Keras3Store(h5, path, size)
            model = _rebuild(spec, path, store.declared_values(spec), custom_objects)
            store.assign(model, store.spec_groups(spec, model))
            if training is not None:
                model.compile(**training)
                store.restore_optimizer(model)
    return model


class _weights_member:
    """Context manager: the zip's weights member opened with h5py (in memory when small,
    else copied to a temporary file), and its size."""

    def __init__(self, zf: zipfile.ZipFile, path: str) -> None:
        self.zf, self.path = zf, path
        self.tmp: Any = None
        self.h5: Any = None

    def __enter__(self) -> Tuple[Any, int]:
        info = untrusted.zip_member(self.zf, WEIGHTS_NAME, self.path, MAX_WEIGHTS_BYTES, "weights file")
        if info is None:
            other = "model.weights.npz" in self.zf.namelist()[:1000]
            raise untrusted.refuse(self.path, f"has no '{WEIGHTS_NAME}'" + (
                " (its weights are in Keras's npz store, which pycnn does not read)." if other else "."))
        if info.file_size <= IN_MEMORY_BYTES:
            source: Any = io.BytesIO(untrusted.read_member(self.zf, info, self.path))
        else:
            self.tmp = tempfile.TemporaryFile()
            try:
                with self.zf.open(info) as src:
                    copied = _copy(src, self.tmp, info.file_size + 1)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                raise untrusted.refuse(self.path, f"has a damaged '{WEIGHTS_NAME}' ({exc}).") from exc
            if copied != info.file_size:
                raise untrusted.refuse(self.path, f"has a damaged '{WEIGHTS_NAME}': {copied} bytes instead of "
                                                  f"{info.file_size}.")
            self.tmp.seek(0)
            source = self.tmp
        self.h5 = untrusted.h5_open(source, self.path)
        return self.h5, info.file_size

    def __exit__(self, *exc: Any) -> None:
        if self.h5 is not None:
            self.h5.close()
        if self.tmp is not None:
            self.tmp.close()


def _copy(src: Any, dst: Any, limit: int) -> int:
    total = 0
    while total < limit:
        chunk = src.read(min(1 << 24, limit - total))
        if not chunk:
            break
        dst.write(chunk)
        total += len(chunk)
    return total


def _rebuild(spec: keras_config.ModelSpec, path: str, budget: int, custom_objects: Optional[Dict[str, Any]]) -> Any:
    from .. import rebuilding

    untrusted.check_model_config(spec.class_name, spec.config, path)
    return rebuilding.rebuild(spec.class_name, spec.config, path, budget, custom_objects)


def _unique(name: str, used: Dict[str, int]) -> str:
    """Keras's ``_get_unique_name``: 'dense', then 'dense_1', 'dense_2'..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def layer_groups(model: Any, base: str = "") -> List[Tuple[str, Any]]:
    """``(group path, layer)`` for every layer of ``model`` in the order and with the names
    Keras's saving gives them (nested models: their own group, then their layers')."""
    out: List[Tuple[str, Any]] = []
    stack = [(model, base)]
    while stack:
        current, prefix = stack.pop()
        used: Dict[str, int] = {}
        inner = []
        for layer in current.layers:
            group = f"{prefix}layers/{_unique(keras_config.to_snake_case(keras_config.keras_class(layer)), used)}"
            out.append((group, layer))
            if layer.class_name in keras_config.MODELS:
                inner.append((layer, group + "/"))
        stack.extend(reversed(inner))
    return out


class _Keras3Store:
    """A weights file in Keras 3's layout, read through checked accessors only."""

    def __init__(self, h5: Any, path: str, size: int) -> None:
        self.h5, self.path, self.size = h5, path, size
        self._declared_bytes = 0

    def _vars(self, group: str) -> Optional[Any]:
        return untrusted.h5_get(self.h5, f"{group}/vars", self.path, required=False)

    def _count(self, vars_group: Any, where: str) -> int:
        """How many variables ``vars`` holds: datasets '0'..'n-1' (anything else is refused)."""
        try:
            n = len(vars_group)
        except (OSError, ValueError, TypeError) as exc:
            raise untrusted.refuse(self.path, f"has a damaged group '{where}' ({exc}).") from exc
        if n > MAX_VARS:
            raise untrusted.refuse(self.path, f"lists {n} variables in '{where}'.")
        return n

    def _dataset(self, group: Any, i: int, kinds: str = "f") -> Any:
        dset = untrusted.h5_dataset(group, str(i), self.path, kinds)
        self._declared_bytes += int(np.prod(dset.shape, dtype=object)) * dset.dtype.itemsize
        if self._declared_bytes > max(self.size, 1):
            raise untrusted.refuse(self.path, f"declares {untrusted.size_text(self._declared_bytes)} of weights in "
                                              f"a {untrusted.size_text(self.size)} weights file (compressed "
                                              "datasets cannot expand past the file).")
        return dset

    def spec_groups(self, spec: keras_config.ModelSpec, model: Any) -> List[Tuple[str, Any]]:
        """``(group, pycnn layer)`` from the file's config (Keras's order and classes), the
        layers found by name in the rebuilt ``model``."""
        out: List[Tuple[str, Any]] = []
        stack = [(spec, model, "")]
        while stack:
            current, pmodel, prefix = stack.pop()
            by_name = {layer.name: layer for layer in pmodel.layers}
            used: Dict[str, int] = {}
            for keras_cls, name, nested in current.layer_classes:
                group = f"{prefix}layers/{_unique(keras_config.to_snake_case(keras_cls), used)}"
                layer = by_name.get(name)
                if layer is None:  # a layer no call reaches: Keras saves none for it either
                    continue
                out.append((group, layer))
                if nested is not None:
                    stack.append((nested, layer, group + "/"))
        return out

    def declared_values(self, spec: keras_config.ModelSpec) -> int:
        """The weight values the file declares for the config's layers (datasets checked)."""
        total = 0
        stack = [(spec, "")]
        while stack:
            current, prefix = stack.pop()
            used: Dict[str, int] = {}
            for keras_cls, _, nested in current.layer_classes:
                group = f"{prefix}layers/{_unique(keras_config.to_snake_case(keras_cls), used)}"
                if nested is not None:
                    stack.append((nested, group + "/"))
                    continue
                vars_group = self._vars(group)
                if vars_group is None:
                    continue
                for i in range(self._count(vars_group, group)):
                    total += int(np.prod(self._dataset(vars_group, i).shape, dtype=object))
                    if total > untrusted.MAX_WEIGHT_VALUES:
                        raise untrusted.refuse(self.path, f"declares more than {untrusted.MAX_WEIGHT_VALUES} weight "
                                                          "values.")
        self._declared_bytes = 0
        return total

    def assign(self, model: Any, groups: List[Tuple[str, Any]]) -> None:
        """Check every layer's variables against its weights, then read and assign them all."""
        plan = []
        for group, layer in groups:
            if layer.class_name in keras_config.MODELS:
                continue  # its layers have their own groups
            weights = layer.weights
            vars_group = self._vars(group)
            n = 0 if vars_group is None else self._count(vars_group, group)
            if n != len(weights):
                raise untrusted.refuse(self.path, f"has {n} variables for layer '{layer.name}' ({layer.class_name}) "
                                                  f"at '{group}', but the layer has {len(weights)} "
                                                  f"({', '.join(layer.weight_names) or 'none'}).")
            if vars_group is not None and n:
                stored = untrusted.h5_attr_text(vars_group, "name", self.path)
                for i, (wname, param) in enumerate(zip(layer.weight_names, weights)):
                    dset = self._dataset(vars_group, i)
                    untrusted.expect_shape(dset.shape, param.shape, self.path,
                                           f"'{group}/vars/{i}' ({wname} of layer '{layer.name}'"
                                           + (f", stored for '{stored}')" if stored else ")"))
                    plan.append((param, dset, f"{wname} of layer '{layer.name}'"))
        values = [(param, untrusted.finite_float32(untrusted.h5_read(dset, self.path), self.path, where))
                  for param, dset, where in plan]
        for param, value in values:
            param[...] = value

    def restore_optimizer(self, model: Any) -> None:
        """The optimizer's step count and slots from ``optimizer/vars`` (Keras's layout), when
        the file has them; a file saved before any step holds the count (and rate) only."""
        group = untrusted.h5_get(self.h5, "optimizer/vars", self.path, required=False)
        if group is None:
            return
        optimizer = model.optimizer
        n = self._count(group, "optimizer/vars")
        if n == 0:
            return
        weights = model.trainable_weights
        names = keras_config.keras_slot_names(optimizer)
        lead = 1 if optimizer.schedule is not None else 2
        if n not in (lead, lead + len(names) * len(weights)) or (not names and n != lead):
            raise untrusted.refuse(self.path, f"has {n} optimizer variables, but {type(optimizer).__name__} over this "
                                              f"model's {len(weights)} trainable weights keeps {lead} or "
                                              f"{lead + len(names) * len(weights)}.")
        step = self._dataset(group, 0, kinds="iuf")
        if step.shape != ():
            raise untrusted.refuse(self.path, "has an optimizer step count that is not a number.")
        iterations = untrusted.h5_read(step, self.path)[()].item()
        if not np.isfinite(iterations) or iterations < 0 or iterations > 2**53 or iterations != int(iterations):
            raise untrusted.refuse(self.path, f"has an optimizer step count of {iterations}; expected a "
                                              "non-negative integer.")
        slots: List[List[np.ndarray]] = [[] for _ in weights]
        if n > lead:
            plan = []
            for k, w in enumerate(weights):
                for j, name in enumerate(names):
                    i = lead + k * len(names) + j
                    dset = self._dataset(group, i)
                    untrusted.expect_shape(dset.shape, w.shape, self.path, f"optimizer variable {i} ({name})")
                    plan.append((k, name, dset, i))
            for k, name, dset, i in plan:
                value = untrusted.finite_float32(untrusted.h5_read(dset, self.path), self.path,
                                                 f"optimizer variable {i} ({name})")
                if name in optimizer.nonnegative_slots and (value < 0).any():
                    raise untrusted.refuse(self.path, f"has negative values in optimizer variable {i} ({name}, a "
                                                      "second moment).")
                slots[k].append(value)
            # The EMA's averages are not among Keras's per-variable slots: the next step starts them.
            full = [n for n in optimizer.slot_names() if n != "average"]
            slots = [[s[names.index(n)] if n in names else np.zeros_like(w) for n in full]
                     for s, w in zip(slots, weights)]
        optimizer.set_slots(weights, slots, int(iterations))


def _load_legacy_h5(path: str, compile: bool, custom_objects: Optional[Dict[str, Any]]) -> Any:
    size = untrusted.check_file(path)
    h5 = untrusted.h5_open(path, path)
    with h5:
        text = untrusted.h5_attr_text(h5, "model_config", path)
        if text is None:
            what = "Keras 3 weights (layers/...)" if untrusted.h5_get(h5, "layers", path, required=False) is not None \
                else "weights only"
            raise untrusted.refuse(path, f"holds {what}, not a model (no 'model_config'). Build the model in code "
                                         "and call model.load_weights(path).")
        document = untrusted.parse_json(text.encode("utf-8"), path, "model_config")
        spec = keras_config.model_from_keras(document, path)
        training = None
        if compile:
            training_text = untrusted.h5_attr_text(h5, "training_config", path)
            if training_text is not None:
                training = keras_config.compile_from_keras(
                    untrusted.parse_json(training_text.encode("utf-8"), path, "training_config"), path)
        store = _LegacyStore(h5, path, size)
        model = _rebuild(spec, path, store.declared_values(), custom_objects)
        store.assign(model, by_name=True)
        if training is not None:
            model.compile(**training)
    return model


class _LegacyStore:
    """The legacy weights layout: ``layer_names`` and each layer group's ``weight_names``."""

    def __init__(self, h5: Any, path: str, size: int) -> None:
        self.path, self.size = path, size
        root = untrusted.h5_get(h5, "model_weights", path, required=False)
        self.root = h5 if root is None else root
        self.names = untrusted.h5_attr_names(self.root, "layer_names", path, untrusted.MAX_LAYERS)
        self._declared = 0

    def _weights(self, layer_name: str) -> List[Any]:
        group = untrusted.h5_get(self.root, layer_name, self.path)
        names = untrusted.h5_attr_names(group, "weight_names", self.path, MAX_VARS)
        out = []
        for wname in names:
            dset = untrusted.h5_dataset(group, wname, self.path)
            self._declared += int(np.prod(dset.shape, dtype=object)) * dset.dtype.itemsize
            if self._declared > self.size:
                raise untrusted.refuse(self.path, f"declares {untrusted.size_text(self._declared)} of weights in a "
                                                  f"{untrusted.size_text(self.size)} file.")
            out.append(dset)
        return out

    def declared_values(self) -> int:
        total = sum(int(np.prod(d.shape, dtype=object)) for name in self.names for d in self._weights(name))
        self._declared = 0
        if total > untrusted.MAX_WEIGHT_VALUES:
            raise untrusted.refuse(self.path, f"declares more than {untrusted.MAX_WEIGHT_VALUES} weight values.")
        return total

    def assign(self, model: Any, by_name: bool) -> None:
        """By layer name (a model rebuilt from the file's config) or, as Keras's
        ``load_weights``, by the order of the layers that have weights."""
        stored = [(name, self._weights(name)) for name in self.names]
        stored = [(name, ds) for name, ds in stored if ds]
        layers = [layer for layer in model.layers if layer.weights]
        if by_name:
            by = {name: ds for name, ds in stored}
            pairs = []
            for layer in layers:
                if layer.name not in by:
                    raise untrusted.refuse(self.path, f"has no weights for layer '{layer.name}' ({layer.class_name}).")
                pairs.append((layer, layer.name, by.pop(layer.name)))
            if by:
                raise untrusted.refuse(self.path, f"has weights for layers the model does not have: {sorted(by)[:10]}.")
        else:
            if len(stored) != len(layers):
                raise ValueError(f"Cannot load weights from '{self.path}' into model '{model.name}': the file has "
                                 f"weights for {len(stored)} layers, the model has {len(layers)} layers with weights.")
            pairs = [(layer, name, ds) for layer, (name, ds) in zip(layers, stored)]
        plan = []
        for layer, name, datasets in pairs:
            weights = layer.trainable_weights + layer.non_trainable_weights  # Keras's legacy order
            if len(datasets) != len(weights):
                raise untrusted.refuse(self.path, f"has {len(datasets)} weights for layer '{name}', but the model's "
                                                  f"layer '{layer.name}' ({layer.class_name}) has {len(weights)}.")
            for dset, param in zip(datasets, weights):
                untrusted.expect_shape(dset.shape, param.shape, self.path,
                                       f"'{dset.name}' (for layer '{layer.name}')")
                plan.append((param, dset))
        values = [(param, untrusted.finite_float32(untrusted.h5_read(dset, self.path), self.path, f"'{dset.name}'"))
                  for param, dset in plan]
        for param, value in values:
            param[...] = value


def load_weights(model: Any, path: str) -> None:
    """Weights from a Keras 3 weights file (``.weights.h5``), a ``.keras`` file or a legacy
    ``.h5`` file, matched to ``model`` as Keras matches them (by position in
    ``model.layers``, through the class-derived group names); every shape is checked before
    anything changes."""
    _h5py()
    if not model.built or getattr(model, "_batch_input_shape", True) is None:
        raise RuntimeError(f"Model '{model.name}' has not been built, and a Keras weights file stores no input "
                           "shape. Build the model first (Input(shape=...) or model.build(input_shape)).")
    with untrusted.reading(path, "Keras weights file"):
        if zipfile.is_zipfile(path):
            with untrusted.open_zip(path, "Keras file") as zf, _weights_member(zf, path) as (h5, size):
                _load_weights_h5(model, h5, path, size)
            return
        size = untrusted.check_file(path, "weights file")
        with untrusted.h5_open(path, path) as h5:
            _load_weights_h5(model, h5, path, size)


def _load_weights_h5(model: Any, h5: Any, path: str, size: int) -> None:
    if untrusted.h5_get(h5, "layers", path, required=False) is not None:
        store = _Keras3Store(h5, path, size)
        try:
            groups = layer_groups(model)
        except keras_config.Unsupported as exc:
            raise ValueError(f"Cannot match the weights in '{path}' to model '{model.name}': {exc}") from exc
        store.assign(model, groups)
        return
    legacy = _LegacyStore(h5, path, size)
    if not legacy.names:
        raise untrusted.refuse(path, "is not a Keras weights file: it has neither 'layers' (Keras 3) nor "
                                     "'layer_names' (legacy).")
    legacy.assign(model, by_name=False)


# ============================================================================ writing

def save_model(model: Any, path: str) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file (atomically) that ``keras.models.load_model``
    opens: its config, metadata and weights (and, when compiled, the training config and
    the optimizer's variables).

    Raises:
        ValueError: a layer, optimizer, loss or metric Keras cannot rebuild (named).
        ImportError: h5py is not installed.
    """
    from .. import _tempfiles, distributed

    _h5py()
    if not distributed.is_primary():
        return
    model._require_built("the weights")
    entry = keras_config.model_to_keras(model)
    if model.compiled:
        entry["compile_config"] = keras_config.compile_to_keras(model)
    groups = layer_groups(model)
    config_text = _json(entry)
    metadata = _json({"keras_version": "3.0.0", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                      "pycnn_version": _version.__version__})

    def write(f: Any) -> None:
        with tempfile.TemporaryFile() as tmp:
            _write_weights(model, groups, tmp)
            tmp.seek(0)
            with zipfile.ZipFile(f, "w") as zf:
                zf.writestr(METADATA_NAME, metadata)
                zf.writestr(CONFIG_NAME, config_text)
                with zf.open(WEIGHTS_NAME, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(tmp, dst, 1 << 24)

    _tempfiles.write_atomically(os.fspath(path), write)


def save_weights(model: Any, path: str) -> None:
    """Write ``model``'s weights (and, when compiled, the optimizer's variables) in Keras 3's
    weights-file layout, atomically; Keras's ``model.load_weights`` reads it."""
    from .. import _tempfiles, distributed

    _h5py()
    if not distributed.is_primary():
        return
    model._require_built("the weights")
    groups = layer_groups(model)
    _tempfiles.write_atomically(os.fspath(path), lambda f: _write_weights(model, groups, f))


def _write_weights(model: Any, groups: List[Tuple[str, Any]], fileobj: Any) -> None:
    h5py = _h5py()
    with h5py.File(fileobj, "w") as h5:
        h5.create_group("layers")
        for group, layer in groups:
            g = h5.require_group(group)
            v = g.create_group("vars")
            v.attrs["name"] = layer.name
            if layer.class_name in keras_config.MODELS:
                g.require_group("layers")
                continue
            for i, w in enumerate(layer.weights):
                v.create_dataset(str(i), data=np.asarray(w, dtype=np.float32))
        if getattr(model, "compiled", False):
            _write_optimizer(model, h5.create_group("optimizer").create_group("vars"))
        h5.create_group("vars").attrs["name"] = model.name


def _write_optimizer(model: Any, group: Any) -> None:
    optimizer = model.optimizer
    group.attrs["name"] = optimizer.name
    group.create_dataset("0", data=np.int64(optimizer.iterations))
    i = 1
    if optimizer.schedule is None:
        group.create_dataset("1", data=np.float32(optimizer.learning_rate))
        i = 2
    names = keras_config.keras_slot_names(optimizer)
    full = optimizer.slot_names()
    weights = model.trainable_weights
    for w, slots in zip(weights, optimizer.get_slots(weights)):
        for name in names:
            value = slots[full.index(name)] if slots else np.zeros_like(w)
            group.create_dataset(str(i), data=np.asarray(value, dtype=np.float32))
            i += 1


def _json(value: Any) -> str:
    import json
    return json.dumps(value, indent=None)


__all__ = ["load_model", "load_weights", "save_model", "save_weights", "layer_groups"]
