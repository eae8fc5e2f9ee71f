"""LeNet on a slice of the real CIFAR-10 (10000 training, 2000 test images, 2 epochs)
through the Python API must clear 35% test accuracy (chance is 10%)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = os.environ.get("PYCNN_DATA_DIR")

pytestmark = pytest.mark.skipif(
    not REAL_DATA or not (Path(REAL_DATA) / "cifar-10-batches-bin").is_dir(),
    reason="PYCNN_DATA_DIR is unset or has no cifar-10-batches-bin/ (set PYCNN_DATA_DIR=../shared/data)")


def test_lenet_two_epochs_on_cifar10_slice():
    import pycnn
    from pycnn import datasets, models, optimizers, utils

    utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data()
    x_train, y_train = datasets.to_float(x_train[:10000]), y_train[:10000]
    x_test, y_test = datasets.to_float(x_test[:2000]), y_test[:2000]
    assert x_train.dtype == np.float32 and float(x_train.max()) <= 1.0

    model = models.lenet((32, 32, 3), 10)
    model.compile(optimizer=optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=64, epochs=2,
                        validation_data=(x_test, y_test), verbose=0)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)[:2]
    print(f"LeNet CIFAR-10 slice: {seconds:.1f} s for 2 epochs on {pycnn.get_num_threads()} "
          f"threads, test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    assert history.history["loss"][1] < history.history["loss"][0]
    assert accuracy > 0.35
    assert history.history["val_accuracy"][-1] == pytest.approx(accuracy, abs=1e-6)
