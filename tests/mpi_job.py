"""A training job the MPI tests start with ``mpirun -np P python tests/mpi_job.py MODE OUT``
(and once without mpirun, as the single-process reference).

MODE: ``train`` writes the per-epoch history and the final weights to OUT (rank 0 only);
every rank seeds its own model differently, so equal results prove the broadcast.
``device`` is ``train`` on the CUDA executor's host emulation (compile(device="cuda-emulated"),
without the weight penalty, which the device step leaves to the CPU). ``raise`` makes rank 1 raise in the middle of the first epoch. ``checkpoint`` trains with a
ModelCheckpoint and a CSVLogger, each rank naming its own folder under OUT. ``early`` trains
with an EarlyStopping that fires after the second epoch; each rank writes its history.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

import pycnn
from pycnn import layers


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((203, 8, 8, 3)).astype(np.float32)  # 203: the last batch does not divide
    y = rng.integers(0, 5, 203)
    return x, y


def model(seed, device="cpu"):
    pycnn.utils.set_random_seed(seed)
    m = pycnn.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(6, 3, activation="relu"), layers.MaxPooling2D(2),
                          layers.Flatten(),
                          layers.Dense(16, activation="relu", kernel_regularizer="l2" if device == "cpu" else None),
                          layers.Dense(5, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy", "mae"], device=device)
    return m


def fit(m, epochs, callbacks=(), initial_epoch=0):
    x, y = data()
    w = np.linspace(0.5, 1.5, len(y)).astype(np.float32)
    return m.fit(x, y, batch_size=32, epochs=epochs, verbose=0, sample_weight=w, validation_data=(x[:50], y[:50]),
                 callbacks=list(callbacks), initial_epoch=initial_epoch)


def main(mode: str, out: str) -> None:
    world = pycnn.distributed.init()
    rank = pycnn.distributed.rank()
    x, y = data()
    m = model(100 + rank, "cuda-emulated" if mode == "device" else "cpu")  # different weights on every rank
    pycnn.utils.set_random_seed(7)  # shuffling: rank 0's generator is broadcast anyway
    if mode == "raise":
        class Fail(pycnn.callbacks.Callback):
            def on_batch_end(self, batch, logs=None):
                if rank == 1 and batch == 3:
                    raise RuntimeError("rank 1 fails on purpose")
        m.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Fail()])
        return
    callbacks = []
    epochs = 3
    if mode == "early":  # the logs are global, so EarlyStopping stops every rank after the same epoch
        h = fit(m, 10, [pycnn.callbacks.EarlyStopping(monitor="val_loss", min_delta=10.0, patience=1)])
        with open(f"{out}.rank{rank}.json", "w") as f:
            json.dump(h.history, f)
        return
    if mode == "checkpoint":  # each rank names its own folder: only rank 0's may fill up
        folder = os.path.join(out, f"rank{rank}")
        os.makedirs(folder, exist_ok=True)
        callbacks = [pycnn.callbacks.ModelCheckpoint(os.path.join(folder, "ckpt.npz"), save_weights_only=False),
                     pycnn.callbacks.CSVLogger(os.path.join(folder, "log.csv"))]
        epochs = 2
    h = fit(m, epochs, callbacks)
    ev = m.evaluate(x, y, batch_size=40)
    if mode == "checkpoint":
        return
    np.savez(f"{out}.rank{rank}.npz", **{f"w{i}": a for i, a in enumerate(m.get_weights())})
    if pycnn.distributed.is_primary():
        np.savez(out, history=json.dumps(h.history), evaluate=np.array(ev), world=world,
                 **{f"w{i}": a for i, a in enumerate(m.get_weights())})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
