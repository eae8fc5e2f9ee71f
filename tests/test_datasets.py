"""Dataset loaders: real shared files, tiny fixtures in the official formats, corrupt
files, and the restricted unpickler of the CIFAR-10 python version. Never touches the
network: every test points the cache at tmp_path and $PYCNN_DATASETS_URL at a closed port.
"""
from __future__ import annotations

import gzip
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

from dataset_fixtures import (CIFAR_BATCHES, IDX_NAMES, cifar_bin_archive, cifar_python_pickle,
                              decode_cifar_record_loop, expected_from_raw, idx_bytes,
                              write_cifar_bin, write_cifar_python, write_idx_dataset, write_tar_gz)

from pycnn import datasets
from pycnn.datasets import cifar10, fashion_mnist, mnist
from pycnn.datasets._files import RestrictedUnpickler, decode_cifar_python, decode_idx

REAL_DATA = os.environ.get("PYCNN_DATA_DIR")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Empty cache, no data dir, downloads aimed at a closed local port."""
    monkeypatch.setenv("PYCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PYCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("PYCNN_DATASETS_URL", _closed_port_url())
    monkeypatch.setenv("no_proxy", "*")


def _real_root() -> Path:
    if not REAL_DATA or not Path(REAL_DATA).is_dir():
        pytest.skip("PYCNN_DATA_DIR is unset or missing: the real datasets are not available "
                    "(set PYCNN_DATA_DIR=../shared/data)")
    return Path(REAL_DATA)


# ----------------------------------------------------------------------------- real files

@pytest.fixture(scope="module")
def real_cifar():
    root = _real_root()
    return cifar10.load_data(root)


def test_real_cifar10_shapes_counts_and_means(real_cifar):
    (x_train, y_train), (x_test, y_test) = real_cifar
    assert x_train.shape == (50000, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (50000, 1) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 32, 32, 3) and y_test.shape == (10000, 1)
    assert x_train.flags.c_contiguous
    np.testing.assert_array_equal(np.bincount(y_train.ravel()), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test.ravel()), [1000] * 10)
    # Per-batch counts published for the official batch 1.
    np.testing.assert_array_equal(np.bincount(y_train[:10000].ravel()),
                                  [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981])
    # Channel means and population stds (pixels / 255) from shared/data/README.md; a
    # wrong decode (planes read as interleaved RGB) mixes the channels and fails this.
    mean, std = _channel_stats(x_train)
    np.testing.assert_allclose(mean, [0.49139968, 0.48215841, 0.44653091], atol=1e-8)
    np.testing.assert_allclose(std, [0.24703223, 0.24348513, 0.26158784], atol=1e-8)
    mean, std = _channel_stats(x_test)
    np.testing.assert_allclose(mean, [0.49421428, 0.48513139, 0.45040909], atol=1e-8)
    np.testing.assert_allclose(std, [0.24665252, 0.24289226, 0.26159238], atol=1e-8)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and population std of x / 255, from 256-bin histograms
    (no float copy of the 150 MB array)."""
    values = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for c in range(x.shape[-1]):
        hist = np.bincount(x[..., c].ravel(), minlength=256).astype(np.float64)
        mean = hist @ values / hist.sum()
        means.append(mean)
        stds.append(np.sqrt(hist @ (values - mean) ** 2 / hist.sum()))
    return np.array(means), np.array(stds)


def test_real_cifar10_first_record_matches_per_record_decode(real_cifar):
    root = _real_root()
    with open(root / "cifar-10-batches-bin" / "data_batch_1.bin", "rb") as f:
        head = f.read(3 * 3073)
    x_ref, y_ref = decode_cifar_record_loop(head)
    (x_train, y_train), _ = real_cifar
    np.testing.assert_array_equal(x_train[:3], x_ref)
    np.testing.assert_array_equal(y_train[:3, 0], y_ref)


def test_real_cifar10_found_through_env(monkeypatch):
    root = _real_root()
    monkeypatch.setenv("PYCNN_DATA_DIR", str(root))
    (_, y_train), (x_test, _) = cifar10.load_data()
    assert y_train.shape == (50000, 1) and x_test.shape == (10000, 32, 32, 3)


