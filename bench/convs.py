"""Per-layer convolution benchmark against the machine's FP32 peak and PyTorch (channels_last).

    python bench/convs.py [--batch 256] [--threads 2] [--budget 3] [--net speedrun|heavy]

The layers of the speed-run network (pycnn.models.speedrun_cifar10: 3x3 'same' convs of
24-256 channels on maps 31x31 down to 3x3, and its 2x2 whitening conv) at one batch size;
for each the three passes a training step runs, timed apart:

* fwd:     the forward (linear: in the network BN and GELU follow), without a tape
           (ops.OpCall(...).network.predict: as in a training step, the output stays where the
           conv wrote it; OpCall.forward would also copy it into the tape it returns),
* dweight: the weight gradient alone (no input gradient, as for a first layer),
* dinp:    the input gradient: a backward with the input gradient costs dinp + dweight (the
           op contract hands every present parameter a gradient buffer, so a frozen weight's
           gradient is still computed), so dinp is that backward's median minus dweight's.

GFLOP/s counts 2 * multiply-adds of the dense convolution (padding included, as every
framework computes it); "% peak" divides by the FP32 FMA peak measured in this run
(pycnn.ops.fma_peak: register FMA chains on every thread, before and after the table; the
higher is used). PyTorch runs the same conv on a channels_last tensor (torch's fastest CPU
layout) with autograd, each pass alone as for pycnn; ratios are torch_ms / pycnn_ms (> 1:
pycnn faster). Timings interleave pycnn and torch rounds (bench/_common.interleaved).
"""
from __future__ import annotations

import argparse

import _common as C  # first: it configures OpenBLAS before NumPy is loaded

import numpy as np

NETS = {
    # name, (H, W, C), kernel, filters, padding, first layer (no input gradient)
    "speedrun": [("whiten", (32, 32, 3), 2, 24, "valid", True),
                 ("group1_conv1", (31, 31, 24), 3, 64, "same", False),
                 ("group1_conv2", (15, 15, 64), 3, 64, "same", False),
                 ("group2_conv1", (15, 15, 64), 3, 256, "same", False),
                 ("group2_conv2", (7, 7, 256), 3, 256, "same", False),
                 ("group3_conv1", (7, 7, 256), 3, 256, "same", False),
                 ("group3_conv2", (3, 3, 256), 3, 256, "same", False)],
    "heavy": [("conv1", (28, 28, 1), 7, 32, "valid", True),
              ("conv2", (22, 22, 32), 7, 64, "valid", False),
              ("conv3", (16, 16, 64), 7, 128, "valid", False),
              ("conv4", (10, 10, 128), 7, 256, "valid", False)],
}


