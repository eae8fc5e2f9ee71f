"""Command line: ``python -m pycnn {train,evaluate,summary,show,casestudy,quantize,info}`` (also the ``pycnn`` script).

Examples::

    python -m pycnn train --model lenet --dataset cifar10 --epochs 20 --save lenet.npz --plot curves.png
    python -m pycnn train --resume lenet.npz --epochs 30 --save lenet30.npz
    python -m pycnn evaluate --model lenet --dataset cifar10 --weights lenet.npz
    python -m pycnn summary --model lenet --input-shape 32,32,3
    python -m pycnn show features --model lenet --weights lenet.npz --dataset cifar10 --index 3
    python -m pycnn casestudy --data-dir ../shared/data --epochs 50
    python -m pycnn quantize --model lenet --weights lenet.npz --dataset cifar10 --save lenet_int8.npz
    python -m pycnn info

``train`` prints the build configuration and the model summary, trains with the progress
bar while evaluating on the test set after every epoch (so the per-epoch test loss and
accuracy are recorded, like ``validation_data=`` in the lecture), then prints the final
test loss and accuracy and the seconds per epoch. Images are scaled to [0, 1] float32;
MNIST-family images get a channel axis, and the model's input shape follows the data.
``--save`` writes the whole model after every epoch (``model.save``: architecture, weights,
optimizer state, the epochs run and the random generator's state), which
``pycnn.models.load_model`` reads and ``train --resume`` continues exactly as the
uninterrupted run would have; ``--weights-only`` writes ``model.save_weights`` instead.

``show {filters,features,pooling,predictions,confusion}`` draws one of :mod:`pycnn.viz`'s
pictures into a PNG (``--output``, default ``KIND.png``) for a model (``--weights`` loads
trained weights) and the test set of ``--dataset``.

``casestudy`` trains the lecture's two case-study models (classic feature extractors and
the 4-filter CNN) on CIFAR-10 with the lecture's settings (Adam, batch 1024, 50 epochs,
the test set as validation data), prints both test accuracies and seconds per epoch, and
writes both learning curves into one PNG.

The choices (models, datasets, optimizers) come from their registries:
``pycnn.applications.CLASSIFIERS``, ``pycnn.datasets.NAMES``, ``pycnn.optimizers.NAMES``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import applications, layers, optimizers, schedules
from ._version import __version__
from .sequential import Sequential
from . import datasets as datasets_module
from .callbacks import Callback, ModelCheckpoint

DATASETS = datasets_module.NAMES
INPUT_SHAPES = {"cifar10": (32, 32, 3), "fashion_mnist": (28, 28, 1), "mnist": (28, 28, 1)}
OPTIMIZERS = optimizers.NAMES


class CliError(Exception):
    """A failure to report as one ``pycnn: error: ...`` line and exit status 1."""


# ----------------------------------------------------------------------------- argument types

def _number_type(convert, what: str, accept):
    """An argparse type: ``convert(text)`` that ``accept`` passes, else an error naming ``what``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}. Received: {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}. Received: {text}")
        return value
    return parse


_positive_int = _number_type(int, "a positive integer", lambda v: v > 0)
_non_negative_int = _number_type(int, "a non-negative integer", lambda v: v >= 0)
_positive_float = _number_type(float, "a positive number", lambda v: 0 < v < float("inf"))


def _input_shape(text: str) -> tuple[int, ...]:
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected height,width,channels as 3 positive integers, e.g. 32,32,3. Received: {text!r}")
    return shape


def _dataset_name(text: str) -> str:
    name = text.lower().replace("-", "_")
    if name not in DATASETS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DATASETS)}. Received: {text!r}")
    return name


# ----------------------------------------------------------------------------- models

def _model_builders() -> dict[str, Callable]:
    """Model name -> builder(input_shape, num_classes): pycnn.applications.CLASSIFIERS."""
    return dict(applications.CLASSIFIERS)


def _check_model_name(name: str) -> None:
    """Refuse an unknown --model before anything slow (loading a dataset) happens."""
    builders = _model_builders()
    if name not in builders:
        raise CliError(f"Unknown model: expected one of {', '.join(builders)}. Received: --model {name}.")


