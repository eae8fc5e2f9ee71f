"""Writers for tiny dataset files in the official formats (IDX gzip, CIFAR-10 bin/python).

Used by test_datasets.py and test_download.py; every writer returns what a correct
loader must produce, decoded here with plain per-record loops (the obvious oracle).
"""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x0000 08 ndim, big-endian uint32 dims, raw bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write_idx_dataset(folder: Path, rng: np.random.Generator, n_train: int = 12, n_test: int = 5,
                      gz: bool = True) -> dict[str, np.ndarray]:
    """Write the four MNIST-format files into ``folder``; returns the arrays by IDX name."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def cifar_records(rng: np.random.Generator, n: int) -> bytes:
    """n random CIFAR-10 binary records (1 label byte + 3072 pixel bytes)."""
    recs = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
    recs[:, 0] = rng.integers(0, 10, n)
    return recs.tobytes()


def decode_cifar_record_loop(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Per-record decode: label byte, then R, G, B 32x32 planes -> (32, 32, 3)."""
    xs, ys = [], []
    for start in range(0, len(data), 3073):
        rec = data[start:start + 3073]
        ys.append(rec[0])
        img = np.zeros((32, 32, 3), np.uint8)
        for ch in range(3):
            for row in range(32):
                base = 1 + ch * 1024 + row * 32
                img[row, :, ch] = list(rec[base:base + 32])
        xs.append(img)
    return np.stack(xs), np.array(ys, dtype=np.uint8)


def write_cifar_bin(folder: Path, rng: np.random.Generator, n: int = 6) -> dict[str, bytes]:
    """The six ``.bin`` batches with n records each; returns raw bytes per batch name."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {b: cifar_records(rng, n) for b in CIFAR_BATCHES}
    for b, data in raw.items():
        (folder / (b + ".bin")).write_bytes(data)
    return raw


def expected_from_raw(raw: dict[str, bytes]):
    """Keras-shaped ((x_train, y_train), (x_test, y_test)) from raw batch bytes."""
    parts = [decode_cifar_record_loop(raw[b]) for b in CIFAR_BATCHES]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]]).reshape(-1, 1)
    return (x_train, y_train), (parts[5][0], parts[5][1].reshape(-1, 1))


def cifar_python_pickle(data: bytes, protocol: int = 2) -> bytes:
    """A python-version batch (dict with bytes keys like the official Python 2 pickles)."""
    recs = np.frombuffer(data, np.uint8).reshape(-1, 3073)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in recs[:, 0]],
        b"data": recs[:, 1:].copy(),
        b"filenames": [b"img_%d.png" % i for i in range(len(recs))],
    }
    return pickle.dumps(batch, protocol=protocol)


def write_cifar_python(folder: Path, raw: dict[str, bytes], protocol: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for b, data in raw.items():
        (folder / b).write_bytes(cifar_python_pickle(data, protocol))


def write_tar_gz(archive: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz holding the given member paths and contents."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def cifar_bin_archive(archive: Path, raw: dict[str, bytes]) -> Path:
    members = {f"cifar-10-batches-bin/{b}.bin": d for b, d in raw.items()}
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    return write_tar_gz(archive, members)
