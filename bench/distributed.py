"""Data-parallel training on MPI: measured on this machine, projected for a cluster.

    python bench/distributed.py [--models lenet,heavy] [--batch 64]

1. On this machine: the same global batch trained by one process with 2 threads and by
   ``mpirun -np 2`` processes with 1 thread each (pycnn.distributed: each rank computes its
   half, one Allreduce of the gradients, the same Adam update on both). Prints images/s and
   the share of each step spent in the gradient exchange (pack + Allreduce + unpack).
2. On paper: weak scaling to 2..64 machines, each taking ``--batch`` samples of every global
   step with its 2 cores, from the measured single-machine step time t and the gradient size
   G bytes. A ring allreduce moves 2 (P - 1) / P * G bytes through each machine's link and
   takes 2 (P - 1) latency hops: t_ar = 2 (P - 1) / P * G / bandwidth + 2 (P - 1) * alpha.
   Efficiency = t / (t + t_ar) (no overlap of communication with the backward pass).
   alpha: 30 us for 10 Gbit/s Ethernet with TCP, 3 us for 100 Gbit/s RDMA (InfiniBand/RoCE).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDERS = {"lenet": ("lenet", (32, 32, 3)), "heavy": ("fashion_mnist_cnn", (28, 28, 1))}
NETWORKS = {"10 Gbit/s Ethernet": (10e9 / 8, 30e-6), "100 Gbit/s RDMA": (100e9 / 8, 3e-6)}
MACHINES = (2, 4, 8, 16, 32, 64)


def _model(key: str):
    import pycnn

    builder, shape = BUILDERS[key]
    pycnn.utils.set_random_seed(0)
    model = getattr(pycnn.models, builder)(input_shape=shape)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, shape


def _batch(shape, n):
    rng = np.random.default_rng(1)
    return rng.random((n,) + tuple(shape)).astype(np.float32), rng.integers(0, 10, n)


def measure(key: str, batch: int, steps: int) -> dict:
    """Median step time of fit-like steps on the global ``batch`` (this process's share under MPI)."""
    import pycnn
    from pycnn import distributed

    model, shape = _model(key)
    x, y = _batch(shape, batch)
    exchange = model._exchange
    spent = [0.0]
    real = exchange.reduce

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = real(*args, **kwargs)
        spent[0] += time.perf_counter() - t0
        return out

    exchange.reduce = timed
    part = distributed.share(batch)
    xs, ys = [x[part]], y[part].reshape(-1, 1)

    def step():
        if distributed.active():
            model._distributed_step(xs, ys, None, batch)
        else:
            model.train_on_batch(x, y)

    distributed.sync_training_state(model)
    for _ in range(3):
        step()
    times, shares = [], []
    for _ in range(steps):
        spent[0] = 0.0
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
        times.append(dt)
        shares.append(spent[0] / dt)
    gradient_bytes = 4 * sum(w.size for w in model.trainable_weights)
    return {"step_s": statistics.median(times), "exchange_share": statistics.median(shares),
            "gradient_bytes": gradient_bytes, "threads": pycnn.get_num_threads()}


def worker(args) -> None:
    import pycnn

    pycnn.distributed.init()
    pycnn.set_num_threads(1)
    results = {key: measure(key, args.batch, args.steps[key]) for key in args.models}
    if pycnn.distributed.is_primary():
        print("RESULT " + json.dumps(results), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet,heavy")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    args.steps = {"lenet": 40, "heavy": 6}
    if args.worker:
        worker(args)
        return
    import pycnn

    pycnn.set_num_threads(2)
    single = {key: measure(key, args.batch, args.steps[key]) for key in args.models}
    ranks = None
    if shutil.which("mpirun"):
        cmd = ["mpirun", "-np", "2", "-host", "127.0.0.1", sys.executable, os.path.abspath(__file__), "--worker",
               "--models", ",".join(args.models), "--batch", str(args.batch)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        line = next((ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(run.stdout, run.stderr, file=sys.stderr)
        else:
            ranks = json.loads(line[len("RESULT "):])
    print(f"## On this machine (global batch {args.batch}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f})\n")
    print("| model | gradient | 1 process x 2 threads img/s | 2 ranks x 1 thread img/s | ranks / process "
          "| exchange share of a 2-rank step |")
    print("|---|---|---|---|---|---|")
    for key in args.models:
        s = single[key]
        one = args.batch / s["step_s"]
        if ranks:
            r = ranks[key]
            two = args.batch / r["step_s"]
            print(f"| {key} | {s['gradient_bytes'] / 1e6:.2f} MB | {one:,.0f} | {two:,.0f} | {two / one:.2f} | "
                  f"{100 * r['exchange_share']:.1f}% |")
        else:
            print(f"| {key} | {s['gradient_bytes'] / 1e6:.2f} MB | {one:,.0f} | (no mpirun) | | |")
    print(f"\n## Projected weak scaling: {args.batch} samples per machine per step, 2 cores each "
          "(efficiency = t / (t + ring allreduce))\n")
    header = " | ".join(str(p) for p in MACHINES)
    print(f"| model | network | step t | {header} |")
    print("|---|---|---|" + "---|" * len(MACHINES))
    for key in args.models:
        t, g = single[key]["step_s"], single[key]["gradient_bytes"]
        for name, (bandwidth, alpha) in NETWORKS.items():
            cells = []
            for p in MACHINES:
                t_ar = 2 * (p - 1) / p * g / bandwidth + 2 * (p - 1) * alpha
                cells.append(f"{100 * t / (t + t_ar):.0f}%")
            print(f"| {key} | {name} | {t * 1e3:.1f} ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
