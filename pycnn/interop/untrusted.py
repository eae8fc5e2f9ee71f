"""Reading model files someone else wrote: the limits, and checked readers every format uses.

A model file may be damaged, or written by an attacker. Every reader in pycnn (``.npz`` in
pycnn/saving.py, ``.keras`` / ``.h5`` in pycnn/interop/keras_files.py) goes through this
module, so that such a file is a ``ValueError`` naming the file and what is wrong (an
``OSError`` only for the file system: no such file, no permission), never a crash, a
``MemoryError``, a ``RecursionError`` or minutes of work. The rules:

* **Read only what the manifest or config names.** Other zip members and HDF5 objects are
  never opened, decompressed or listed beyond a count.
* **Check declared sizes before reading.** A ``.npy`` member's header must describe a
  float array whose size is exactly the member's declared uncompressed size; an HDF5
  dataset must be a float array of the shape the architecture expects, with no external
  storage, no virtual mapping and at most the filters in :data:`H5_FILTERS`; links must be
  hard links (no external or soft links); the declared bytes of everything read must fit in
  the file (so a compressed dataset cannot expand past it).
* **Validate the architecture before it allocates.** Configs are JSON of bounded size,
  count and depth; every integer argument of a layer is at most :data:`MAX_SIZE`; input
  shapes and every tensor of the model at most :data:`MAX_SAMPLE_VALUES` values per sample;
  and the model is built with weights counted against what the file stores
  (:func:`pycnn.initializers.loading`), so a file declaring ``Dense(units=10**9)`` is refused
  before the kernel exists.
* **Walk iteratively**: graphs and nested configs use explicit stacks; JSON deeper than
  :data:`MAX_JSON_DEPTH` is refused.

Memory: loading a file needs at most about twice the bytes of the weights it really holds
(the model's weights and one array being read), plus the parsed JSON (at most
:data:`MAX_TEXT_BYTES` of text and :data:`MAX_JSON_ITEMS` values, about 200 MB in the worst
case), plus, for a ``.keras`` file, the weights member copied out of the zip (into memory up
to 64 MiB, else into a temporary file). The weights a file may declare are bounded by
:data:`MAX_WEIGHT_VALUES`.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
import zipfile
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

#: The largest JSON text (a manifest, config.json, an HDF5 attribute) pycnn parses.
MAX_TEXT_BYTES = 16 * 2**20
#: The most values (containers, keys, items) a JSON text may hold, counted before parsing.
MAX_JSON_ITEMS = 2**21
#: The deepest nesting of JSON lists and objects.
MAX_JSON_DEPTH = 200
#: The deepest nesting of models inside models.
MAX_MODEL_NESTING = 16
#: The most layers (or layer calls) one file may describe.
MAX_LAYERS = 100_000
#: The largest integer a layer argument may hold (units, filters, kernel sizes, strides,
#: paddings, croppings, shape dimensions); seeds are exempt.
MAX_SIZE = 2**20
#: The most values per sample of any tensor of a loaded model (inputs included): 1 GiB of float32.
MAX_SAMPLE_VALUES = 2**28
#: The most weight values (all layers together) a file may declare: 1 GiB of float32.
MAX_WEIGHT_VALUES = 2**28
#: The largest ``.npy`` header read (NumPy's own default limit).
MAX_NPY_HEADER = 10000
#: HDF5 filters a dataset may use (gzip, shuffle, fletcher32, lzf); any other is refused,
#: so that reading never loads a filter plugin.
H5_FILTERS = (1, 2, 3, 32000)


def refuse(path: str, what: str) -> ValueError:
    """The error for a file that is damaged or hostile: ``'<path>' <what>``."""
    return ValueError(f"'{path}' {what}")


def size_text(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


@contextlib.contextmanager
def reading(path: str, what: str = "model file") -> Iterator[None]:
    """Any error that slips past the explicit checks while reading ``path`` becomes a
    ValueError naming the file (OSErrors of the file system and ValueErrors pass through)."""
    try:
        yield
    except (ValueError, OSError, ImportError):
        raise
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError, EOFError,
            UnicodeError, struct.error, zipfile.BadZipFile) as exc:
        raise refuse(path, f"is not a readable {what}: {type(exc).__name__}: {exc}") from exc


def check_file(path: str, what: str = "model file") -> int:
    """``path`` is a regular file; returns its size. FileNotFoundError when there is nothing
    at ``path``; ValueError for a folder or another kind of file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No {what.replace('pycnn ', '')} at '{path}'.")
    if not os.path.isfile(path):
        raise refuse(path, f"is not a readable {what} (it is a folder or a device, not a file).")
    return os.path.getsize(path)