@pytest.mark.parametrize("module, counts_train, counts_test, mean_train, mean_test", [
    (mnist, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
     [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], 0.13066048, 0.13251461),
    (fashion_mnist, [6000] * 10, [1000] * 10, 0.28604060, 0.28684928),
])
def test_real_mnist_family(monkeypatch, module, counts_train, counts_test, mean_train, mean_test):
    root = _real_root()
    monkeypatch.setenv("PYCNN_DATA_DIR", str(root))
    (x_train, y_train), (x_test, y_test) = module.load_data()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(y_train), counts_train)
    np.testing.assert_array_equal(np.bincount(y_test), counts_test)
    assert x_train.mean(dtype=np.float64) / 255 == pytest.approx(mean_train, abs=1e-8)
    assert x_test.mean(dtype=np.float64) / 255 == pytest.approx(mean_test, abs=1e-8)


# ----------------------------------------------------------------------------- fixtures: IDX

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("module, folder", [(mnist, "mnist"), (fashion_mnist, "fashion-mnist")])
def test_idx_fixture_roundtrip(tmp_path, rng, module, folder, gz):
    arrays = write_idx_dataset(tmp_path / "data" / folder, rng, gz=gz)
    for path in (tmp_path / "data", tmp_path / "data" / folder):  # data root or own folder
        (x_train, y_train), (x_test, y_test) = module.load_data(path)
        np.testing.assert_array_equal(x_train, arrays[IDX_NAMES[0]])
        np.testing.assert_array_equal(y_train, arrays[IDX_NAMES[1]])
        np.testing.assert_array_equal(x_test, arrays[IDX_NAMES[2]])
        np.testing.assert_array_equal(y_test, arrays[IDX_NAMES[3]])
        assert x_train.dtype == np.uint8 and x_train.shape == (12, 28, 28) and y_train.shape == (12,)


def test_search_order_env_then_cache(tmp_path, rng, monkeypatch):
    cache_arrays = write_idx_dataset(tmp_path / "cache" / "mnist", rng)
    (x_train, _), _ = mnist.load_data()  # only the cache has it
    np.testing.assert_array_equal(x_train, cache_arrays[IDX_NAMES[0]])
    env_arrays = write_idx_dataset(tmp_path / "env" / "mnist", rng, n_train=3)
    monkeypatch.setenv("PYCNN_DATA_DIR", str(tmp_path / "env"))
    (x_train, _), _ = mnist.load_data()  # the data dir wins over the cache
    np.testing.assert_array_equal(x_train, env_arrays[IDX_NAMES[0]])
    monkeypatch.setenv("PYCNN_DATA_DIR", str(tmp_path / "nowhere"))
    (x_train, _), _ = mnist.load_data()  # a data dir without the dataset falls through
    np.testing.assert_array_equal(x_train, cache_arrays[IDX_NAMES[0]])


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("PYCNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_dir() == tmp_path / "xdg" / "pycnn" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.cache_dir() == Path.home() / ".cache" / "pycnn" / "datasets"


def test_explicit_path_without_data_names_missing_files(tmp_path, rng):
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, rng)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(datasets.DatasetNotFoundError,
                       match=r"expected the MNIST dataset at path=.*Missing in .*t10k-labels-idx1-ubyte\.gz"):
        mnist.load_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="That path does not exist"):
        fashion_mnist.load_data(tmp_path / "absent")


def _corrupt_idx_case(folder: Path, case: str) -> str:
    """Damage one file of a fixture; returns the name the error must mention."""
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    data = gzip.decompress(images.read_bytes())
    if case == "truncated_payload":
        images.write_bytes(gzip.compress(data[:-1]))
    elif case == "extra_bytes":
        images.write_bytes(gzip.compress(data + b"\0"))
    elif case == "bad_magic":
        images.write_bytes(gzip.compress(b"\0\0\x08\x01" + data[4:]))
    elif case == "truncated_header":
        images.write_bytes(gzip.compress(data[:10]))
    elif case == "truncated_gzip":
        raw = images.read_bytes()
        images.write_bytes(raw[: len(raw) // 2])
        return "train-images-idx3-ubyte.gz"
    elif case == "not_gzip":
        images.write_bytes(b"this is not gzip data at all")
    elif case == "label_count":
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(11, np.uint8))))
        return "train-labels-idx1-ubyte"
    elif case == "label_range":
        labels.write_bytes(gzip.compress(idx_bytes(np.full(12, 10, np.uint8))))
        return "train-labels-idx1-ubyte"
    elif case == "image_size":
        images.write_bytes(gzip.compress(idx_bytes(np.zeros((12, 28, 27), np.uint8))))
    return "train-images-idx3-ubyte"


