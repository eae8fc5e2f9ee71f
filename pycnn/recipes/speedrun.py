"""airbench94's CIFAR-10 recipe on pycnn (Jordan, "94% on CIFAR-10 in 3.29 seconds on a single
GPU", 2024: github.com/KellerJordan/cifar10-airbench): :func:`pycnn.models.speedrun_cifar10`
trained for 11 epochs at batch 1024 (airbench94 trains 9.9: here that gave 93.94-94.14% with
test-time augmentation over seven runs, a mean of 94.03%, on the 94% line; 11 epochs cost about 1.3
minutes more), then evaluated with test-time augmentation.

What it does, in Keras's terms (airbench's PyTorch values translated):

* Data: images / 255, normalised per channel with CIFAR-10's mean and standard deviation;
  every epoch a new random translation of up to 2 pixels (reflected borders) and the
  "alternating flip" (a random half mirrored, all images mirrored in odd epochs:
  :class:`pycnn.augment.AlternatingFlip`); 48 batches of 1024 per epoch (the last 336 images
  of each shuffled epoch left out), 528 steps in all.
* The first layer's kernel is the patch-whitening kernel of 5,000 training images
  (:func:`pycnn.initializers.patch_whitening_kernel`) and stays frozen; its bias trains for
  3 epochs, then freezes too.
* Loss: sparse categorical cross-entropy on logits with ``label_smoothing=0.2``.
* Optimizer: ``SGD(momentum=0.85, nesterov=True)`` at a peak rate of 1.5 (airbench's
  11.5 per 1024 examples with its sum-reduced loss and normalised momentum, for a mean loss),
  ``PiecewiseLinearDecay`` 0.2 -> 1 -> 0.07 times that with the peak at 23% of the steps,
  BatchNormalization betas at 64 times the rate (``learning_rate_multipliers``), decoupled
  ``weight_decay`` 0.00887 (airbench's 0.0153 per 1024 examples, which acts through its
  momentum buffer: 0.0153 / 7.667 / (1 - 0.85) per unit rate at the peak).
* Lookahead from epoch 3: every 5 steps the slow weights (BN statistics included) move toward
  the model's by ``1 - 0.95**5 * (step / 528)**3`` and the model takes them
  (:class:`pycnn.callbacks.Lookahead`).
* Test: accuracy without and with test-time augmentation ``"flip_translate"``
  (:mod:`pycnn.tta`).

:func:`run` returns the results; :func:`main` is the command line's
``python -m pycnn train --recipe speedrun``.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Dict, Optional, TextIO, Tuple

import numpy as np

from .. import augment, callbacks, initializers, losses, optimizers, schedules, utils
from ..applications import speedrun_cifar10

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)

#: airbench94's hyper-parameters, in the units this module uses (see the module docstring).
HYPER: Dict[str, Any] = {
    "epochs": 11, "batch_size": 1024, "learning_rate": 1.5, "momentum": 0.85, "weight_decay": 0.00887,
    "beta_rate_multiplier": 64.0, "label_smoothing": 0.2, "warmup_start": 0.2, "peak_at": 0.23, "end": 0.07,
    "lookahead_start_epoch": 3, "lookahead_period": 5, "lookahead_decay": 0.95, "lookahead_power": 3.0,
    "whiten_bias_epochs": 3, "whiten_images": 5000, "whiten_epsilon": 5e-4, "translate": 2,
    "width": 64,  # the first group's filters (the others 4x): smaller for smoke runs
}


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 32, 32, 3) -> float32, / 255, minus the channel means, over the deviations."""
    x = np.asarray(images, dtype=np.float32) / np.float32(255.0)
    x -= MEAN
    x /= STD
    return x


class EpochBatches:
    """The training batches of one epoch (a PyDataset: ``len``, ``[i]``, ``on_epoch_end``):
    every epoch the images are flipped (alternating) and translated anew and reshuffled;
    the remainder of ``n // batch_size`` batches is left out, as airbench's loader does."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: Optional[int], translate: int) -> None:
        self.x, self.y = x, np.asarray(y).reshape(-1)
        self.batch_size, self.translate = batch_size, translate
        self.flip = augment.AlternatingFlip(len(x), seed=seed)
        self.rng = np.random.default_rng(None if seed is None else seed + 1)
        self.epoch = 0
        self._prepare()

    def _prepare(self) -> None:
        flipped = np.where(self.flip.flips(self.epoch)[:, None, None, None], self.x[:, :, ::-1], self.x)
        if self.translate:
            flipped = augment.random_translate(flipped, self.translate, self.rng, mode="reflect")
        self.images = flipped
        self.order = self.rng.permutation(len(self.x))

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.images[idx], self.y[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._prepare()


class _Schedule(callbacks.Callback):
    """Freezes the whitening bias after its epochs, stops after the last step, prints each
    epoch's time and speed."""

    def __init__(self, total_steps: int, batch_size: int, whiten_bias_epochs: int, out: Optional[TextIO]) -> None:
        super().__init__()
        self.total_steps, self.batch_size, self.whiten_bias_epochs, self.out = \
            total_steps, batch_size, whiten_bias_epochs, out
        self.steps = 0
        self.epoch_start = 0.0
        self.epoch_steps = 0
        self.epoch_seconds: list = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if epoch == self.whiten_bias_epochs:
            self.model.get_layer("whiten").set_weight_trainable("bias", False)
        self.epoch_start, self.epoch_steps = time.perf_counter(), 0

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        self.steps += 1
        self.epoch_steps += 1
        if self.steps >= self.total_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        seconds = time.perf_counter() - self.epoch_start
        self.epoch_seconds.append(seconds)
        if self.out is not None:
            logs = logs or {}
            speed = self.epoch_steps * self.batch_size / seconds
            print(f"epoch {epoch + 1:2d}  loss {logs.get('loss', math.nan):.4f}  "
                  f"accuracy {logs.get('accuracy', math.nan):.4f}  {seconds:6.1f} s  {speed:6.0f} images/s",
                  file=self.out, flush=True)