# ----------------------------------------------------------------------------- JSON

def _no_constant(name: str) -> Any:
    raise ValueError(f"the constant {name} is not valid JSON")


def parse_json(text: Any, path: str, what: str) -> Any:
    """JSON text (bytes or str) of bounded size, count and depth -> Python values.

    NaN and Infinity literals are refused (they are not JSON), and so are numbers too large
    for a float.
    """
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_TEXT_BYTES:
            raise refuse(path, f"has a {what} of {size_text(len(text))}; pycnn reads at most "
                               f"{size_text(MAX_TEXT_BYTES)}.")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise refuse(path, f"has a {what} that is not UTF-8 text ({exc}).") from exc
    if not isinstance(text, str):
        raise refuse(path, f"has a {what} that is not text (a {type(text).__name__}).")
    if len(text) > MAX_TEXT_BYTES:
        raise refuse(path, f"has a {what} of {len(text)} characters; pycnn reads at most {MAX_TEXT_BYTES}.")
    items = sum(text.count(c) for c in ",:[{")
    if items > MAX_JSON_ITEMS:
        raise refuse(path, f"has a {what} with about {items} values; pycnn reads at most {MAX_JSON_ITEMS}.")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise refuse(path, f"has a {what} nested more than {MAX_JSON_DEPTH} levels deep.") from exc
    except ValueError as exc:  # json.JSONDecodeError too
        raise refuse(path, f"has a {what} that is not valid JSON ({exc}).") from exc
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise refuse(path, f"has a {what} nested {depth} levels deep; pycnn reads at most {MAX_JSON_DEPTH}.")
    return value