@pytest.mark.parametrize("case, message", [
    ("truncated_payload", r"expected 9424 bytes\. Received: 9423 bytes"),
    ("extra_bytes", r"expected 9424 bytes\. Received: 9425 bytes"),
    ("bad_magic", r"expected magic number 0x00000803"),
    ("truncated_header", r"truncated inside its header"),
    ("truncated_gzip", r"truncated or not a valid gzip file"),
    ("not_gzip", r"truncated or not a valid gzip file"),
    ("label_count", r"same number of samples"),
    ("label_range", r"expected labels in \[0, 9\]\. Received: a label of 10"),
    ("image_size", r"expected images of size \(28, 28\)"),
])
def test_corrupt_idx_raises_naming_file(tmp_path, rng, case, message):
    folder = tmp_path / "mnist"
    write_idx_dataset(folder, rng)
    name = _corrupt_idx_case(folder, case)
    with pytest.raises(datasets.CorruptDatasetError, match=message) as info:
        mnist.load_data(folder)
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decode_idx_rejects_wrong_rank():
    with pytest.raises(datasets.CorruptDatasetError, match=r"magic number 0x00000801.*0x00000803"):
        decode_idx(idx_bytes(np.zeros((2, 28, 28), np.uint8)), "x", 1)


# ----------------------------------------------------------------------------- fixtures: CIFAR

def _check_cifar(result, raw):
    (x_train, y_train), (x_test, y_test) = result
    (ex_train, ey_train), (ex_test, ey_test) = expected_from_raw(raw)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert x_train.shape == (30, 32, 32, 3) and y_train.shape == (30, 1)
    assert x_test.shape == (6, 32, 32, 3) and y_test.shape == (6, 1)
    np.testing.assert_array_equal(x_train, ex_train)
    np.testing.assert_array_equal(y_train, ey_train)
    np.testing.assert_array_equal(x_test, ex_test)
    np.testing.assert_array_equal(y_test, ey_test)


def test_cifar_bin_folder(tmp_path, rng):
    raw = write_cifar_bin(tmp_path / "cifar-10-batches-bin", rng)
    _check_cifar(cifar10.load_data(tmp_path), raw)
    _check_cifar(cifar10.load_data(tmp_path / "cifar-10-batches-bin"), raw)


def test_cifar_bin_archive_read_without_extracting(tmp_path, rng):
    raw = write_cifar_bin(tmp_path / "src", rng)
    archive = cifar_bin_archive(tmp_path / "data" / "cifar-10-binary.tar.gz", raw)
    _check_cifar(cifar10.load_data(tmp_path / "data"), raw)
    _check_cifar(cifar10.load_data(archive), raw)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-binary.tar.gz"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_python_version(tmp_path, rng, protocol):
    raw = write_cifar_bin(tmp_path / "src", rng)
    write_cifar_python(tmp_path / "data" / "cifar-10-batches-py", raw, protocol)
    _check_cifar(cifar10.load_data(tmp_path / "data"), raw)
    members = {f"cifar-10-batches-py/{b}": cifar_python_pickle(d, protocol) for b, d in raw.items()}
    archive = write_tar_gz(tmp_path / "arch" / "cifar-10-python.tar.gz", members)
    _check_cifar(cifar10.load_data(archive), raw)


def test_cifar_found_in_cache(tmp_path, rng):
    raw = write_cifar_bin(tmp_path / "src", rng)
    cifar_bin_archive(tmp_path / "cache" / "cifar-10-binary.tar.gz", raw)
    _check_cifar(cifar10.load_data(), raw)


@pytest.mark.parametrize("case, message", [
    ("short_by_one_byte", r"data_batch_3\.bin.*expected a positive multiple of 3073 bytes.*Received: 18437 bytes"),
    ("short_by_one_record", r"same number of records.*data_batch_3=5"),
    ("empty", r"data_batch_3\.bin.*Received: 0 bytes"),
    ("label_out_of_range", r"data_batch_3\.bin.*expected labels in \[0, 9\]\. Received: a label of 200"),
])
def test_corrupt_cifar_bin(tmp_path, rng, case, message):
    raw = write_cifar_bin(tmp_path, rng)
    data = bytearray(raw["data_batch_3"])
    if case == "short_by_one_byte":
        data = data[:-1]
    elif case == "short_by_one_record":
        data = data[:-3073]
    elif case == "empty":
        data = b""
    else:
        data[3073] = 200
    (tmp_path / "data_batch_3.bin").write_bytes(bytes(data))
    with pytest.raises(datasets.CorruptDatasetError, match=message):
        cifar10.load_data(tmp_path)


