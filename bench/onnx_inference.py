"""Inference: pycnn's predict vs ONNX Runtime (CPU) on the model pycnn exports, same run.

    python bench/onnx_inference.py [--quick] [--threads 1,all] [--models lenet,heavy] [--batches 1,7,64,256]

Models from pycnn.models: LeNet on 32x32x3 and the lecture's heavy Fashion-MNIST model
(fashion_mnist_cnn: four 7x7 'valid' relu convs 32-64-128-256, dense 10 softmax, on 28x28x1),
seeded weights. Each is exported with ``model.export(path, format='onnx')`` (opset 17, NHWC
input, dynamic batch; docs/interop.md) and loaded into an ``onnxruntime.InferenceSession``
(CPUExecutionProvider, all graph optimizations, ``intra_op_num_threads`` = the thread count,
spinning off: idle threads sleep, as pycnn's OpenMP threads do by default; both share the
process and take turns). Before timing, ONNX Runtime's outputs must equal pycnn's within
float32 round-off. Then ``model.predict(x, batch_size=N, verbose=0)`` and ``session.run`` on
the same float32 NHWC batch are timed in interleaved rounds (bench/_common.py); the table
gives median (min) ms per call, images/s, and ORT/pycnn, the ratio of the medians (> 1: pycnn
is faster). (The script is not named onnx.py: that name would shadow the onnx package.)
"""
from __future__ import annotations

import argparse
import os
import tempfile

import _common as C  # first: it configures OpenBLAS before NumPy is loaded

import numpy as np

MODELS = {"lenet": ("lenet", (32, 32, 3)), "heavy": ("fashion_mnist_cnn", (28, 28, 1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batches 1 and 64, a short time budget")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: all usable cores)")
    ap.add_argument("--models", default="lenet,heavy", help="comma-separated subset of lenet,heavy")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,7,64,256)")
    args = ap.parse_args()
    pycnn = C.init(None)
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise SystemExit(f"bench/onnx_inference.py needs onnxruntime ({err}): pip install onnxruntime 'pycnn[onnx]'")
    batches = C.parse_ints(args.batches, "--batches") if args.batches else ([1, 64] if args.quick else [1, 7, 64, 256])
    budget = 0.3 if args.quick else 2.0
    C.print_header("inference: pycnn predict vs ONNX Runtime on pycnn's ONNX export", extra=[
        f"onnxruntime {ort.__version__} (CPUExecutionProvider, ORT_ENABLE_ALL, allow_spinning=0)"])
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            builder, shape = MODELS[key]
            pycnn.set_random_seed(0)
            model = getattr(pycnn.models, builder)(input_shape=shape)
            path = os.path.join(tmp, f"{key}.onnx")
            model.export(path, format="onnx")
            for threads in C.parse_threads(args.threads):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                name = session.get_inputs()[0].name
                with C.Threads(threads):
                    for batch in batches:
                        x = rng.random((batch,) + shape, dtype=np.float32)
                        ours = lambda: model.predict(x, batch_size=batch, verbose=0)
                        theirs = lambda: session.run(None, {name: x})[0]
                        diff = C.assert_close(f"{key} batch {batch}: ORT vs pycnn", theirs(), ours(), rtol=1e-4)
                        t = C.interleaved({"pycnn": ours, "ort": theirs}, budget)
                        rows.append([key, batch, threads, t["pycnn"], t["ort"],
                                     f"{batch / t['pycnn'].median_ms * 1e3:.0f}",
                                     f"{batch / t['ort'].median_ms * 1e3:.0f}", C.ratio(t["ort"], t["pycnn"]),
                                     f"{diff:.1e}"])
    print(C.markdown_table(["model", "batch", "threads", "pycnn predict ms", "ORT run ms", "pycnn img/s",
                            "ORT img/s", "ORT/pycnn", "max abs diff"], rows))


if __name__ == "__main__":
    main()