def json_depth(value: Any) -> int:
    """The nesting depth of lists and dicts in ``value`` (iterative)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


# ----------------------------------------------------------------------------- architectures

def _shape_keys(key: str) -> bool:
    return key.endswith("shape") and key != "noise_shape"


def check_sample_shape(shape: Any, path: str, where: str, batch_axis: bool) -> None:
    """A shape from a file: a list of positive ints (None allowed) with a bounded product."""
    if not isinstance(shape, (list, tuple)) or not shape or len(shape) > 16:
        raise refuse(path, f"has a damaged config: {where} should be a list of 1 to 16 dimensions. "
                           f"Received: {_short(shape)}.")
    dims = list(shape[1:] if batch_axis else shape)
    size = 1
    for d in dims:
        if d is None:
            continue
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_SIZE:
            raise refuse(path, f"declares {where} {_short(shape)}; every dimension must be a positive integer "
                               f"of at most {MAX_SIZE} (or None).")
        size *= d
    if size > MAX_SAMPLE_VALUES:
        raise refuse(path, f"declares {where} {_short(shape)}: {size} values per sample, more than the "
                           f"{MAX_SAMPLE_VALUES} pycnn accepts from a file.")


def check_layer_arguments(class_name: str, config: Any, path: str, where: str) -> None:
    """Every integer in a layer's arguments is at most :data:`MAX_SIZE` in magnitude (seeds:
    non-negative and below 2**64), every float finite, and shapes are bounded; iterative."""
    if not isinstance(config, dict):
        raise refuse(path, f"has a damaged config: the arguments of {where} ({class_name}) should be an object, "
                           f"not {type(config).__name__}.")
    stack: List[Tuple[str, Any]] = [(k, v) for k, v in config.items()]
    for key, value in config.items():
        if _shape_keys(str(key)) and value is not None and key != "build_input_shape":
            check_sample_shape(value, path, f"the {key} of layer {where} as", batch_axis=key.startswith("batch"))
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((key, v) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((key, v) for v in value)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if key == "seed":
                if not 0 <= value < 2**64:
                    raise refuse(path, f"declares layer {where} ({class_name}) with seed={value}; expected an "
                                       "integer in [0, 2**64).")
            elif abs(value) > MAX_SIZE:
                raise refuse(path, f"declares layer {where} ({class_name}) with argument '{key}' holding {value}; "
                                   f"pycnn accepts sizes up to {MAX_SIZE} from a file.")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise refuse(path, f"declares layer {where} ({class_name}) with a non-finite argument "
                                   f"'{key}'={value}.")


def check_model_config(class_name: Any, config: Any, path: str) -> None:
    """A pycnn model config (``Model.get_config()`` / ``Sequential.get_config()`` and nested
    models in it) has the documented structure and bounded arguments. Iterative."""
    stack = [(class_name, config, "the model", 0)]
    total = 0
    while stack:
        cls, cfg, where, depth = stack.pop()
        if depth > MAX_MODEL_NESTING:
            raise refuse(path, f"nests models more than {MAX_MODEL_NESTING} deep.")
        if not isinstance(cls, str):
            raise refuse(path, f"has a damaged config: {where} has no class name.")
        if not isinstance(cfg, dict):
            raise refuse(path, f"has a damaged config: {where} ({cls}) should be an object, not "
                               f"{type(cfg).__name__}.")
        entries = cfg.get("layers")
        if not isinstance(entries, list):
            raise refuse(path, f"has a damaged config: {where} ({cls}) has no 'layers' list.")
        total += len(entries) + len(cfg.get("nodes") or ())
        if total > MAX_LAYERS:
            raise refuse(path, f"describes more than {MAX_LAYERS} layers and layer calls.")
        for i, entry in enumerate(entries):
            if not (isinstance(entry, dict) and isinstance(entry.get("class_name"), str)
                    and isinstance(entry.get("config"), dict)):
                raise refuse(path, f"has a damaged config: layer {i} of {where} should be an object with a "
                                   "'class_name' string and a 'config' object.")
            name = entry["config"].get("name", f"#{i}")
            label = f"'{name}'" if isinstance(name, str) else f"#{i}"
            if "layers" in entry["config"]:
                stack.append((entry["class_name"], entry["config"], f"model {label}", depth + 1))
            else:
                check_layer_arguments(entry["class_name"], entry["config"], path, label)
        for key in ("nodes", "inputs", "outputs"):
            if key in cfg and not isinstance(cfg[key], list):
                raise refuse(path, f"has a damaged config: '{key}' of {where} should be a list.")
        for node in cfg.get("nodes") or ():
            if not (isinstance(node, dict) and isinstance(node.get("layer"), str)
                    and isinstance(node.get("inputs"), list) and all(_is_ref(r) for r in node["inputs"])):
                raise refuse(path, f"has a damaged config: a node of {where} should be an object with a 'layer' "
                                   f"name and 'inputs' as [layer name, call index] pairs. Received: {_short(node)}.")
        for key in ("inputs", "outputs"):
            if key in cfg and not all(_is_ref(r) for r in cfg[key]):
                raise refuse(path, f"has a damaged config: '{key}' of {where} should be [layer name, call index] "
                                   "pairs.")
        shape = cfg.get("build_input_shape")
        if shape is not None:
            check_sample_shape(shape, path, f"the input shape of {where}", batch_axis=True)


def _is_ref(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool) and 0 <= value[1] <= MAX_LAYERS)


def check_model_values(model: Any, path: str) -> None:
    """Every tensor of the rebuilt ``model`` holds at most :data:`MAX_SAMPLE_VALUES` values per
    sample (a file cannot ask for a ZeroPadding2D(10**5) that no input could pass through)."""
    graph = model._graph().expanded()
    shapes = graph.value_shapes(graph.input_shapes)
    for i, shape in enumerate(shapes):
        size = 1
        for d in shape[1:]:
            size *= 1 if d is None else int(d)
        if size > MAX_SAMPLE_VALUES:
            node = graph.producer(i)
            who = "an input" if node is None else f"layer '{node.layer.name}' ({node.layer.class_name})"
            raise refuse(path, f"describes a model in which {who} produces tensors of shape {tuple(shape)}: "
                               f"{size} values per sample, more than the {MAX_SAMPLE_VALUES} pycnn accepts "
                               "from a file.")


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------- zip members and .npy

def open_zip(path: str, what: str) -> zipfile.ZipFile:
    """The zip archive at ``path`` (only its central directory is read)."""
    check_file(path, what)
    try:
        return zipfile.ZipFile(path, "r")
    except zipfile.BadZipFile as exc:
        raise refuse(path, f"is not a readable {what} ({exc}).") from exc
    except (ValueError, EOFError, OverflowError, struct.error) as exc:
        raise refuse(path, f"is not a readable {what} ({type(exc).__name__}: {exc}).") from exc


def zip_member(zf: zipfile.ZipFile, name: str, path: str, limit: int, what: str) -> Optional[zipfile.ZipInfo]:
    """The member ``name`` (None if absent), after checking its declared size against ``limit``."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.flag_bits & 0x1:
        raise refuse(path, f"has an encrypted {what} ('{name}').")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise refuse(path, f"stores its {what} ('{name}') with zip compression method {info.compress_type}; "
                           "pycnn reads stored and deflated members only.")
    if info.file_size > limit:
        raise refuse(path, f"declares a {what} ('{name}') of {size_text(info.file_size)}; pycnn reads at most "
                           f"{size_text(limit)}.")
    return info


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> bytes:
    """A (size-checked) member's bytes; no more than its declared size is ever decompressed."""
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise refuse(path, f"has a damaged member '{info.filename}' ({type(exc).__name__}: {exc}).") from exc
    if len(data) != info.file_size:
        raise refuse(path, f"has a damaged member '{info.filename}': {len(data)} bytes instead of the declared "
                           f"{info.file_size}.")
    return data