def build(x_train: np.ndarray, hyper: Dict[str, Any], total_steps: int) -> Any:
    """The compiled model, its first layer whitened on the first training images."""
    model = speedrun_cifar10(width=hyper["width"])
    whiten = model.get_layer("whiten")
    kernel = initializers.patch_whitening_kernel(x_train[:hyper["whiten_images"]], 2, hyper["whiten_epsilon"])
    whiten.set_weights([kernel, np.zeros(kernel.shape[-1], np.float32)])
    whiten.set_weight_trainable("kernel", False)
    lr = hyper["learning_rate"]
    peak = max(1, int(hyper["peak_at"] * total_steps))  # (a smoke run of a step or two still has a peak)
    schedule = schedules.PiecewiseLinearDecay([0, peak, max(total_steps, peak + 1)],
                                              [hyper["warmup_start"] * lr, lr, hyper["end"] * lr])
    optimizer = optimizers.SGD(schedule, momentum=hyper["momentum"], nesterov=True,
                               weight_decay=hyper["weight_decay"],
                               learning_rate_multipliers={r"_norm\d/beta$": hyper["beta_rate_multiplier"]})
    model.compile(optimizer=optimizer,
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True,
                                                            label_smoothing=hyper["label_smoothing"]),
                  metrics=["accuracy"])
    return model


def run(data: Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]], seed: Optional[int] = None,
        epochs: Optional[float] = None, verbose: bool = True, out: Optional[TextIO] = None,
        **overrides: Any) -> Dict[str, Any]:
    """Train and evaluate once. ``data``: CIFAR-10's ``((x_train, y_train), (x_test, y_test))``
    as uint8 images; ``epochs`` overrides 11 (a smoke run); ``overrides`` any :data:`HYPER`;
    with ``verbose`` a line per epoch and the results go to ``out`` (default: stdout).

    Returns:
        ``{"accuracy", "tta_accuracy", "seconds", "train_seconds", "epoch_seconds", "steps",
        "history"}``; seconds are wall time from the raw images to the last accuracy.
    """
    out = (out or sys.stdout) if verbose else None
    hyper = dict(HYPER, **overrides)
    unknown = set(overrides) - set(HYPER)
    if unknown:
        raise ValueError(f"run() got unknown hyper-parameters {sorted(unknown)}. Expected some of {sorted(HYPER)}.")
    if epochs is not None:
        hyper["epochs"] = epochs
    start = time.perf_counter()
    if seed is not None:
        utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data
    x_train, x_test = normalize(x_train), normalize(x_test)
    batch = min(hyper["batch_size"], len(x_train))
    batches = EpochBatches(x_train, y_train, batch, seed, hyper["translate"])
    total_steps = math.ceil(len(batches) * hyper["epochs"])
    model = build(x_train, hyper, total_steps)
    base = hyper["lookahead_decay"] ** hyper["lookahead_period"]
    power = hyper["lookahead_power"]
    lookahead = callbacks.Lookahead(sync_period=hyper["lookahead_period"],
                                    slow_step_size=lambda step: 1.0 - base * (step / total_steps) ** power,
                                    start_epoch=hyper["lookahead_start_epoch"])
    timer = _Schedule(total_steps, batch, hyper["whiten_bias_epochs"], out)
    train_start = time.perf_counter()
    history = model.fit(batches, epochs=math.ceil(hyper["epochs"]), callbacks=[timer, lookahead], verbose=0)
    train_seconds = time.perf_counter() - train_start
    y_test = np.asarray(y_test).reshape(-1)
    accuracy = float(np.mean(model.predict(x_test, batch_size=1000, verbose=0).argmax(1) == y_test))
    tta = float(np.mean(model.predict(x_test, batch_size=1000, verbose=0, tta="flip_translate").argmax(1) == y_test))
    seconds = time.perf_counter() - start
    if out is not None:
        print(f"test accuracy {accuracy:.4f}, with test-time augmentation {tta:.4f}; {timer.steps} steps, "
              f"training {train_seconds:.1f} s, {seconds:.1f} s in all", file=out, flush=True)
    return {"accuracy": accuracy, "tta_accuracy": tta, "seconds": seconds, "train_seconds": train_seconds,
            "epoch_seconds": timer.epoch_seconds, "steps": timer.steps, "history": history.history,
            "model": model}
