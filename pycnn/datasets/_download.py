"""Download one file with a progress bar, verify its MD5 and store it atomically.

The file is streamed into a temporary file next to its destination, hashed on the fly,
and moved into place with ``os.replace`` only when the checksum matches, so an
interrupted or corrupted download never leaves a file under the final name.

``$PYCNN_DATASETS_URL`` replaces the official base addresses (tests serve files from a
local HTTP server this way; a mirror works the same way). Under it the files are
fetched from ``<PYCNN_DATASETS_URL>/<dataset folder>/<file name>``, e.g.
``http://127.0.0.1:8000/mnist/train-images-idx3-ubyte.gz``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import TextIO

from .. import _tempfiles
from ._files import ChecksumError

CHUNK = 1 << 16
TIMEOUT_S = 30


def resolve_url(official_base: str, folder: str, filename: str) -> str:
    """The address of ``filename``: ``$PYCNN_DATASETS_URL/<folder>/`` if set, else official."""
    override = os.environ.get("PYCNN_DATASETS_URL")
    if override:
        return f"{override.rstrip('/')}/{folder}/{filename}"
    return f"{official_base.rstrip('/')}/{filename}"


class _Progress:
    """Byte progress on a stream: a redrawn bar on a terminal, a few plain lines otherwise."""

    def __init__(self, label: str, total: int | None, stream: TextIO):
        self.label, self.total, self.stream = label, total, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.next_fraction = 0.25  # non-terminal streams get a line at 25/50/75/100 %

    def update(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if self.tty:
            if final or now - self.last_draw >= 0.1:
                self.last_draw = now
                self.stream.write("\r" + self._line(done, now))
                if final:
                    self.stream.write("\n")
                self.stream.flush()
        elif self.total:
            while done >= self.next_fraction * self.total and self.next_fraction <= 1.0:
                self.stream.write(self._line(done, now) + "\n")
                self.next_fraction += 0.25
            self.stream.flush()
        elif final:
            self.stream.write(self._line(done, now) + "\n")
            self.stream.flush()

    def _line(self, done: int, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        speed = f"{done / elapsed / 1e6:.1f} MB/s"
        if self.total:
            width = 30
            filled = min(width, int(width * done / self.total))
            bar = "\u2501" * filled + "\u2500" * (width - filled)
            return (f"{self.label} {bar} {done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
                    f"{100 * done / self.total:3.0f}% {speed}")
        return f"{self.label} {done / 1e6:.1f} MB {speed}"


def download(url: str, dest: Path, md5: str, *, stream: TextIO | None = None) -> Path:
    """Fetch ``url`` into ``dest`` (atomically), checking its MD5.

    Args:
        url: http(s) address.
        dest: final path; its folder is created if needed.
        md5: expected lowercase hex MD5 of the whole file.
        stream: where the progress bar goes (default ``sys.stderr``).

    Returns:
        ``dest``.

    Raises:
        ChecksumError: the downloaded bytes do not have the expected MD5 (nothing is kept).
        OSError: the address cannot be reached (``urllib.error.URLError`` is an OSError).
    """
    dest = Path(dest)
    stream = sys.stderr if stream is None else stream
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _tempfiles.make_temp(dest, ".part")  # also removes what killed downloads left
    digest = hashlib.md5()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                progress = _Progress(f"Downloading {dest.name}", total, stream)
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    progress.update(done)
                progress.update(done, final=True)
        if total is not None and done != total:
            raise ChecksumError(
                f"Download of {url} was cut short: expected {total} bytes. Received: {done} bytes."
            )
        if digest.hexdigest() != md5.lower():
            raise ChecksumError(
                f"Downloaded file {dest.name} from {url} expected MD5 {md5.lower()}. Received: "
                f"MD5 {digest.hexdigest()} ({done} bytes). The file was not kept; the server or "
                "mirror may be serving a different or damaged file."
            )
        os.replace(tmp_name, dest)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return dest