class NpyHeader(NamedTuple):
    """What a ``.npy`` member declares, checked against its size."""
    shape: Tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, kinds: str = "f") -> NpyHeader:
    """Parse a member's ``.npy`` header (bounded) and check that it declares an array of a
    dtype kind in ``kinds`` whose size is exactly the member's declared size."""
    fmt = np.lib.format
    name = info.filename
    try:
        with zf.open(info) as f:
            prefix = f.read(12)
            if len(prefix) < 10 or prefix[:6] != b"\x93NUMPY" or prefix[6:8] not in (b"\x01\x00", b"\x02\x00"):
                raise ValueError("not a .npy array of format version 1.0 or 2.0")
            size_bytes = 2 if prefix[6] == 1 else 4
            length = int.from_bytes(prefix[8:8 + size_bytes], "little")
            if length > MAX_NPY_HEADER:  # checked here: older NumPy reads any header length
                raise ValueError(f"a header of {length} bytes (at most {MAX_NPY_HEADER} are read)")
            start = 8 + size_bytes
            header = prefix + f.read(max(0, start + length - len(prefix)))
        bio = io.BytesIO(header)
        fmt.read_magic(bio)
        read = fmt.read_array_header_1_0 if size_bytes == 2 else fmt.read_array_header_2_0
        shape, fortran, dtype = read(bio)
        offset = len(header)
    except (ValueError, EOFError, zipfile.BadZipFile, OSError, SyntaxError, TypeError) as exc:
        raise refuse(path, f"has a damaged array member '{name}' ({type(exc).__name__}: {exc}).") from exc
    if dtype.kind not in kinds or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise refuse(path, f"has an array member '{name}' of dtype {dtype}; expected "
                           f"{'floating-point values' if kinds == 'f' else 'dtype kind ' + kinds}.")
    if not all(isinstance(d, int) and 0 <= d for d in shape) or len(shape) > 32:
        raise refuse(path, f"has an array member '{name}' with an invalid shape {_short(shape)}.")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise refuse(path, f"has an array member '{name}' whose header declares shape {tuple(shape)} "
                           f"({size_text(nbytes)}) but whose size is {size_text(info.file_size - offset)}.")
    return NpyHeader(tuple(shape), dtype, bool(fortran), offset)