def _build_model(name: str, input_shape: Sequence[int], num_classes: int):
    _check_model_name(name)
    return _model_builders()[name](tuple(input_shape), num_classes)


def _optimizer(name: str, learning_rate: float | None):
    default = optimizers.get(name)
    return default if learning_rate is None else type(default)(learning_rate=learning_rate)


def _compile(model, optimizer) -> None:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


# ----------------------------------------------------------------------------- output helpers

def build_info_line() -> str:
    """One line describing the native build, e.g. for the top of a training log."""
    import pycnn

    info = pycnn.build_info()
    openmp = f"OpenMP {info.get('openmp_version')}" if info.get("openmp") else "OpenMP off"
    compiled = ", ".join(info.get("isa_compiled", ()))
    return (f"pycnn {info.get('version', pycnn.__version__)} | {info.get('compiler')} "
            f"{info.get('build_type')} | {openmp} | SIMD {info.get('isa_active')} "
            f"(compiled: {compiled}) | CUDA {'on' if info.get('cuda') else 'off'} | "
            f"threads {pycnn.get_num_threads()}")


def _print(*args) -> None:
    from . import distributed

    if distributed.is_primary():  # under mpirun only rank 0 prints
        print(*args, flush=True)


def _load_raw(args, need_train: bool = True):
    """The dataset named by args as stored (uint8 images), limited by --limit-train/--limit-test."""
    from . import datasets

    try:
        (x_train, y_train), (x_test, y_test) = datasets.load(args.dataset, args.data_dir)
    except datasets.DatasetNotFoundError as exc:
        raise CliError(f"{exc} On the command line, --data-dir DIR plays the role of path=.") from exc
    except datasets.CorruptDatasetError as exc:
        raise CliError(str(exc)) from exc
    totals = len(x_train), len(x_test)
    if need_train and args.limit_train:
        x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    if args.limit_test:
        x_test, y_test = x_test[: args.limit_test], y_test[: args.limit_test]
    return (x_train, y_train), (x_test, y_test), totals


def _load(args, need_train: bool):
    """Load the dataset named by args, limited and scaled; returns (train, test, input_shape)."""
    from . import datasets

    (x_train, y_train), (x_test, y_test), (total_train, total_test) = _load_raw(args, need_train)
    input_shape = datasets.to_float(x_test[:1]).shape[1:]
    num_classes = len(datasets.class_names(args.dataset))
    what = (f"{len(x_train)} of {total_train} training and " if need_train else "") + \
        f"{len(x_test)} of {total_test} test images"
    _print(f"Dataset {args.dataset}: {what}, shape {input_shape}, {num_classes} classes")
    train = (x_train, y_train.reshape(-1).astype(np.int64)) if need_train else None
    test = (datasets.to_float(x_test), y_test.reshape(-1).astype(np.int64))
    return train, test, input_shape, num_classes


def _require_matplotlib(option: str) -> None:
    from .viz import require_matplotlib

    try:
        require_matplotlib()
    except ImportError as exc:
        raise CliError(f"{exc} Or leave out {option}.") from exc


def _setup_threads(args) -> None:
    if args.threads:
        import pycnn

        pycnn.set_num_threads(args.threads)


# ----------------------------------------------------------------------------- commands

def cmd_info(args) -> int:
    import pycnn

    _print(build_info_line())
    for key, value in pycnn.build_info().items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        _print(f"{key}: {value}")
    _print(f"python: {platform.python_version()} ({platform.machine()})")
    _print(f"numpy: {np.__version__}")
    return 0


def cmd_summary(args) -> int:
    shape = args.input_shape or INPUT_SHAPES[args.dataset]
    model = _build_model(args.model, shape, args.num_classes)
    model.summary()
    return 0