def test_corrupt_cifar_archive(tmp_path, rng):
    raw = write_cifar_bin(tmp_path / "src", rng)
    archive = cifar_bin_archive(tmp_path / "a" / "cifar-10-binary.tar.gz", raw)
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(datasets.CorruptDatasetError, match=r"cifar-10-binary\.tar\.gz.*truncated or corrupt"):
        cifar10.load_data(archive)
    del raw["test_batch"]
    incomplete = write_tar_gz(tmp_path / "b" / "cifar-10-binary.tar.gz",
                              {f"cifar-10-batches-bin/{b}.bin": d for b, d in raw.items()})
    with pytest.raises(datasets.CorruptDatasetError, match=r"expected members.*test_batch"):
        cifar10.load_data(incomplete)


# ----------------------------------------------------------------------------- unpickler

class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalsCode:
    def __reduce__(self):
        import builtins
        return (builtins.eval, ("1 + 1",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _RunsShell(f"touch {marker}"), b"labels": []}, protocol=2)
    with pytest.raises(datasets.CorruptDatasetError, match=r"refusing to load global (posix|os|nt)\.system"):
        decode_cifar_python(payload, "evil_batch")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global builtins\.eval"):
        RestrictedUnpickler(__import__("io").BytesIO(pickle.dumps(_EvalsCode()))).load()


def test_malicious_member_in_python_archive(tmp_path, rng):
    raw = write_cifar_bin(tmp_path / "src", rng)
    marker = tmp_path / "pwned"
    members = {f"cifar-10-batches-py/{b}": cifar_python_pickle(d) for b, d in raw.items()}
    members["cifar-10-batches-py/data_batch_2"] = pickle.dumps(_RunsShell(f"touch {marker}"))
    archive = write_tar_gz(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(datasets.CorruptDatasetError, match=r"data_batch_2.*refusing to load global"):
        cifar10.load_data(archive)
    assert not marker.exists()


@pytest.mark.parametrize("obj, message", [
    (np.array([1, "a"], dtype=object), r"refusing dtype"),
    (np.zeros(3, dtype=[("a", "u1"), ("b", "u1")]), r"refusing"),
    (np.ma.masked_array([1, 2]), r"refusing to load global numpy\.ma"),
    (np.arange(3, dtype=np.complex64), r"refusing dtype"),
])
def test_restricted_unpickler_refuses_non_plain_arrays(obj, message):
    for protocol in (2, 4, 5):
        with pytest.raises(pickle.UnpicklingError, match=message):
            RestrictedUnpickler(__import__("io").BytesIO(pickle.dumps(obj, protocol=protocol)),
                                encoding="bytes").load()


def test_restricted_unpickler_reads_plain_data():
    obj = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "f": np.float32(0) + np.ones(2, ">f4"),
           b"labels": [1, 2, 3], "t": (1, b"x", "y")}
    for protocol in (2, 3, 4, 5):
        out = RestrictedUnpickler(__import__("io").BytesIO(pickle.dumps(obj, protocol=protocol)),
                                  encoding="bytes").load()
        np.testing.assert_array_equal(out[b"data"], obj[b"data"])
        assert out[b"data"].dtype == np.uint8
        np.testing.assert_array_equal(out["f"], [1.0, 1.0])
        assert out[b"labels"] == [1, 2, 3] and out["t"] == (1, b"x", "y")


def test_python_batch_with_wrong_content(rng):
    bad = pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, protocol=2)
    with pytest.raises(datasets.CorruptDatasetError, match=r"'data' to be a uint8 array"):
        decode_cifar_python(bad, "b")
    bad = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2)
    with pytest.raises(datasets.CorruptDatasetError, match=r"'labels' to be a list of 2 integers"):
        decode_cifar_python(bad, "b")
    good = cifar_python_pickle(bytes(3073))
    with pytest.raises(datasets.CorruptDatasetError, match=r"'half_batch' could not be unpickled.*truncated"):
        decode_cifar_python(good[: len(good) // 2], "half_batch")


# ----------------------------------------------------------------------------- helpers

def test_load_float_and_names(tmp_path, rng):
    arrays = write_idx_dataset(tmp_path / "fashion-mnist", rng)
    (x, y), (xt, yt) = datasets.load_float("fashion-mnist", tmp_path)
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], arrays[IDX_NAMES[0]] / np.float32(255))
    assert xt.shape == (5, 28, 28, 1) and yt.shape == (5,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert datasets.class_names("cifar10")[3] == "cat"
    assert datasets.class_names("fashion_mnist")[9] == "Ankle boot"
    with pytest.raises(ValueError, match=r"Unknown dataset: expected one of cifar10, fashion_mnist, mnist\. Received: name='svhn'"):
        datasets.load("svhn")
    assert set(CIFAR_BATCHES) == set(cifar10.BATCHES)
