"""Where dataset files live and how their official formats are decoded.

Search order used by every loader (``cifar10``, ``fashion_mnist``, ``mnist``):

1. the ``path`` argument of ``load_data`` (a data folder, the dataset's own folder, or for
   CIFAR-10 an archive file); when it is given, nothing else is searched;
2. ``$PYCNN_DATA_DIR`` (a folder holding ``cifar-10-batches-bin/``, ``fashion-mnist/``,
   ``mnist/`` like the project's shared data folder);
3. the per-user cache, ``$PYCNN_CACHE_DIR`` or ``$XDG_CACHE_HOME/pycnn/datasets`` or
   ``~/.cache/pycnn/datasets``, where downloads are stored.

Decoders are vectorised (``np.frombuffer`` + reshape + transpose) and check every size
against the format, so a truncated or corrupt file raises :class:`CorruptDatasetError`
naming the file instead of returning garbage images.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np


class CorruptDatasetError(ValueError):
    """A dataset file exists but is truncated, corrupt or not in the expected format."""


class ChecksumError(CorruptDatasetError):
    """A downloaded file does not have the published checksum."""


class MissingArchiveMembersError(CorruptDatasetError):
    """An archive is readable but lacks files the dataset needs."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says where to put it."""


def cache_dir() -> Path:
    """The per-user folder where downloaded datasets are stored (not created here).

    ``$PYCNN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/pycnn/datasets``, else
    ``~/.cache/pycnn/datasets``.
    """
    explicit = os.environ.get("PYCNN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pycnn" / "datasets"


def data_dir_from_env() -> Path | None:
    """``$PYCNN_DATA_DIR`` as a path, or None when unset or empty."""
    value = os.environ.get("PYCNN_DATA_DIR")
    return Path(value).expanduser() if value else None


# --------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------

#: The largest IDX payload read (MNIST's training images are 47 MB): a header declaring more
#: is refused before anything is allocated.
MAX_IDX_BYTES = 1 << 31


def read_maybe_gzip(path: Path, limit: Optional[int] = None) -> bytes:
    """Content of ``path``, gunzipped when the name ends in ``.gz``.

    With ``limit``, at most ``limit + 1`` bytes are decompressed, so a gzip bomb costs no
    more memory than the file it pretends to be (the caller sees the extra byte and refuses).

    Raises:
        CorruptDatasetError: the gzip stream is truncated or damaged.
    """
    path = Path(path)
    size = -1 if limit is None else limit + 1
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return _read_up_to(f, size)
        with open(path, "rb") as f:
            return _read_up_to(f, size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorruptDatasetError(
            f"Dataset file {str(path)!r} is truncated or not a valid gzip file ({exc}). "
            "Delete it and download it again."
        ) from exc


def _read_up_to(f, size: int) -> bytes:
    if size < 0:
        return f.read()
    chunks, left = [], size
    while left > 0:  # in pieces: no buffer of the declared size is allocated up front
        chunk = f.read(min(left, 1 << 22))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read and decode one IDX file (gzipped or not), decompressing no more than its header
    declares (capped at :data:`MAX_IDX_BYTES`)."""
    path = Path(path)
    header = read_maybe_gzip(path, 4 + 4 * expected_ndim - 1)
    total = None
    if len(header) == 4 + 4 * expected_ndim and int.from_bytes(header[:4], "big") == 0x0800 | expected_ndim:
        dims = [int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(expected_ndim)]
        total = len(header) + int(np.prod(dims, dtype=object))
        if total > MAX_IDX_BYTES:
            raise CorruptDatasetError(
                f"IDX file {str(path)!r} declares dimensions {tuple(dims)} ({total} bytes), more than the "
                f"{MAX_IDX_BYTES} bytes pycnn reads. The file is corrupt; delete it and download it again.")
    data = read_maybe_gzip(path, total)  # header problems are reported by decode_idx
    return decode_idx(data, str(path), expected_ndim)


def decode_idx(data: bytes, name: str, expected_ndim: int) -> np.ndarray:
    """Decode one unsigned-byte IDX file (``data`` already gunzipped).

    Layout: 2 zero bytes, type code 0x08 (unsigned byte), ndim, then ndim big-endian
    uint32 sizes, then prod(sizes) bytes in row-major order.

    Args:
        data: the decompressed file content.
        name: file name used in error messages.
        expected_ndim: 3 for image files, 1 for label files.

    Returns:
        A writable uint8 array of the stored shape (a copy, not a view of ``data``).

    Raises:
        CorruptDatasetError: wrong magic number, dimension count or length.
    """
    if len(data) < 4:
        raise CorruptDatasetError(
            f"IDX file {name!r} expected a 4-byte header. Received: {len(data)} bytes."
        )
    magic = int.from_bytes(data[:4], "big")
    expected_magic = 0x0800 | expected_ndim
    if magic != expected_magic:
        raise CorruptDatasetError(
            f"IDX file {name!r} expected magic number 0x{expected_magic:08X} "
            f"(unsigned bytes, {expected_ndim} dimension(s)). Received: magic=0x{magic:08X}."
        )
    header = 4 + 4 * expected_ndim
    if len(data) < header:
        raise CorruptDatasetError(
            f"IDX file {name!r} is truncated inside its header: expected at least {header} "
            f"bytes. Received: {len(data)} bytes."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=expected_ndim, offset=4))
    expected_len = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected_len:
        raise CorruptDatasetError(
            f"IDX file {name!r} with dimensions {dims} expected {expected_len} bytes. "
            f"Received: {len(data)} bytes. The file is truncated or corrupt; delete it and "
            "download it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_idx_pair(images_path: Path, labels_path: Path, image_hw: tuple[int, int],
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one (images, labels) pair of IDX files.

    Returns:
        ``(x, y)``: x uint8 (N, H, W), y uint8 (N,).
    """
    x = read_idx(images_path, 3)
    y = read_idx(labels_path, 1)
    if x.shape[1:] != tuple(image_hw):
        raise CorruptDatasetError(
            f"IDX file {str(images_path)!r} expected images of size {image_hw}. "
            f"Received: shape={x.shape}."
        )
    if x.shape[0] != y.shape[0]:
        raise CorruptDatasetError(
            f"Images and labels must contain the same number of samples. Received: "
            f"{images_path.name} holds {x.shape[0]}, {labels_path.name} holds {y.shape[0]}."
        )
    check_labels(y, num_classes, str(labels_path))
    return x, y


def check_labels(y: np.ndarray, num_classes: int, name: str) -> None:
    """Raise CorruptDatasetError when a label is outside [0, num_classes)."""
    if y.size and int(y.max()) >= num_classes:
        raise CorruptDatasetError(
            f"Dataset file {name!r} expected labels in [0, {num_classes - 1}]. "
            f"Received: a label of {int(y.max())}."
        )


# --------------------------------------------------------------------------------------
# CIFAR-10 binary version
# --------------------------------------------------------------------------------------

CIFAR_HW = 32
CIFAR_RECORD = 1 + 3 * CIFAR_HW * CIFAR_HW  # label byte + R, G, B planes of 32x32


def decode_cifar_bin(data: bytes, name: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes.

    The pixels of a record are three 32x32 planes (R, G, B), each row-major; they are
    returned channels-last.

    Returns:
        ``(x, y)``: x uint8 (N, 32, 32, 3), y uint8 (N,).

    Raises:
        CorruptDatasetError: the length is not a positive multiple of 3073 or a label is
            out of range.
    """
    if len(data) == 0 or len(data) % CIFAR_RECORD:
        raise CorruptDatasetError(
            f"CIFAR-10 batch {name!r} expected a positive multiple of {CIFAR_RECORD} bytes "
            f"(records of 1 label byte and 3072 pixel bytes). Received: {len(data)} bytes. "
            "The file is truncated or corrupt; delete it and download it again."
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    y = records[:, 0].copy()
    check_labels(y, num_classes, name)
    x = records[:, 1:].reshape(-1, 3, CIFAR_HW, CIFAR_HW).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def decode_cifar_python(data: bytes, name: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch of the CIFAR-10 python version through :class:`RestrictedUnpickler`.

    A batch is a pickled dict with ``data`` (N, 3072) uint8 (R, G, B planes) and
    ``labels`` (a list of N ints); keys may be bytes (Python 2 pickles) or str.

    Returns:
        ``(x, y)``: x uint8 (N, 32, 32, 3), y uint8 (N,).
    """
    try:
        batch = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise CorruptDatasetError(
            f"CIFAR-10 batch {name!r} could not be unpickled ({exc}). The file is truncated, "
            "corrupt or not a CIFAR-10 batch."
        ) from exc
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CorruptDatasetError(
            f"CIFAR-10 batch {name!r} is truncated or corrupt ({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(batch, dict):
        raise CorruptDatasetError(
            f"CIFAR-10 batch {name!r} expected a pickled dict. Received: {type(batch).__name__}."
        )
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    pixels, labels = batch.get("data"), batch.get("labels")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
            or pixels.shape[1] != 3 * CIFAR_HW * CIFAR_HW:
        got = (pixels.dtype, pixels.shape) if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise CorruptDatasetError(
            f"CIFAR-10 batch {name!r} expected 'data' to be a uint8 array of shape (N, 3072). "
            f"Received: {got}."
        )
    if not isinstance(labels, list) or len(labels) != pixels.shape[0] \
            or not all(isinstance(v, int) and 0 <= v < num_classes for v in labels):
        raise CorruptDatasetError(
            f"CIFAR-10 batch {name!r} expected 'labels' to be a list of {pixels.shape[0]} "
            f"integers in [0, {num_classes - 1}]."
        )
    x = pixels.reshape(-1, 3, CIFAR_HW, CIFAR_HW).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.uint8)


class _NdarrayToken:
    """Stands in for ``numpy.ndarray`` inside a pickle; it can only be passed to _reconstruct."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray directly")


_NDARRAY = _NdarrayToken()


class _DtypeSpec:
    """Inert stand-in for ``numpy.dtype(spec, align, copy)``: only plain numeric dtypes."""

    def __init__(self, spec=None, align=False, copy=False):
        if isinstance(spec, bytes):
            spec = spec.decode("ascii", "replace")
        if not isinstance(spec, str):
            raise pickle.UnpicklingError(f"refusing dtype spec {spec!r}")
        try:
            dtype = np.dtype(spec)
        except TypeError as exc:
            raise pickle.UnpicklingError(f"refusing dtype spec {spec!r}") from exc
        if dtype.kind not in "uif" or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"refusing dtype {dtype}: only plain numeric dtypes")
        self.dtype = dtype

    def __setstate__(self, state):
        # numpy's dtype state: (version, byte order, subarray, names, fields, elsize,
        # alignment, flags). Only the byte order of a plain numeric dtype is honoured.
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"refusing dtype state {state!r}")
        if any(v is not None for v in state[2:5]):
            raise pickle.UnpicklingError("refusing structured or subarray dtypes")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _array_from_bytes(raw, dtype, shape, fortran: bool) -> np.ndarray:
    """Build a numpy array from checked raw bytes; any mismatch is an UnpicklingError."""
    if not isinstance(dtype, _DtypeSpec):
        raise pickle.UnpicklingError(f"refusing array dtype {dtype!r}")
    if not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError("refusing array data that is not raw bytes (object arrays)")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise pickle.UnpicklingError(f"refusing array shape {shape!r}")
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != count * dtype.dtype.itemsize:
        raise pickle.UnpicklingError(
            f"array of shape {shape} and dtype {dtype.dtype} needs {count * dtype.dtype.itemsize} "
            f"bytes, got {len(raw)}"
        )
    flat = np.frombuffer(bytes(raw), dtype=dtype.dtype, count=count)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


class _ArrayBuilder:
    """Inert stand-in for ``numpy.core.multiarray._reconstruct``; BUILD fills in the array."""

    def __init__(self, subtype=None, shape=None, dtype=None):
        if subtype is not _NDARRAY:
            raise pickle.UnpicklingError(f"refusing to reconstruct {subtype!r}")
        self.array = None

    def __setstate__(self, state):
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes); version optional.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError("refusing malformed array state")
        shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(raw, dtype, shape, bool(fortran))


def _frombuffer(buf, dtype, shape, order):
    """Stand-in for ``numpy.core.numeric._frombuffer`` (pickle protocol 5)."""
    return _array_from_bytes(buf, dtype, tuple(shape), order == "F")


def _latin1_encode(obj, encoding="utf-8"):
    """Stand-in for ``_codecs.encode``: how Python 3 writes bytes at pickle protocol 2."""
    if not isinstance(obj, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return obj.encode("latin1")


def _resolve(obj, depth: int = 0):
    """Replace every _ArrayBuilder in dicts/lists/tuples by its array."""
    if depth > 16:
        raise pickle.UnpicklingError("refusing containers nested deeper than 16 levels")
    if isinstance(obj, _ArrayBuilder):
        if obj.array is None:
            raise pickle.UnpicklingError("array without data")
        return obj.array
    if isinstance(obj, (_DtypeSpec, _NdarrayToken)):
        raise pickle.UnpicklingError("stray numpy dtype or class object")
    if isinstance(obj, dict):
        return {k: _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, depth + 1) for v in obj)
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only dicts, lists, tuples, bytes, str, numbers and numeric arrays.

    ``find_class`` admits the callables numpy and Python use to pickle a numeric array
    (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``, ``_codecs.encode``), each
    replaced by an inert stand-in that validates its arguments and never hands
    attacker-controlled state to numpy; every other global (``os.system``,
    ``builtins.eval``, ...) raises ``pickle.UnpicklingError`` before anything is called.
    Use :meth:`load`, which also converts the stand-ins into real arrays.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _ArrayBuilder,
        ("numpy._core.multiarray", "_reconstruct"): _ArrayBuilder,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _DtypeSpec,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: CIFAR-10 batches only need plain "
                "containers and numpy arrays"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")

    def load(self):
        return _resolve(super().load())


# --------------------------------------------------------------------------------------
# CIFAR-10 archives (read members in memory, never extracted to disk)
# --------------------------------------------------------------------------------------

def read_tar_members(archive: Path, wanted: dict[str, str]) -> dict[str, bytes]:
    """Read regular-file members of a .tar.gz whose names end with the given suffixes.

    Args:
        archive: path of the ``.tar.gz``.
        wanted: key -> member path suffix, e.g. ``{"test": "cifar-10-batches-bin/test_batch.bin"}``.

    Returns:
        key -> member bytes, for every key.

    Raises:
        CorruptDatasetError: the archive is damaged.
        MissingArchiveMembersError: it lacks a wanted member.
    """
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                for key, suffix in wanted.items():
                    if key not in found and (member.name == suffix or member.name.endswith("/" + suffix)):
                        found[key] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorruptDatasetError(
            f"Archive {str(archive)!r} is truncated or corrupt ({type(exc).__name__}: {exc}). "
            "Delete it and download it again."
        ) from exc
    missing = [wanted[k] for k in wanted if k not in found]
    if missing:
        raise MissingArchiveMembersError(
            f"Archive {str(archive)!r} expected members {missing}. They are missing; the "
            "archive is incomplete or not the right dataset."
        )
    return found
