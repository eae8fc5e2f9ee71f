"""Do pycnn's models round-trip through Keras 3? The lecture's models, a BatchNormalization /
Depthwise / Separable / Dropout model and a branchy graph, both ways, in one run.

    python bench/keras_roundtrip.py [--quick] [--models lenet,vgg16,...]

For each model: built with pycnn.models (seeded), compiled (Adam, sparse categorical
cross-entropy, accuracy) and trained for one short epoch on random data, so that the
optimizer state and the BatchNormalization statistics are not their initial values. Then:

* pycnn -> Keras: ``model.save('m.keras')``, ``keras.models.load_model``; predictions,
  layer names, parameter counts, ``evaluate`` (loss, accuracy) and the optimizer's step count
  compared; ``model.save_weights('m.weights.h5')`` into a clone of the Keras model;
* Keras -> pycnn: Keras saves that model as ``.keras`` and as legacy ``.h5``;
  ``pycnn.models.load_model`` reads both; the same comparisons.

The table gives the largest |prediction difference| on 8 samples, whether names and counts
are equal, and the largest |evaluate difference|. Models with a layer Keras lacks (SobelEdges)
are listed with pycnn's refusal. Needs TensorFlow / Keras 3 and h5py.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402

import pycnn  # noqa: E402
from pycnn import applications  # noqa: E402
from pycnn import layers as L  # noqa: E402


def zoo(input_shape=(16, 16, 3), num_classes=10):
    """BatchNormalization, DepthwiseConv2D, SeparableConv2D, Dropout."""
    return pycnn.Sequential([
        L.Input(input_shape), L.Conv2D(8, 3, padding="same", use_bias=False), L.BatchNormalization(),
        L.Activation("relu"), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
        L.SeparableConv2D(16, 3, strides=2, activation="relu"), L.BatchNormalization(), L.MaxPooling2D(),
        L.Dropout(0.3), L.Flatten(), L.Dense(num_classes, activation="softmax")], name="bn_depthwise_separable")


def branchy(input_shape=(16, 16, 3), num_classes=10):
    """Two branches merged by Add and Concatenate, a nested Sequential, a shared layer."""
    inp = pycnn.Input(input_shape, name="image")
    a = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    b = L.SeparableConv2D(8, 5, padding="same", activation="relu")(inp)
    shared = L.Conv2D(8, 1, name="shared")
    s = L.Add()([shared(a), shared(b)])
    c = L.Concatenate()([s, L.Multiply()([a, b]), L.AveragePooling2D(3, strides=1, padding="same")(inp)])
    inner = pycnn.Sequential([L.Input(input_shape[:2] + (19,)), L.Conv2D(12, 3, strides=2), L.BatchNormalization(),
                              L.Activation("relu")], name="block")
    x = L.GlobalAveragePooling2D()(inner(c))
    x = L.Dropout(0.2)(x)
    return pycnn.Model(inp, L.Dense(num_classes, activation="softmax")(x), name="branchy")


MODELS = {
    "lenet": (applications.lenet, (32, 32, 3)),
    "lenet_bn": (applications.lenet_bn, (32, 32, 3)),
    "fashion_mnist_cnn": (applications.fashion_mnist_cnn, (28, 28, 1)),
    "fashion_mnist_cnn_bn": (applications.fashion_mnist_cnn_bn, (28, 28, 1)),
    "strided_cnn": (applications.strided_cnn, (28, 28, 1)),
    "four_filter_cnn": (applications.four_filter_cnn, (32, 32, 3)),
    "fully_convolutional_cnn": (applications.fully_convolutional_cnn, (28, 28, 1)),
    "classic_features": (applications.classic_features_model, (32, 32, 3)),
    "vgg16": (applications.vgg16, (224, 224, 1)),
    "bn_depthwise_separable": (zoo, (16, 16, 3)),
    "branchy": (branchy, (16, 16, 3)),
}


def build(key):
    fn, shape = MODELS[key]
    pycnn.utils.clear_session()
    pycnn.set_random_seed(0)
    model = fn(input_shape=shape) if key != "fully_convolutional_cnn" else fn(input_shape=(None, None, 1))
    classes = 1000 if key == "vgg16" else 10
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    n = 8 if key == "vgg16" else 32
    x = rng.random((n,) + shape, dtype=np.float32)
    out_shape = model.compute_output_shape((None,) + shape)
    y = rng.integers(0, classes, (n,) + tuple(out_shape[1:-1]))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model, x[:8], y[:8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="leave out vgg16")
    ap.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(MODELS))
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    keys = args.models.split(",") if args.models else [k for k in MODELS if not (args.quick and k == "vgg16")]
    print("## pycnn <-> Keras 3 round trips\n")
    print(f"- pycnn {pycnn.__version__}, Keras {keras.__version__}, TensorFlow {tf.__version__}, "
          f"NumPy {np.__version__}\n")
    headers = ["model", "params", "direction", "max abs pred diff", "names equal", "params equal",
               "max abs evaluate diff", "steps equal", "s"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            t0 = time.perf_counter()
            model, x, y = build(key)
            expected = model.predict(x, verbose=0)
            ours_eval = model.evaluate(x, y, verbose=0)
            names = [layer.name for layer in model.layers]
            path = os.path.join(tmp, f"{key}.keras")
            try:
                model.save(path)
            except ValueError as exc:
                rows.append([key, model.count_params(), "pycnn -> Keras", f"refused: {exc}"] + [""] * 5)
                continue
            k = keras.models.load_model(path)
            diff = float(np.abs(k.predict(x, verbose=0) - expected).max())
            keval = k.evaluate(x, y, verbose=0)
            wpath = os.path.join(tmp, f"{key}.weights.h5")
            model.save_weights(wpath)
            clone = keras.models.clone_model(k)
            clone.load_weights(wpath)
            wdiff = float(np.abs(clone.predict(x, verbose=0) - expected).max())
            rows.append([key, model.count_params(), "pycnn -> Keras (.keras; .weights.h5)",
                         f"{diff:.1e}; {wdiff:.1e}", [l.name for l in k.layers] == names,
                         k.count_params() == model.count_params(),
                         f"{float(np.abs(np.subtract(keval, ours_eval)).max()):.1e}",
                         int(k.optimizer.iterations) == model.optimizer.iterations,
                         f"{time.perf_counter() - t0:.1f}"])
            for suffix in (".keras", ".h5"):
                t0 = time.perf_counter()
                kpath = os.path.join(tmp, f"{key}_from_keras{suffix}")
                k.save(kpath)
                back = pycnn.models.load_model(kpath)
                kexpected = k.predict(x, verbose=0)
                diff = float(np.abs(back.predict(x, verbose=0) - kexpected).max())
                beval = back.evaluate(x, y, verbose=0)
                rows.append([key, k.count_params(), f"Keras -> pycnn ({suffix})", f"{diff:.1e}",
                             [l.name for l in back.layers] == [l.name for l in k.layers],
                             back.count_params() == k.count_params(),
                             f"{float(np.abs(np.subtract(beval, keval)).max()):.1e}",
                             back.optimizer.iterations == int(k.optimizer.iterations) if suffix == ".keras" else "-",
                             f"{time.perf_counter() - t0:.1f}"])
            del k, clone
            keras.backend.clear_session()
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