def read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, header: NpyHeader, path: str) -> np.ndarray:
    """The array a checked header describes, read in chunks straight into its buffer."""
    arr = np.empty(header.shape, dtype=header.dtype, order="F" if header.fortran_order else "C")
    view = arr.reshape(-1, order="A").view(np.uint8)  # the buffer, in memory order
    try:
        with zf.open(info) as f:
            f.read(header.offset)
            pos = 0
            while pos < len(view):
                chunk = f.read(min(1 << 24, len(view) - pos))
                if not chunk:
                    break
                view[pos:pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                pos += len(chunk)
            f.read(1)  # reach the end, where zipfile checks the CRC
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise refuse(path, f"has a damaged array member '{info.filename}' ({type(exc).__name__}: {exc}).") from exc
    if pos != len(view):
        raise refuse(path, f"has a truncated array member '{info.filename}'.")
    return arr


def read_npy_text(zf: zipfile.ZipFile, name: str, path: str, what: str) -> Optional[str]:
    """A 0-d unicode ``.npy`` member (pycnn's manifest) as text; None when absent."""
    info = zip_member(zf, name, path, MAX_TEXT_BYTES * 4 + MAX_NPY_HEADER, what)
    if info is None:
        return None
    header = npy_header(zf, info, path, kinds="U")
    if header.shape != ():
        raise refuse(path, f"has a {what} ('{name}') of shape {header.shape}; expected a single string.")
    return str(read_npy(zf, info, header, path)[()])


# ----------------------------------------------------------------------------- HDF5

def h5_open(source: Any, path: str) -> Any:
    """An HDF5 file (a path or a file object) opened read-only with h5py."""
    from . import require

    h5py = require("h5py", "keras", "Reading Keras HDF5 files")
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise refuse(path, f"is not a readable HDF5 file ({exc}).") from exc


def h5_get(group: Any, relpath: str, path: str, required: bool = True) -> Any:
    """The object at ``relpath`` under ``group``, reached through hard links only (an
    external or soft link is refused: it could name another file); None when absent and
    not ``required``."""
    import h5py

    node = group
    for part in [p for p in relpath.split("/") if p]:
        if not isinstance(node, h5py.Group):
            raise refuse(path, f"has no group at '{node.name}' (a dataset is there).")
        try:
            link = node.get(part, getlink=True)
        except (KeyError, ValueError, OSError) as exc:
            raise refuse(path, f"has a damaged HDF5 link '{node.name}/{part}' ({exc}).") from exc
        if link is None:
            if required:
                raise refuse(path, f"has no HDF5 object '{_join(node.name, part)}'.")
            return None
        if not isinstance(link, h5py.HardLink):
            kind = {"ExternalLink": "an external", "SoftLink": "a soft"}.get(type(link).__name__, "an unknown")
            raise refuse(path, f"has {kind} link at '{_join(node.name, part)}'; pycnn follows hard links only "
                               "(an external or soft link may point into another file).")
        try:
            node = node[part]
        except (KeyError, ValueError, OSError) as exc:
            raise refuse(path, f"has a damaged HDF5 object '{_join(node.name, part)}' ({exc}).") from exc
    return node


def _join(base: str, part: str) -> str:
    return base.rstrip("/") + "/" + part


def h5_dataset(group: Any, relpath: str, path: str, kinds: str = "f") -> Any:
    """A dataset under ``group`` checked for what reading it would do: a plain numeric dtype
    of a kind in ``kinds``, no external raw data, not virtual, only :data:`H5_FILTERS`,
    chunks no larger than the dataset."""
    import h5py

    dset = h5_get(group, relpath, path)
    if not isinstance(dset, h5py.Dataset):
        raise refuse(path, f"has a group, not a dataset, at '{dset.name}'.")
    where = dset.name
    try:
        dtype = dset.dtype
        shape = dset.shape
        external = dset.external
        virtual = dset.is_virtual
        chunks = dset.chunks
        plist = dset.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise refuse(path, f"has a damaged dataset '{where}' ({exc}).") from exc
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise refuse(path, f"has a dataset '{where}' of dtype {dtype}; expected "
                           f"{'floating-point values' if kinds == 'f' else 'numbers'}.")
    if shape is None or len(shape) > 32:
        raise refuse(path, f"has a dataset '{where}' without a simple shape.")
    if external:
        raise refuse(path, f"has a dataset '{where}' whose values are stored in external files {external!r}.")
    if virtual:
        raise refuse(path, f"has a virtual dataset '{where}' (it maps other files).")
    bad = [f for f in filters if f not in H5_FILTERS]
    if bad:
        raise refuse(path, f"has a dataset '{where}' with HDF5 filters {bad}; pycnn reads gzip, shuffle, "
                           "fletcher32 and lzf only.")
    if chunks is not None and (len(chunks) != len(shape) or any(c > max(s, 1) for c, s in zip(chunks, shape))):
        raise refuse(path, f"has a dataset '{where}' with chunks {chunks} larger than its shape {shape}.")
    return dset


def h5_read(dset: Any, path: str) -> np.ndarray:
    """The values of a checked dataset (its declared shape was compared with what the
    architecture expects before this call)."""
    try:
        arr = np.empty(dset.shape, dtype=dset.dtype)
        if arr.size:
            dset.read_direct(arr)
        return arr
    except (OSError, ValueError, TypeError) as exc:
        raise refuse(path, f"has a damaged dataset '{dset.name}' ({exc}).") from exc


def h5_attr_text(obj: Any, name: str, path: str) -> Optional[str]:
    """A string attribute (None when absent). An attribute is read whole; it cannot be larger
    than the file."""
    try:
        if name not in obj.attrs:
            return None
        value = obj.attrs[name]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise refuse(path, f"has a damaged attribute '{name}' ({exc}).") from exc
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="strict")
    if isinstance(value, str):
        return value
    raise refuse(path, f"has an attribute '{name}' that is not a string ({type(value).__name__}).")


