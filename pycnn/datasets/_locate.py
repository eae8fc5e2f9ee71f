"""Find a dataset on disk (path argument, $PYCNN_DATA_DIR, cache) or download it.

Shared by the three loaders; each describes its files with :class:`FileSpec` and the
ways it can be stored with a ``find`` callback.
"""
from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from . import _download
from ._files import ChecksumError, DatasetNotFoundError, cache_dir, data_dir_from_env

T = TypeVar("T")


@dataclass(frozen=True)
class FileSpec:
    """One downloadable file: its name and its published MD5."""

    name: str
    md5: str


@dataclass(frozen=True)
class DownloadSpec:
    """Where a dataset comes from and where it goes in the cache.

    Attributes:
        title: human name used in messages, e.g. "CIFAR-10".
        url_folder: folder under ``$PYCNN_DATASETS_URL`` (and the mirror layout).
        official_bases: official base addresses, tried in order.
        files: the files to fetch.
        cache_subdir: folder under the cache root the files are stored in ("" = root).
        layout_hint: sentence telling a user which files to put where, relative to a data
            folder, e.g. "mnist/train-images-idx3-ubyte.gz, ...".
    """

    title: str
    url_folder: str
    official_bases: Sequence[str]
    files: Sequence[FileSpec]
    cache_subdir: str
    layout_hint: str


def locate(spec: DownloadSpec, path: str | Path | None, find: Callable[[Path], T | None],
           describe_missing: Callable[[Path], str]) -> T:
    """Return ``find(root)`` for the first root that holds the dataset, downloading if needed.

    Args:
        spec: the dataset's download description.
        path: the user's ``path`` argument; when given it is the only place searched.
        find: returns a handle (whatever the loader needs) when ``root`` holds the dataset,
            else None. ``root`` may be a data folder, the dataset's own folder or a file.
        describe_missing: explains what is missing under an explicit ``path``.

    Raises:
        DatasetNotFoundError: explicit ``path`` lacks the data, or the download failed.
        ChecksumError: a downloaded file has the wrong checksum.
    """
    if path is not None:
        root = Path(path).expanduser()
        found = find(root) if root.exists() else None
        if found is None:
            raise DatasetNotFoundError(
                f"load_data() expected the {spec.title} dataset at path={str(path)!r}. "
                f"{describe_missing(root)} Expected {spec.layout_hint}."
            )
        return found
    env_dir = data_dir_from_env()
    if env_dir is not None and env_dir.exists():
        found = find(env_dir)
        if found is not None:
            return found
    cache = cache_dir()
    found = find(cache) if cache.exists() else None
    if found is not None:
        return found
    _fetch_all(spec, cache)
    found = find(cache)
    if found is None:  # downloaded files are checksummed, so this means a logic error
        raise RuntimeError(f"{spec.title} was downloaded to {cache} but cannot be found there.")
    return found


def _fetch_all(spec: DownloadSpec, cache: Path) -> None:
    target_dir = cache / spec.cache_subdir if spec.cache_subdir else cache
    for file in spec.files:
        dest = target_dir / file.name
        if dest.exists():
            continue
        errors = []
        for base in _bases(spec):
            url = _download.resolve_url(base, spec.url_folder, file.name)
            try:
                _download.download(url, dest, file.md5)
                break
            except ChecksumError:
                raise
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise DatasetNotFoundError(
                f"The {spec.title} dataset is not on this machine and could not be downloaded "
                f"({'; '.join(errors)}). Download it yourself and place {spec.layout_hint} "
                f"in the cache folder {str(cache)!r} or in a folder named by the PYCNN_DATA_DIR "
                "environment variable, or pass path= to load_data()."
            )


def _bases(spec: DownloadSpec) -> Sequence[str]:
    # With $PYCNN_DATASETS_URL set, resolve_url ignores the base, so one try is enough.
    return spec.official_bases[:1] if os.environ.get("PYCNN_DATASETS_URL") else spec.official_bases
