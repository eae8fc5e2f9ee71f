"""int8 inference benchmark: pycnn.quantization against pycnn float32 and ONNX Runtime.

    python bench/int8.py [--quick] [--threads N] [--weights-dir DIR] [--models lenet,heavy]
    python bench/int8.py --accuracy [--weights-dir DIR] [--heavy-epochs 3]

Speed (the default): LeNet on 32x32x3 and the lecture's heavy Fashion-MNIST model (four 7x7
relu convolutions 32-64-128-256, dense 10 softmax) predicting batches of 256, in one process,
the same input arrays, timed in interleaved rounds (_common.interleaved: A B C D A B C D ...)
so that drifting load on a shared machine hits every variant alike:

  pycnn float32   model.predict
  pycnn int8      pycnn.quantization.quantize(model, 1,000 calibration images).predict
  ORT float32     model.export(..., format="onnx") run by onnxruntime with the same threads
  ORT int8        that file through onnxruntime.quantization.quantize_static (QDQ format,
                  per-channel int8 weights, uint8 activations, min/max calibration on the
                  same 1,000 images), which ORT runs as QLinearConv / integer kernels
  ORT pycnn-int8  the pycnn int8 model's own export (QuantizedModel.export, QDQ), run by ORT

ONNX Runtime gets intra_op_num_threads = pycnn's thread count and allow_spinning = 0: its
threads sleep between calls as pycnn's do (OMP_WAIT_POLICY=PASSIVE), instead of spinning into
the next variant's round on a 2-core machine. Before anything is timed, the outputs are
compared: pycnn int8 against pycnn float32 (top-1 agreement), the ONNX float model against
pycnn float32 (max difference), ORT's int8 models against pycnn float32. Images come from
PYCNN_DATA_DIR (CIFAR-10 / Fashion-MNIST test images, training images for calibration) when
it is set, else random; weights from --weights-dir (lenet_cifar10.npz, heavy_fmnist.npz, as
written by --accuracy or `python -m pycnn train --save`), else random initial weights.

Accuracy (--accuracy): LeNet trained 20 epochs on CIFAR-10 (Adam 1e-3, batch 64, inputs / 255)
and the heavy model --heavy-epochs epochs on Fashion-MNIST (the training takes minutes:
this is a script, not a test; weights are cached in --weights-dir and reused), quantized with
calibration on the first 1,000 training images, test accuracy of float32 and int8 (and ORT
int8) per model, for both calibration methods.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import _common as C  # first: it configures OpenBLAS before NumPy is loaded

import numpy as np

MODELS = {"lenet": ("lenet", (32, 32, 3), "cifar10", "lenet_cifar10.npz"),
          "heavy": ("fashion_mnist_cnn", (28, 28, 1), "fashion_mnist", "heavy_fmnist.npz")}
BATCH = 256
CALIBRATION = 1000


# ----------------------------------------------------------------------------- data and models

def load_data(dataset: str, data_dir):
    """((x_train, y_train), (x_test, y_test)) scaled to [0, 1] float32, or None without data."""
    from pycnn import datasets
    try:
        (xtr, ytr), (xte, yte) = datasets.load(dataset, data_dir)
    except Exception as exc:  # noqa: BLE001 - no data here: random images instead
        print(f"note: {dataset} not found ({type(exc).__name__}); random images are used")
        return None
    return ((datasets.to_float(xtr), ytr.reshape(-1).astype(np.int64)),
            (datasets.to_float(xte), yte.reshape(-1).astype(np.int64)))


def get_model(key: str, weights_dir):
    from pycnn import models
    builder, shape, _, file = MODELS[key]
    path = os.path.join(weights_dir, file) if weights_dir else None
    if path and os.path.exists(path):
        return models.load_model(path, compile=False), f"trained weights from {path}"
    return getattr(models, builder)(input_shape=shape), "random initial weights"


def train_model(key: str, data, epochs: int, path: str):
    from pycnn import models, optimizers, utils
    builder, shape, _, _ = MODELS[key]
    utils.set_random_seed(0)
    model = getattr(models, builder)(input_shape=shape)
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    (xtr, ytr), _ = data
    t0 = time.perf_counter()
    model.fit(xtr, ytr, epochs=epochs, batch_size=64, verbose=2)
    print(f"trained {key} for {epochs} epochs in {time.perf_counter() - t0:.0f} s; saved to {path}")
    model.save(path)
    return model


# ----------------------------------------------------------------------------- ONNX Runtime

def ort_models(model, qmodel, calibration, folder, threads):
    """ONNX Runtime sessions {name: session}: the float export, its quantize_static int8
    form, and (with qmodel) pycnn's own int8 export; {} with a note without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnxruntime import quantization as oq
    except ImportError as exc:
        print(f"note: onnx / onnxruntime not importable ({exc}); ONNX Runtime columns are skipped")
        return {}
    float_path = os.path.join(folder, "model.onnx")
    int8_path = os.path.join(folder, "model_int8.onnx")
    model.export(float_path, format="onnx")
    input_name = ort.InferenceSession(float_path, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: calibration[i:i + 100]} for i in range(0, len(calibration), 100)])

        def get_next(self):
            return next(self.batches, None)

    oq.quantize_static(float_path, int8_path, Reader(), quant_format=oq.QuantFormat.QDQ, per_channel=True,
                       activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8,
                       calibrate_method=oq.CalibrationMethod.MinMax)
    paths = {"ORT float32": float_path, "ORT int8": int8_path}
    if qmodel is not None:
        paths["ORT pycnn-int8"] = os.path.join(folder, "pycnn_int8.onnx")
        qmodel.export(paths["ORT pycnn-int8"], format="onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return {name: ort.InferenceSession(p, opts, providers=["CPUExecutionProvider"]) for name, p in paths.items()}


def ort_predict(session, x, batch=BATCH):
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


# ----------------------------------------------------------------------------- speed

def speed(args, pycnn) -> None:
    from pycnn import quantization
    threads = C.parse_threads(args.threads)[0]
    budget = 3.0 if args.quick else 12.0
    rows = []
    notes = []
    for key in args.models.split(","):
        builder, shape, dataset, _ = MODELS[key]
        model, where = get_model(key, args.weights_dir)
        data = load_data(dataset, args.data_dir) if os.environ.get("PYCNN_DATA_DIR") or args.data_dir else None
        rng = np.random.default_rng(0)
        if data is not None:
            calibration, x = data[0][0][:CALIBRATION], data[1][0][:BATCH]
        else:
            calibration = rng.random((CALIBRATION,) + shape, dtype=np.float32)
            x = rng.random((BATCH,) + shape, dtype=np.float32)
        with C.Threads(threads):
            qmodel = quantization.quantize(model, calibration)
            with tempfile.TemporaryDirectory() as folder:
                sessions = ort_models(model, qmodel, calibration, folder, threads)
                want = model.predict(x, batch_size=BATCH, verbose=0)
                got = qmodel.predict(x, batch_size=BATCH, verbose=0)
                agree = float(np.mean(want.argmax(1) == got.argmax(1)))
                notes.append(f"{key} ({where}): pycnn int8 top-1 agrees with float32 on {agree:.1%} of the batch; "
                             f"int8 layers: {', '.join(qmodel.int8_layers)}")
                fns = {"pycnn float32": lambda: model.predict(x, batch_size=BATCH, verbose=0),
                       "pycnn int8": lambda: qmodel.predict(x, batch_size=BATCH, verbose=0)}
                if sessions:
                    diff = float(np.abs(ort_predict(sessions["ORT float32"], x) - want).max())
                    assert diff < 1e-4, f"{key}: the ONNX float model differs from pycnn's by {diff}"
                    agree = {name: float(np.mean(ort_predict(s, x).argmax(1) == want.argmax(1)))
                             for name, s in sessions.items() if name != "ORT float32"}
                    notes.append(f"{key}: ONNX float32 within {diff:.1e} of pycnn float32; top-1 agreement with "
                                 f"float32: " + ", ".join(f"{n} {a:.1%}" for n, a in agree.items()))
                    for name, session in sessions.items():
                        feed = {session.get_inputs()[0].name: x}
                        fns[name] = lambda session=session, feed=feed: session.run(None, feed)
                mon = C.OtherLoad()
                times = C.interleaved(fns, budget_s=budget, min_reps=5, max_reps=400, warmup=3)
                notes.append(f"{key}: {mon.report()}")
        base = times["pycnn int8"]
        for name, t in times.items():
            rows.append([key, name, threads, str(t), f"{BATCH / t.median_ms * 1e3:,.0f}",
                         "1.00" if name == "pycnn int8" else C.ratio(t, base)])
    print(C.markdown_table(["model", "variant", "threads", "ms per batch of 256, median (min)", "images/s",
                            "variant ms / pycnn int8 ms"], rows))
    print()
    for n in notes:
        print(f"- {n}")


# ----------------------------------------------------------------------------- accuracy

def accuracy(args, pycnn) -> None:
    from pycnn import quantization
    folder = args.weights_dir or os.path.join(tempfile.gettempdir(), "pycnn-int8-weights")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for key in args.models.split(","):
        builder, shape, dataset, file = MODELS[key]
        data = load_data(dataset, args.data_dir)
        if data is None:
            raise SystemExit("--accuracy needs the real datasets: set PYCNN_DATA_DIR or pass --data-dir.")
        path = os.path.join(folder, file)
        if os.path.exists(path):
            model = pycnn.models.load_model(path, compile=False)
            print(f"{key}: weights from {path}")
        else:
            model = train_model(key, data, 20 if key == "lenet" else args.heavy_epochs, path)
        (xtr, _), (xte, yte) = data
        calibration = xtr[:CALIBRATION]
        float_acc = float(np.mean(model.predict(xte, batch_size=BATCH, verbose=0).argmax(1) == yte))
        for method in ("minmax", "percentile"):
            t0 = time.perf_counter()
            qmodel = quantization.quantize(model, calibration, method=method)
            seconds = time.perf_counter() - t0
            acc = float(np.mean(qmodel.predict(xte, batch_size=BATCH, verbose=0).argmax(1) == yte))
            rows.append([key, dataset, f"pycnn int8 ({method})", f"{float_acc:.4f}", f"{acc:.4f}",
                         f"{100 * (acc - float_acc):+.2f}", f"{seconds:.1f}"])
        with tempfile.TemporaryDirectory() as tmp:
            sessions = ort_models(model, None, calibration, tmp, pycnn.get_num_threads())
            if sessions:
                acc = float(np.mean(ort_predict(sessions["ORT int8"], xte).argmax(1) == yte))
                rows.append([key, dataset, "ORT int8 (quantize_static, minmax)", f"{float_acc:.4f}", f"{acc:.4f}",
                             f"{100 * (acc - float_acc):+.2f}", "-"])
    print(C.markdown_table(["model", "dataset", "int8 variant", "float32 test accuracy", "int8 test accuracy",
                            "change (points)", "quantize() s"], rows))
    print(f"\n- calibration: the first {CALIBRATION} training images; test sets complete (10,000 images)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short timing rounds (seconds)")
    ap.add_argument("--threads", default=None, help="threads for pycnn and ONNX Runtime (default: all cores)")
    ap.add_argument("--models", default="lenet,heavy", help="lenet,heavy (default: both)")
    ap.add_argument("--weights-dir", default=None, help="folder of trained weights (lenet_cifar10.npz, heavy_fmnist.npz)")
    ap.add_argument("--data-dir", default=None, help="dataset folder (default: $PYCNN_DATA_DIR)")
    ap.add_argument("--accuracy", action="store_true", help="test accuracy of float32 and int8 (trains if needed)")
    ap.add_argument("--heavy-epochs", type=int, default=3, help="--accuracy: epochs for the heavy model (default 3)")
    args = ap.parse_args()
    pycnn = C.init()
    for key in args.models.split(","):
        if key not in MODELS:
            raise SystemExit(f"--models expected names from {', '.join(MODELS)}. Received: {key!r}.")
    try:
        import onnxruntime
        ort_version = f"ONNX Runtime {onnxruntime.__version__}"
    except ImportError:
        ort_version = "ONNX Runtime not installed"
    C.print_header("int8 accuracy" if args.accuracy else "int8 inference speed, batch 256",
                   extra=[ort_version, f"int8 kernels: {pycnn.build_info().get('int8_kernels')}"])
    if args.accuracy:
        accuracy(args, pycnn)
    else:
        speed(args, pycnn)


if __name__ == "__main__":
    main()