def h5_attr_names(obj: Any, name: str, path: str, limit: int) -> List[str]:
    """A list-of-strings attribute (legacy files' ``layer_names`` / ``weight_names``)."""
    try:
        value = obj.attrs.get(name)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise refuse(path, f"has a damaged attribute '{name}' ({exc}).") from exc
    if value is None:
        return []
    items = np.asarray(value).reshape(-1).tolist() if not isinstance(value, (bytes, str)) else [value]
    if len(items) > limit:
        raise refuse(path, f"has an attribute '{name}' with {len(items)} entries; expected at most {limit}.")
    out = []
    for item in items:
        if isinstance(item, bytes):
            item = item.decode("utf-8")
        if not isinstance(item, str):
            raise refuse(path, f"has an attribute '{name}' holding {type(item).__name__}, not names.")
        out.append(item)
    return out


def expect_shape(value_shape: Sequence[int], expected: Sequence[int], path: str, where: str) -> None:
    if tuple(value_shape) != tuple(expected):
        raise refuse(path, f"has {where} of shape {tuple(value_shape)}, but the model expects {tuple(expected)}.")


def finite_float32(arr: np.ndarray, path: str, where: str) -> np.ndarray:
    """``arr`` as native C-contiguous float32, refusing NaN and infinite values."""
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise refuse(path, f"has {int(np.count_nonzero(~np.isfinite(out)))} NaN or infinite values in {where}.")
    return out


def declared_values(shapes: Dict[str, Sequence[int]]) -> int:
    return sum(math.prod(s) for s in shapes.values())
