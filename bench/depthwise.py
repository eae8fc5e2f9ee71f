"""Depthwise and dilated/grouped conv2d: pycnn's ops vs the tests' float64 NumPy oracle vs PyTorch.

    python bench/depthwise.py [--quick] [--threads 1,2]

Shapes: MobileNet-like depthwise 3x3 layers (stride 1 and 2, depth_multiplier 1 and 2), a
dilated 3x3 and a grouped 3x3 conv. For each: forward and forward+backward ("total", input
and weight gradients). pycnn runs the depthwise_conv2d and conv2d ops (dilation_rate,
groups) as pycnn.ops.OpCall; the NumPy column is the forward of the tests' oracle
(tests/oracle: float64, one strided slice per tap). PyTorch runs torch.nn.functional.conv2d with groups on NCHW tensors
converted once outside the timed region (its depthwise kernel for groups == C); backward is
torch.autograd.grad on a retained graph. Outputs are checked against both peers before
anything is timed. Ratios are peer_ms / pycnn_ms of the medians: > 1 means pycnn is faster.
"""
from __future__ import annotations

import argparse

import _common as C  # first: it configures OpenBLAS before NumPy is loaded

import numpy as np


CASES = [  # name, (N, H, W, C), (KH, KW, M or F), strides, padding, dilation, groups (None: depthwise)
    ("dw 3x3 s1", (32, 56, 56, 32), (3, 3, 1), (1, 1), "same", (1, 1), None),
    ("dw 3x3 s2", (32, 56, 56, 64), (3, 3, 1), (2, 2), "same", (1, 1), None),
    ("dw 3x3 s1", (32, 14, 14, 256), (3, 3, 1), (1, 1), "same", (1, 1), None),
    ("dw 3x3 M2", (32, 28, 28, 32), (3, 3, 2), (1, 1), "same", (1, 1), None),
    ("dw 3x3 d2", (32, 28, 28, 64), (3, 3, 1), (1, 1), "same", (2, 2), None),
    ("conv 3x3 d2", (32, 28, 28, 32), (3, 3, 64), (1, 1), "same", (2, 2), 1),
    ("conv 3x3 g4", (32, 28, 28, 64), (3, 3, 64), (1, 1), "same", (1, 1), 4),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 4 and a short time budget")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: all usable cores)")
    args = ap.parse_args()
    pycnn = C.init(None)
    ops = pycnn.ops
    oracle = C.oracle
    torch = C.import_torch(quiet=True)
    C.print_header("depthwise / dilated / grouped conv2d", torch.__version__ if torch else None)
    budget = 0.3 if args.quick else 2.0
    rng = np.random.default_rng(0)
    rows = []
    for threads in C.parse_threads(args.threads):
        with C.Threads(threads, torch):
            for name, shape, (KH, KW, MF), strides, padding, dilation, groups in CASES:
                if args.quick:
                    shape = (4,) + shape[1:]
                N, H, W, Cc = shape
                x = rng.uniform(-1, 1, shape).astype(np.float32)
                depthwise = groups is None
                w = (rng.standard_normal((KH, KW, Cc if depthwise else Cc // groups, MF)) * 0.2).astype(np.float32)
                kind = "depthwise_conv2d" if depthwise else "conv2d"
                attrs = dict(strides=strides, padding=padding, dilation_rate=dilation)
                if not depthwise:
                    attrs["groups"] = groups
                call = ops.OpCall(ops.OpSpec(kind, attrs, (w, None)), [shape[1:]])
                fwd = lambda: call.forward([x])[0]
                out = fwd()
                G = rng.standard_normal(out.shape).astype(np.float32)

                def tot():
                    _, tape = call.forward([x])
                    return call.backward(tape, G)

                nfwd = lambda: oracle.forward(kind, [x], [w, None], attrs)
                C.assert_close(name + " vs NumPy", out, nfwd())
                (dinp,), (dw, _) = tot()
                (ndinp,), (ndw, _) = oracle.backward(kind, G, [x], [w, None], attrs)
                C.assert_close(name + " dinp vs NumPy", dinp, ndinp)
                C.assert_close(name + " dkernel vs NumPy", dw, ndw)
                fns = {"pycnn fwd": fwd, "pycnn total": tot, "numpy fwd": nfwd}
                if torch is not None:
                    # torch weight (F, C/groups, KH, KW); depthwise output channel c*M + m is torch's too
                    tg = Cc if depthwise else groups
                    wt_np = (w.reshape(KH, KW, 1, Cc * MF) if depthwise else w).transpose(3, 2, 0, 1)
                    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
                    wt = torch.tensor(wt_np.copy(), requires_grad=True)
                    gt = torch.tensor(G.transpose(0, 3, 1, 2).copy())
                    # TensorFlow's 'same' can pad asymmetrically: pad explicitly (inside the timing)
                    _, _, PT, PB, PL, PR = C.geometry(H, W, KH, KW, strides[0], strides[1], padding, *dilation)
                    F_ = torch.nn.functional
                    tf = lambda: F_.conv2d(F_.pad(xt, (PL, PR, PT, PB)), wt, None, strides, 0, dilation, tg)
                    C.assert_close(name + " vs torch", out, tf().detach().numpy().transpose(0, 2, 3, 1))

                    def ttot():
                        y = tf()
                        return torch.autograd.grad(y, (xt, wt), gt)

                    fns["torch fwd"], fns["torch total"] = lambda: tf().detach(), ttot
                t = C.interleaved(fns, budget)
                rows.append([name, f"{N}x{H}x{W}x{Cc} k{KH}x{KW}x{MF} s{strides[0]} d{dilation[0]}", threads,
                             t["pycnn fwd"], t.get("numpy fwd", "-"), t.get("torch fwd", "-"),
                             C.ratio(t.get("torch fwd"), t["pycnn fwd"]), t["pycnn total"],
                             t.get("torch total", "-"), C.ratio(t.get("torch total"), t["pycnn total"])])
    print(C.markdown_table(["op", "shape", "threads", "pycnn fwd ms", "numpy fwd ms", "torch fwd ms", "torch/pycnn",
                            "pycnn fwd+bwd ms", "torch fwd+bwd ms", "torch/pycnn"], rows))


if __name__ == "__main__":
    main()