def macs(n, hwc, k, f, padding):
    h, w, c = hwc
    oh, ow = (h, w) if padding == "same" else (h - k + 1, w - k + 1)
    return n * oh * ow * k * k * c * f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="default: all usable cores")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per layer and pass")
    parser.add_argument("--net", choices=sorted(NETS), default="speedrun")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    pycnn = C.init()
    from pycnn import ops

    threads = args.threads or C.usable_cores()
    pycnn.set_num_threads(threads)
    torch = None if args.no_torch else C.import_torch(quiet=True)
    if torch is not None:
        torch.set_num_threads(threads)
    C.print_header(f"Convolutions of the {args.net} network, batch {args.batch}, {threads} thread(s)",
                   torch.__version__ if torch is not None else None)
    load = C.OtherLoad()
    peaks = [ops.fma_peak(0.5)["gflops"]]
    rng = np.random.default_rng(0)
    rows = []
    totals = {"pycnn": 0.0, "torch": 0.0, "flop": 0.0}
    for name, hwc, k, f, padding, first in NETS[args.net]:
        n = args.batch
        x = rng.standard_normal((n,) + hwc, dtype=np.float32)
        w = (rng.standard_normal((k, k, hwc[2], f)) * np.sqrt(2.0 / (k * k * hwc[2]))).astype(np.float32)
        spec = ops.OpSpec("conv2d", {"padding": padding}, (w, None))
        fwd = ops.OpCall(spec, [hwc], trained=[False, False], input_grads=False)
        dinp = ops.OpCall(spec, [hwc], trained=[False, False], input_grads=True)
        dweight = ops.OpCall(spec, [hwc], trained=[True, False], input_grads=False)
        out, tape_i = dinp.forward([x])
        _, tape_w = dweight.forward([x])
        g = rng.standard_normal(out.shape, dtype=np.float32)
        passes = {"fwd": lambda: fwd.network.predict([x]), "dweight": lambda: dweight.backward(tape_w, g)}
        if not first:
            passes["dinp"] = lambda: dinp.backward(tape_i, g)  # dinp + dweight: see the docstring
        torch_passes = {}
        if torch is not None:
            xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)
            wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).contiguous(memory_format=torch.channels_last)
            pad = "same" if padding == "same" else 0
            gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)
            conv = torch.nn.functional.conv2d
            torch_passes["fwd"] = lambda: conv(xt, wt, padding=pad)
            xg = xt.clone().requires_grad_(True)
            wg = wt.clone().requires_grad_(True)
            out_i = conv(xg, wt, padding=pad)
            out_w = conv(xt, wg, padding=pad)
            torch_passes["dweight"] = lambda: torch.autograd.grad(out_w, wg, gt, retain_graph=True)
            if not first:
                torch_passes["dinp"] = lambda: torch.autograd.grad(out_i, xg, gt, retain_graph=True)
        flop = 2.0 * macs(n, hwc, k, f, padding)
        measured = {}
        for p in ("fwd", "dweight", "dinp"):
            if p not in passes:
                continue
            fns = {"pycnn": passes[p]}
            if p in torch_passes:
                fns["torch"] = torch_passes[p]
            measured[p] = C.interleaved(fns, args.budget)
        for p in ("fwd", "dinp", "dweight"):
            if p not in measured:
                continue
            t = measured[p]
            mine = t["pycnn"]
            if p == "dinp":  # (dinp + dweight) - dweight
                w = measured["dweight"]["pycnn"]
                mine = C.Timing(mine.median_ms - w.median_ms, mine.min_ms - w.min_ms, mine.reps)
            theirs = t.get("torch")
            totals["pycnn"] += mine.median_ms
            totals["flop"] += flop
            if theirs is not None:
                totals["torch"] += theirs.median_ms
            rows.append([name, f"{n}x{hwc[0]}x{hwc[1]}x{hwc[2]} k{k}->{f} {padding}", p, str(mine),
                         f"{flop / mine.median_ms / 1e6:.0f}", None,
                         str(theirs) if theirs else "-", C.ratio(theirs, mine)])
    peaks.append(ops.fma_peak(0.5)["gflops"])
    peak = max(peaks)
    for row in rows:
        row[5] = f"{100 * float(row[4]) / peak:.0f}%"
    print(C.markdown_table(["layer", "shape", "pass", "pycnn ms", "pycnn GFLOP/s", "% peak", "torch ms",
                            "torch/pycnn"], rows))
    print()
    all_rate = totals["flop"] / totals["pycnn"] / 1e6
    line = (f"All passes: pycnn {totals['pycnn']:.1f} ms, {all_rate:.0f} GFLOP/s = {100 * all_rate / peak:.0f}% of "
            f"peak")
    if totals["torch"]:
        line += f"; torch {totals['torch']:.1f} ms (torch/pycnn {totals['torch'] / totals['pycnn']:.2f})"
    print(line)
    print(f"FP32 FMA peak this run: {', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s ({threads} thread(s), "
          f"{pycnn.ops.get_isa()}); other processes kept {load.cores():.2f} cores busy on average.")


if __name__ == "__main__":
    main()
