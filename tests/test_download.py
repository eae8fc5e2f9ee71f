"""Downloads from a local HTTP server on 127.0.0.1 (never the real network): checksum
accepted, checksum mismatch, server unreachable, and the full load_data() path."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from dataset_fixtures import IDX_NAMES, cifar_bin_archive, expected_from_raw, write_cifar_bin, write_idx_dataset

from pycnn import datasets
from pycnn.datasets import _download, cifar10, fashion_mnist, mnist
from pycnn.datasets._locate import FileSpec

REAL_DATA = os.environ.get("PYCNN_DATA_DIR")  # read before the autouse fixture clears it
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requested.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields (base_url, www_dir, list_of_requested_paths)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_QuietHandler, directory=str(www)))
    httpd.requested = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www, httpd.requested
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("PYCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PYCNN_DATA_DIR", raising=False)
    monkeypatch.delenv("PYCNN_DATASETS_URL", raising=False)
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- download()

def test_download_ok_writes_atomically_with_progress(server, tmp_path, rng):
    base, www, _ = server
    payload = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (www / "blob.bin").write_bytes(payload)
    stream = io.StringIO()
    dest = tmp_path / "cache" / "sub" / "blob.bin"
    out = _download.download(f"{base}/blob.bin", dest, hashlib.md5(payload).hexdigest(), stream=stream)
    assert out == dest and dest.read_bytes() == payload
    assert _leftovers(dest.parent) == ["blob.bin"]  # no temporary .part file left behind
    text = stream.getvalue()
    assert "\r" not in text  # not a terminal: plain lines only
    assert "Downloading blob.bin" in text and "100%" in text and "0.3/0.3 MB" in text


def test_download_checksum_mismatch_keeps_nothing(server, tmp_path):
    base, www, _ = server
    (www / "blob.bin").write_bytes(b"not what was published")
    dest = tmp_path / "cache" / "blob.bin"
    with pytest.raises(datasets.ChecksumError,
                       match=r"blob\.bin from http://127\.0\.0\.1:\d+/blob\.bin expected MD5 0{32}\. "
                             r"Received: MD5 [0-9a-f]{32} \(22 bytes\)"):
        _download.download(f"{base}/blob.bin", dest, "0" * 32, stream=io.StringIO())
    assert _leftovers(tmp_path / "cache") == []
    assert isinstance(datasets.ChecksumError("x"), ValueError)


def test_download_http_error_keeps_nothing(server, tmp_path):
    base, _, _ = server
    with pytest.raises(OSError, match="404"):
        _download.download(f"{base}/missing.bin", tmp_path / "cache" / "m.bin", "0" * 32,
                           stream=io.StringIO())
    assert _leftovers(tmp_path / "cache") == []


def test_resolve_url(monkeypatch):
    assert _download.resolve_url("https://host/dir/", "mnist", "f.gz") == "https://host/dir/f.gz"
    monkeypatch.setenv("PYCNN_DATASETS_URL", "http://127.0.0.1:9/mirror/")
    assert _download.resolve_url("https://host/dir/", "mnist", "f.gz") == "http://127.0.0.1:9/mirror/mnist/f.gz"


# ----------------------------------------------------------------------------- load_data()

def _with_md5s(module, folder: Path, monkeypatch):
    """Point module.SPEC's checksums at the fixture files in ``folder``."""
    files = tuple(FileSpec(f.name, _md5(folder / f.name)) for f in module.SPEC.files)
    monkeypatch.setattr(module, "SPEC", dataclasses.replace(module.SPEC, files=files))


def test_mnist_download_then_cached(server, tmp_path, rng, monkeypatch, capfd):
    base, www, requested = server
    arrays = write_idx_dataset(www / "fashion-mnist", rng)
    _with_md5s(fashion_mnist, www / "fashion-mnist", monkeypatch)
    monkeypatch.setenv("PYCNN_DATASETS_URL", base)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    np.testing.assert_array_equal(x_train, arrays[IDX_NAMES[0]])
    np.testing.assert_array_equal(y_test, arrays[IDX_NAMES[3]])
    assert sorted(requested) == sorted(f"/fashion-mnist/{n}.gz" for n in IDX_NAMES)
    assert _leftovers(tmp_path / "cache") == sorted(n + ".gz" for n in IDX_NAMES)
    assert "Downloading train-images-idx3-ubyte.gz" in capfd.readouterr().err  # progress on stderr
    fashion_mnist.load_data()  # second call reads the cache
    assert len(requested) == 4


def test_cifar_download_archive(server, tmp_path, rng, monkeypatch):
    base, www, requested = server
    raw = write_cifar_bin(tmp_path / "src", rng, n=3)
    cifar_bin_archive(www / "cifar10" / "cifar-10-binary.tar.gz", raw)
    _with_md5s(cifar10, www / "cifar10", monkeypatch)
    monkeypatch.setenv("PYCNN_DATASETS_URL", base)
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    (ex, ey), (ext, eyt) = expected_from_raw(raw)
    np.testing.assert_array_equal(x_train, ex)
    np.testing.assert_array_equal(y_train, ey)
    np.testing.assert_array_equal(x_test, ext)
    assert requested == ["/cifar10/cifar-10-binary.tar.gz"]
    assert _leftovers(tmp_path / "cache") == ["cifar-10-binary.tar.gz"]


def test_real_mnist_served_locally_matches_published_md5(server, tmp_path, monkeypatch):
    """The unpatched SPEC (README checksums) accepts the real files, byte for byte."""
    real = REAL_DATA
    if not real or not (Path(real) / "mnist").is_dir():
        pytest.skip("PYCNN_DATA_DIR is unset or has no mnist/ folder (set PYCNN_DATA_DIR=../shared/data)")
    base, www, _ = server
    shutil.copytree(Path(real) / "mnist", www / "mnist")
    monkeypatch.setenv("PYCNN_DATASETS_URL", base)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and y_test.shape == (10000,)
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_checksum_mismatch_through_load_data(server, tmp_path, rng, monkeypatch):
    base, www, _ = server
    write_idx_dataset(www / "mnist", rng)  # tiny files: not the published MNIST checksums
    monkeypatch.setenv("PYCNN_DATASETS_URL", base)
    with pytest.raises(datasets.ChecksumError,
                       match=r"train-images-idx3-ubyte\.gz .*expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        mnist.load_data()
    assert _leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("module, files", [
    (mnist, [f"mnist/{n}.gz" for n in IDX_NAMES]),
    (cifar10, ["cifar-10-binary.tar.gz", "cifar-10-batches-bin/", "test_batch.bin"]),
])
def test_no_network_gives_helpful_message(tmp_path, monkeypatch, module, files):
    monkeypatch.setenv("PYCNN_DATASETS_URL", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        module.load_data()
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert "could not be downloaded" in message and "127.0.0.1" in message
    assert "PYCNN_DATA_DIR" in message and str(tmp_path / "cache") in message
    for name in files:
        assert name in message
    assert not (tmp_path / "cache").exists() or _leftovers(tmp_path / "cache") == []