class _EpochTimer(Callback):
    """Wall-clock seconds of every epoch (training plus the test-set evaluation)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _augmentation(input_shape):
    """The CIFAR recipe as Keras layers: 4 zero pixels around, a random window of the
    original size, a random left-right flip (per image). They draw from pycnn's generator,
    which --seed seeds and a full checkpoint stores, so --resume continues their draws."""
    from .layers import RandomCrop, RandomFlip, ZeroPadding2D

    h, w = input_shape[0], input_shape[1]
    return [ZeroPadding2D(4), RandomCrop(h, w), RandomFlip("horizontal")]


def _resumed_model(args, input_shape, num_classes):
    """The model, optimizer state, epoch count and random generator of a ``train --save`` file."""
    from .saving import load_model

    path = args.resume
    try:
        model = load_model(path)
    except (ValueError, OSError) as exc:
        raise CliError(f"train --resume expected a full model written by `train --save` (or model.save). "
                       f"Received: --resume {path}: {exc}") from exc
    if not model.compiled:
        raise CliError(f"train --resume expected a model saved with its training state. Received: --resume {path}, "
                       "which was saved before compile().")
    if tuple(model.input_shape[1:]) != tuple(input_shape) or model.output_shape[-1] != num_classes:
        raise CliError(f"The model in {path} takes inputs {tuple(model.input_shape[1:])} and predicts "
                       f"{model.output_shape[-1]} classes, but --dataset {args.dataset} has images of shape "
                       f"{tuple(input_shape)} and {num_classes} classes.")
    done = int(getattr(model, "_epochs_done", 0))
    if done >= args.epochs:
        raise CliError(f"The model in {path} has already trained {done} epochs, and --epochs is the total to reach "
                       f"(as fit(epochs=..., initial_epoch=...)). Received: --epochs {args.epochs}. Pass a larger "
                       "--epochs.")
    return model, done


RECIPES = ("speedrun",)


def _train_recipe(args) -> int:
    """train --recipe NAME: the recipe fixes the model, optimizer, schedule, batch size and
    augmentation (pycnn.recipes); --seed, --epochs, --limit-train/--limit-test, --data-dir,
    --threads, --save and --history apply."""
    from .recipes import speedrun

    fixed = [opt for opt, used in (("--model", args.model != "lenet"), ("--optimizer", args.optimizer != "adam"),
                                   ("--learning-rate", args.learning_rate is not None),
                                   ("--lr-schedule", args.lr_schedule != "constant"), ("--augment", args.augment),
                                   ("--resume", args.resume is not None), ("--distributed", args.distributed),
                                   ("--plot", args.plot is not None), ("--weights-only", args.weights_only)) if used]
    if fixed:
        raise CliError(f"--recipe {args.recipe} fixes the model, optimizer, schedule and augmentation. "
                       f"Received: {', '.join(fixed)}.")
    if args.dataset != "cifar10":
        raise CliError(f"--recipe {args.recipe} trains on cifar10. Received: --dataset {args.dataset}.")
    _setup_threads(args)
    _print(build_info_line())
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test), _ = _load_raw(args)
    _print(f"Recipe {args.recipe} (pycnn.recipes.speedrun, airbench94): {len(x_train)} training and "
           f"{len(x_test)} test images, {args.epochs or speedrun.HYPER['epochs']} epochs, batch "
           f"{min(speedrun.HYPER['batch_size'], len(x_train))}")
    result = speedrun.run(((x_train, y_train), (x_test, y_test)), seed=args.seed, epochs=args.epochs)
    seconds = time.perf_counter() - start
    _print(f"Wall time {seconds:.1f} s (loading the data included)")
    if args.save:
        result["model"].save(args.save)
        _print(f"Saved the model to {args.save}")
    if args.history:
        payload = {"recipe": args.recipe, "seed": args.seed, "accuracy": result["accuracy"],
                   "tta_accuracy": result["tta_accuracy"], "seconds": seconds,
                   "train_seconds": result["train_seconds"], "epoch_seconds": result["epoch_seconds"],
                   "steps": result["steps"], "history": result["history"]}
        Path(args.history).write_text(json.dumps(payload, indent=2))
    return 0


def cmd_train(args) -> int:
    from . import datasets, utils

    if args.recipe:
        return _train_recipe(args)
    if args.epochs is None:
        args.epochs = 20
    _check_model_name(args.model)
    if args.weights_only and not args.save:
        raise CliError("--weights-only says what --save writes. Received: --weights-only without --save FILE.")
    if args.resume and not Path(args.resume).is_file():
        raise CliError(f"train --resume expected a file written by `train --save`. Received: --resume {args.resume}, "
                       "which does not exist.")
    if args.plot:
        _require_matplotlib("--plot")  # fail before training, not after it
    _setup_threads(args)
    if args.distributed:
        from . import distributed

        world = distributed.init()
        if world == 1:
            _print("--distributed: not started under mpirun/mpiexec (or mpi4py is missing): one process.")
        else:
            _print(f"Distributed: {world} MPI ranks; batch size {args.batch_size} is the global batch "
                   f"({args.batch_size // world}-{-(-args.batch_size // world)} samples per rank).")
    if args.seed is not None:
        utils.set_random_seed(args.seed)
    _print(build_info_line())
    (x_train_u8, y_train), (x_test, y_test), input_shape, num_classes = _load(args, need_train=True)
    initial_epoch = 0
    if args.resume:
        # Architecture, optimizer (and its schedule), epochs run and the random generator come
        # from the file; --model, --optimizer, --learning-rate, --lr-schedule, --augment and
        # --seed describe a new run and are not used.
        model, initial_epoch = _resumed_model(args, input_shape, num_classes)
        model.summary(print_fn=_print)
        _print(f"Resuming from {args.resume}: {initial_epoch} epochs done, training epochs "
               f"{initial_epoch + 1}-{args.epochs}")
    else:
        model = _build_model(args.model, input_shape, num_classes)
        if args.augment:
            # The augmentation layers go in front of the model: fit() runs them in NumPy before
            # each native step, with new draws every batch; at inference they give the image back.
            model = Sequential([layers.Input(tuple(input_shape)), *_augmentation(input_shape), *model.layers],
                               name=model.name)
        _compile(model, _optimizer(args.optimizer, args.learning_rate))
        model.summary(print_fn=_print)
        if args.augment:
            _print("Augmentation: random crops with 4-pixel zero padding and horizontal flips, new draws every batch")

    timer = _EpochTimer()
    steps = -(-len(x_train_u8) // args.batch_size)
    if args.lr_schedule == "cosine" and not args.resume:
        optimizer = model.optimizer
        optimizer.learning_rate = schedules.CosineDecay(float(optimizer.learning_rate), args.epochs * steps)
        _print(f"Learning rate: cosine decay from {float(optimizer.schedule.initial_learning_rate):g} to 0 over "
               f"{args.epochs * steps} steps")
    callbacks: list = [timer]
    if args.save:
        # Rewritten after every epoch, so a run stopped part-way (Ctrl-C, a lost machine) leaves a
        # file that --resume continues; after the last epoch it holds the trained model.
        callbacks.append(ModelCheckpoint(args.save, save_weights_only=args.weights_only))
    h = model.fit(datasets.to_float(x_train_u8), y_train, epochs=args.epochs, batch_size=args.batch_size,
                  validation_data=(x_test, y_test), verbose=args.verbose, callbacks=callbacks,
                  initial_epoch=initial_epoch)
    history = {k: list(v) for k, v in h.history.items()}

    # The last epoch's validation pass already scored the final weights on the test set.
    test_loss, test_acc = float(history["val_loss"][-1]), float(history["val_accuracy"][-1])
    _print(f"Test loss: {test_loss:.4f} - test accuracy: {test_acc:.4f}")
    secs = timer.seconds
    if secs:
        _print(f"Seconds per epoch: {np.mean(secs):.2f} (mean of {len(secs)}; "
               f"min {min(secs):.2f}, max {max(secs):.2f}; training and test evaluation)")
    from . import distributed

    if args.save and args.weights_only:
        _print(f"Saved weights to {args.save}")
    elif args.save:
        _print(f"Saved the model (architecture, weights, optimizer state) to {args.save}")
    if not distributed.is_primary():
        return 0  # rank 0 writes the history and the curves
    if args.history:
        record = {"history": history, "seconds_per_epoch": secs, "test_loss": test_loss,
                  "test_accuracy": test_acc, "args": {k: v for k, v in vars(args).items() if k != "func"}}
        Path(args.history).write_text(json.dumps(record, indent=1, default=str))
        _print(f"Saved history to {args.history}")
    if args.plot:
        from .viz import plot_history

        plot_history(history, args.plot, val_label="test",
                     title=f"{args.model} on {args.dataset} ({len(secs) or args.epochs} epochs)")
        _print(f"Saved curves to {args.plot}")
    return 0


def cmd_casestudy(args) -> int:
    from . import utils

    if args.plot:
        _require_matplotlib("--plot")
    _setup_threads(args)
    if args.seed is not None:
        utils.set_random_seed(args.seed)
    args.dataset = "cifar10"
    _print(build_info_line())
    (x_train_u8, y_train), (x_test, y_test), input_shape, num_classes = _load(args, need_train=True)
    x_train = datasets_module.to_float(x_train_u8)
    _print(f"Case study: Adam, batch size {args.batch_size}, {args.epochs} epochs, test set as validation data")
    results = {}
    for label, build in (("classic features", applications.classic_features_model),
                         ("4-filter CNN", applications.four_filter_cnn)):
        model = build(input_shape, num_classes)
        model.summary()
        _compile(model, _optimizer("adam", None))
        timer = _EpochTimer()
        h = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                      validation_data=(x_test, y_test), verbose=args.verbose, callbacks=[timer])
        results[label] = (h.history, timer.seconds)
        _print(f"{label}: test accuracy {h.history['val_accuracy'][-1]:.4f}, test loss "
               f"{h.history['val_loss'][-1]:.4f}, {np.mean(timer.seconds):.2f} s per epoch")
    _print("")
    for label, (history, secs) in results.items():
        _print(f"{label:>16}: test accuracy {history['val_accuracy'][-1]:.4f} "
               f"(best {max(history['val_accuracy']):.4f}), {np.mean(secs):.2f} s per epoch")
    if args.history:
        record = {label: {"history": {k: list(v) for k, v in history.items()}, "seconds_per_epoch": secs}
                  for label, (history, secs) in results.items()}
        Path(args.history).write_text(json.dumps(record, indent=1))
        _print(f"Saved history to {args.history}")
    if args.plot:
        from .viz import plot_histories

        plot_histories({label: history for label, (history, _) in results.items()}, args.plot, val_label="test",
                       title=f"Case study on CIFAR-10: classic features vs. 4-filter CNN ({args.epochs} epochs)")
        _print(f"Saved curves to {args.plot}")
    return 0


def cmd_evaluate(args) -> int:
    _check_model_name(args.model)
    _setup_threads(args)
    if not Path(args.weights).is_file():
        raise CliError(f"evaluate expected a weights file. Received: --weights {args.weights}, "
                       "which does not exist. Create one with `python -m pycnn train ... --save FILE`.")
    _print(build_info_line())
    _, (x_test, y_test), input_shape, num_classes = _load(args, need_train=False)
    model = _build_model(args.model, input_shape, num_classes)
    _compile(model, _optimizer("adam", None))
    try:
        model.load_weights(args.weights)
    except (ValueError, KeyError, OSError) as exc:
        raise CliError(f"Could not load weights from {args.weights} into model {args.model!r} "
                       f"for input shape {input_shape}: {exc}") from exc
    t0 = time.perf_counter()
    result = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    loss, acc = (result["loss"], result["accuracy"]) if isinstance(result, dict) else result[:2]
    _print(f"Test loss: {float(loss):.4f} - test accuracy: {float(acc):.4f} "
           f"({len(x_test)} images, {seconds:.2f} s)")
    return 0


def cmd_quantize(args) -> int:
    """int8 post-training quantization of a trained model (pycnn.quantization): calibration on
    the first --calibration training images, then test accuracy and predict speed of float32
    and int8 side by side (each timed over the test set, alternating, the best of two)."""
    from . import quantization

    _check_model_name(args.model)
    _setup_threads(args)
    if not Path(args.weights).is_file():
        raise CliError(f"quantize expected a weights file. Received: --weights {args.weights}, which does not exist. "
                       "Create one with `python -m pycnn train ... --save FILE`.")
    _print(build_info_line())
    (x_train_u8, _), (x_test, y_test), input_shape, num_classes = _load(args, need_train=True)
    model = _build_model(args.model, input_shape, num_classes)
    try:
        model.load_weights(args.weights)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise CliError(f"Could not load weights from {args.weights} into model {args.model!r} "
                       f"for input shape {input_shape}: {exc}") from exc
    calibration = datasets_module.to_float(x_train_u8[: args.calibration])
    _print(f"Calibrating on the first {len(calibration)} training images ({args.method})")
    qmodel = quantization.quantize(model, calibration, method=args.method, percentile=args.percentile)
    qmodel.summary(print_fn=_print)

    def predict(m):
        return m.predict(x_test, batch_size=args.batch_size, verbose=0)

    results, seconds = {}, {"float32": [], "int8": []}
    for m in (model, qmodel):  # warm-up: compile the networks, touch the buffers
        m.predict(x_test[: args.batch_size], batch_size=args.batch_size, verbose=0)
    for _ in range(2):
        for name, m in (("float32", model), ("int8", qmodel)):
            t0 = time.perf_counter()
            results[name] = predict(m)
            seconds[name].append(time.perf_counter() - t0)
    rows = [("", "float32", "int8")]
    acc = {name: float(np.mean(out.argmax(-1) == y_test)) for name, out in results.items()}
    speed = {name: len(x_test) / min(t) for name, t in seconds.items()}
    rows.append(("test accuracy", f"{acc['float32']:.4f}", f"{acc['int8']:.4f}"))
    rows.append((f"predict, images/s (batch {args.batch_size})", f"{speed['float32']:,.0f}", f"{speed['int8']:,.0f}"))
    width = max(len(r[0]) for r in rows) + 2
    for r in rows:
        _print(f"{r[0]:<{width}}{r[1]:>12}{r[2]:>12}")
    _print(f"int8: {100 * (acc['int8'] - acc['float32']):+.2f} points of accuracy, "
           f"{speed['int8'] / speed['float32']:.2f}x the images per second of float32 ({len(x_test)} test images)")
    if args.save:
        qmodel.save(args.save)
        _print(f"Saved the int8 model to {args.save} (pycnn.models.load_model reads it)")
    return 0


SHOW_KINDS = ("filters", "features", "pooling", "predictions", "confusion")


def _show_model(args, input_shape, num_classes):
    model = _build_model(args.model, input_shape, num_classes)
    if args.weights is None:
        _print(f"No --weights given: showing model {args.model!r} with its random initial weights")
        return model
    try:
        model.load_weights(args.weights)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise CliError(f"Could not load weights from {args.weights} into model {args.model!r} "
                       f"for input shape {tuple(input_shape)}: {exc}") from exc
    return model


def _show_image(args, x_test, y_test, class_names):
    if args.index >= len(x_test):
        raise CliError(f"show expected --index below the number of test images ({len(x_test)}). "
                       f"Received: --index {args.index}.")
    label = f"test image {args.index} ({class_names[int(y_test[args.index])]})"
    _print(label[0].upper() + label[1:])
    return x_test[args.index], label


def cmd_show(args) -> int:
    from . import viz

    if args.kind != "pooling":
        _check_model_name(args.model)
        if args.weights is not None and not Path(args.weights).is_file():
            raise CliError(f"show expected a weights file. Received: --weights {args.weights}, which does not "
                           "exist. Create one with `python -m pycnn train ... --save FILE`.")
    _require_matplotlib(f"show {args.kind}")
    _setup_threads(args)
    output = args.output or f"{args.kind}.png"
    names = datasets_module.class_names(args.dataset)
    if args.kind == "filters":
        # Filters need no images: the dataset only fixes the input shape and class count.
        model = _show_model(args, INPUT_SHAPES[args.dataset], len(names))
        convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
        if not convs:
            raise CliError(f"Model {args.model!r} has no Conv2D layer whose filters could be shown.")
        if args.layer:
            chosen = [layer for layer in convs if layer.name in args.layer]
            if len(chosen) != len(set(args.layer)):
                raise CliError(f"show filters expected --layer among the Conv2D layers "
                               f"{', '.join(l.name for l in convs)}. Received: --layer {','.join(args.layer)}.")
        else:
            chosen = convs[:1]
        for i, layer in enumerate(chosen):
            path = output if len(chosen) == 1 else str(Path(output).with_name(
                f"{Path(output).stem}_{layer.name}{Path(output).suffix or '.png'}"))
            viz.show_filters(layer, path)
            _print(f"Saved the filters of {layer.name} to {path}")
        return 0
    _, (x_test, y_test), input_shape, num_classes = _load(args, need_train=False)
    if args.kind == "pooling":
        image, label = _show_image(args, x_test, y_test, names)
        viz.show_pooling(image, args.pool_size, output, steps=args.steps, title=label)
        _print(f"Saved max and average pooling (pool size {args.pool_size}, {args.steps} "
               f"step{'s' if args.steps > 1 else ''}) to {output}")
        return 0
    model = _show_model(args, input_shape, num_classes)
    if args.kind == "features":
        try:
            image, label = _show_image(args, x_test, y_test, names)
            viz.show_feature_maps(model, image, layers=args.layer, path=output, title=label)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        _print(f"Saved the feature maps to {output}")
    elif args.kind == "predictions":
        viz.show_predictions(model, x_test, y_test, names, output, count=args.count, batch_size=args.batch_size)
        _print(f"Saved predictions for the first {min(args.count, len(x_test))} test images to {output}")
    else:
        viz.show_confusion(model, x_test, y_test, names, output, batch_size=args.batch_size)
        _print(f"Saved the confusion matrix of {len(x_test)} test images to {output}")
    return 0


def _layer_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected layer names separated by commas. Received: {text!r}")
    return names


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycnn", description="Train and evaluate small CNNs with pycnn's C++ kernels.")
    parser.add_argument("--version", action="version", version=f"pycnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,summary,show,casestudy,quantize,info}")
    sub.required = True

    def common(p, train: bool):
        p.add_argument("--model", default="lenet", help="model to build (default: lenet)")
        p.add_argument("--dataset", type=_dataset_name, default="cifar10",
                       help="cifar10, fashion_mnist or mnist (default: cifar10)")
        p.add_argument("--batch-size", type=_positive_int, default=64, help="default: 64")
        p.add_argument("--threads", type=_positive_int, default=None,
                       help="kernel threads (default: OMP_NUM_THREADS or all cores)")
        p.add_argument("--data-dir", default=None,
                       help="folder holding the dataset (default: $PYCNN_DATA_DIR, then the cache, "
                            "then a download)")
        p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="0 silent, 1 progress bar, 2 one line per epoch (default: 1)")
        p.add_argument("--limit-test", type=_positive_int, default=None,
                       help="use only the first N test images")
        if train:
            p.add_argument("--limit-train", type=_positive_int, default=None,
                           help="use only the first N training images")

    p = sub.add_parser("train", help="train a model and report test accuracy")
    common(p, train=True)
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs in total, counting those a --resume file has run (default: 20; with --recipe, "
                        "the recipe's)")
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="a complete recipe instead of --model/--optimizer/...: speedrun = airbench94's CIFAR-10 "
                        "recipe (pycnn.recipes.speedrun: 94%% in about 10 epochs at batch 1024)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default: adam")
    p.add_argument("--learning-rate", type=_positive_float, default=None,
                   help="default: the optimizer's Keras default (adam 0.001, rmsprop 0.001, sgd 0.01)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the MPI ranks of mpirun/mpiexec (pycnn.distributed); --batch-size is "
                        "the global batch")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="constant (default) or cosine decay to 0 over the run (Keras's CosineDecay)")
    p.add_argument("--augment", action="store_true",
                   help="random crops of the 4-pixel zero-padded image and horizontal flips, new draws every batch")
    p.add_argument("--seed", type=_non_negative_int, default=None,
                   help="seed weights, shuffling and augmentation")
    p.add_argument("--save", default=None, metavar="FILE.npz",
                   help="save the model after every epoch: architecture, weights, optimizer state (model.save; "
                        "pycnn.models.load_model and train --resume read it)")
    p.add_argument("--weights-only", action="store_true",
                   help="with --save: write only the weights (model.save_weights; evaluate and show read it)")
    p.add_argument("--resume", default=None, metavar="FILE.npz",
                   help="continue training the model a train --save wrote, up to --epochs in total, exactly as an "
                        "uninterrupted run (the model, optimizer and seed come from the file)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="save loss and accuracy curves (needs matplotlib)")
    p.add_argument("--history", default=None, metavar="FILE.json",
                   help="save per-epoch metrics, epoch times and final test scores as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate saved weights on the test set")
    common(p, train=False)
    p.add_argument("--weights", required=True, metavar="FILE.npz",
                   help="a file written by train --save (a full model or --weights-only)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("summary", help="print a model's layers, output shapes and parameters")
    p.add_argument("--model", default="lenet", help="model to build (default: lenet)")
    p.add_argument("--input-shape", type=_input_shape, default=None, metavar="H,W,C",
                   help="default: the dataset's image shape")
    p.add_argument("--dataset", type=_dataset_name, default="cifar10",
                   help="picks the input shape when --input-shape is not given (default: cifar10)")
    p.add_argument("--num-classes", type=_positive_int, default=10, help="default: 10")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("show", help="draw filters, feature maps, pooling, predictions or a confusion matrix (PNG)",
                       description="Draw one picture into a PNG (needs matplotlib). filters: the first Conv2D "
                                   "layer's kernels (or --layer's); features: every feature map of test image "
                                   "--index, layer by layer; pooling: that image, its max and its average pooling; "
                                   "predictions: the first --count test images with predicted and true classes; "
                                   "confusion: the confusion matrix on the test set.")
    p.add_argument("kind", choices=SHOW_KINDS, help="what to draw")
    common(p, train=False)
    p.add_argument("--weights", default=None, metavar="FILE.npz",
                   help="a file written by train --save (default: the model's random initial weights)")
    p.add_argument("--output", "-o", default=None, metavar="FILE.png", help="default: KIND.png")
    p.add_argument("--index", type=_non_negative_int, default=0, help="test image to show (default: 0)")
    p.add_argument("--layer", type=_layer_list, default=None, metavar="NAME[,NAME...]",
                   help="layers to draw (features: default every layer with feature maps; "
                        "filters: default the first Conv2D)")
    p.add_argument("--count", type=_positive_int, default=25, help="predictions: images to show (default: 25)")
    p.add_argument("--pool-size", type=_positive_int, default=2, help="pooling: window and stride (default: 2)")
    p.add_argument("--steps", type=_positive_int, default=1, help="pooling: times to pool (default: 1)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("casestudy", help="the lecture's case study: classic features vs. a 4-filter CNN")
    p.add_argument("--data-dir", default=None,
                   help="folder holding CIFAR-10 (default: $PYCNN_DATA_DIR, then the cache, then a download)")
    p.add_argument("--epochs", type=_positive_int, default=50, help="default: 50 (the lecture's)")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="default: 1024 (the lecture's)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="kernel threads (default: OMP_NUM_THREADS or all cores)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                   help="0 silent, 1 progress bar, 2 one line per epoch (default: 2)")
    p.add_argument("--limit-train", type=_positive_int, default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=_positive_int, default=None, help="use only the first N test images")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="seed weights and shuffling")
    p.add_argument("--plot", default="casestudy.png", metavar="FILE.png",
                   help="both models' learning curves (default: casestudy.png; needs matplotlib)")
    p.add_argument("--history", default=None, metavar="FILE.json", help="save both histories as JSON")
    p.set_defaults(func=cmd_casestudy)

    p = sub.add_parser("quantize", help="quantize a trained model to int8; float32 and int8 accuracy and speed")
    common(p, train=True)
    p.set_defaults(batch_size=256)
    p.add_argument("--weights", required=True, metavar="FILE.npz",
                   help="a file written by train --save (a full model or --weights-only)")
    p.add_argument("--calibration", type=_positive_int, default=1000,
                   help="calibrate on the first N training images (default: 1000)")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax",
                   help="activation ranges from the min/max seen (default) or a percentile of them")
    p.add_argument("--percentile", type=_positive_float, default=99.99, help="with --method percentile (default 99.99)")
    p.add_argument("--save", default=None, metavar="FILE.npz", help="write the int8 model (QuantizedModel.save)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("info", help="print how the native core was built")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pycnn`` and the ``pycnn`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"pycnn: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("pycnn: interrupted", file=sys.stderr, flush=True)
        return 130

