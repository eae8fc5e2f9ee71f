"""Fashion-MNIST (Zalando article images), read from the official IDX gzip files.

Same file format, shapes and dtypes as MNIST, and as ``keras.datasets.fashion_mnist``:
x uint8 (N, 28, 28) without a channel axis, y uint8 (N,) with the class index below.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._locate import DownloadSpec, FileSpec
from .mnist import IDX_NAMES, load_idx_dataset

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

SPEC = DownloadSpec(
    title="Fashion-MNIST",
    url_folder="fashion-mnist",
    official_bases=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=(
        FileSpec("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        FileSpec("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        FileSpec("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        FileSpec("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    cache_subdir="fashion-mnist",
    layout_hint="the four files " + ", ".join(f"fashion-mnist/{n}.gz" for n in IDX_NAMES),
)


def load_data(path: str | Path | None = None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                          tuple[np.ndarray, np.ndarray]]:
    """Load Fashion-MNIST: 60000 training and 10000 test 28x28 grey images, 10 classes.

    Args:
        path: a folder holding ``fashion-mnist/`` or the four IDX files themselves. When
            None: ``$PYCNN_DATA_DIR/fashion-mnist``, then the cache, then a download into
            the cache (MD5-checked), as for ``mnist.load_data``.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 (N, 28, 28), y uint8 (N,), as in
        ``keras.datasets.fashion_mnist.load_data()``. Class names: ``CLASS_NAMES``.

    Raises:
        DatasetNotFoundError: not on disk and not downloadable.
        CorruptDatasetError: a file is truncated or malformed (the message names it).
    """
    return load_idx_dataset(SPEC, path)
