"""Per-op benchmark: pycnn's ops (pycnn.ops.OpCall) vs the tests' float64 NumPy oracle vs PyTorch.

    python bench/ops.py [--quick] [--threads 1,2] [--only conv] [--omp-wait-policy default]

Shapes: LeNet's layers on CIFAR-10 at batch 64, a 3x3 64->128 'same' conv on 14x14
(batch 64) and the four 7x7 'valid' convs of the lecture's heavy Fashion-MNIST model
(batch 32). For each op: forward, backward and forward+backward ("total", timed as one
unit). pycnn runs each op as ops.OpCall (the eager form of every op: a one-node compiled
network; forward keeps a tape, backward reads it). The NumPy column is the oracle of the
tests (tests/oracle: float64, one matmul per kernel tap, windows listed explicitly), whose
backward recomputes its forward: it shows what the native kernels buy over obvious NumPy.
PyTorch runs torch.nn.functional ops with autograd on NCHW tensors converted once outside
the timed region; its backward is torch.autograd.grad on a retained graph. The first layer
of a network (LeNet conv1, heavy conv1) computes no input gradient in any of the three, as
in training. The softmax cross-entropy is one fused call (ops.loss) whose gradient comes
with the loss: its fwd is the loss alone, its bwd row is left out.

Before anything is timed, each op's outputs and gradients are checked against the oracle
and PyTorch (float32 tolerances). Times are the median (and min) of interleaved
rounds (pycnn, NumPy, torch, pycnn, ...) after a warm-up; all three use the same thread
count (pycnn.set_num_threads, torch.set_num_threads, threadpoolctl for NumPy's BLAS).
Ratios are peer_ms / pycnn_ms of the medians: > 1 means pycnn is faster.

pycnn and torch share one OpenMP runtime (libgomp) in this process, hence one wait policy.
The default here is libgomp's own (what a PyTorch user gets); pycnn on its own sets
OMP_WAIT_POLICY=PASSIVE at import, which is slower on an idle machine for both (see
--omp-wait-policy passive). The header says which policy was in force.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import _common as C  # first: it configures OpenBLAS before NumPy is loaded

import numpy as np

ops = None  # pycnn.ops, set in main() after the OpenMP wait policy is configured
oracle = C.oracle


@dataclass
class Case:
    name: str
    kind: str                    # conv | maxpool | dense | softmax_ce
    shape: tuple                 # input shape
    params: dict = field(default_factory=dict)
    first: bool = False          # first layer of its network: no input gradient

    def describe(self) -> str:
        p = self.params
        if self.kind == "conv":
            N, H, W, Cc = self.shape
            s = f"{N}x{H}x{W}x{Cc} k{p['k']}x{p['k']}->{p['F']} {p['padding']}"
            if p.get("strides", 1) != 1:
                s += f" s{p['strides']}"
            s += f" {p['activation']}"
        elif self.kind == "maxpool":
            N, H, W, Cc = self.shape
            s = f"{N}x{H}x{W}x{Cc} pool {p['pool']}"
        elif self.kind == "dense":
            s = f"{self.shape[0]}x{self.shape[1]} -> {p['units']} {p['activation']}"
        else:
            s = f"{self.shape[0]}x{self.shape[1]}"
        return s + (" (no dinp)" if self.first else "")


CASES = [
    Case("lenet conv1", "conv", (64, 32, 32, 3), dict(k=5, F=6, padding="same", activation="relu"), first=True),
    Case("lenet maxpool1", "maxpool", (64, 32, 32, 6), dict(pool=2)),
    Case("lenet conv2", "conv", (64, 16, 16, 6), dict(k=5, F=16, padding="valid", activation="relu")),
    Case("lenet maxpool2", "maxpool", (64, 12, 12, 16), dict(pool=2)),
    Case("lenet dense1", "dense", (64, 576), dict(units=120, activation="relu")),
    Case("lenet dense2", "dense", (64, 120), dict(units=84, activation="relu")),
    Case("lenet dense3", "dense", (64, 84), dict(units=10, activation="linear")),
    Case("lenet softmax-CE", "softmax_ce", (64, 10)),
    Case("conv 3x3", "conv", (64, 14, 14, 64), dict(k=3, F=128, padding="same", activation="relu")),
    Case("heavy conv1", "conv", (32, 28, 28, 1), dict(k=7, F=32, padding="valid", activation="relu"), first=True),
    Case("heavy conv2", "conv", (32, 22, 22, 32), dict(k=7, F=64, padding="valid", activation="relu")),
    Case("heavy conv3", "conv", (32, 16, 16, 64), dict(k=7, F=128, padding="valid", activation="relu")),
    Case("heavy conv4", "conv", (32, 10, 10, 128), dict(k=7, F=256, padding="valid", activation="relu")),
]


@dataclass
class Prepared:
    """The three passes of each framework, plus the checked results and FLOP counts."""
    fns: Dict[str, Dict[str, Callable[[], object]]]   # framework -> pass -> callable
    check: Callable[[], str]
    flops: Dict[str, Optional[float]]                 # pass -> FLOPs (None: not a matmul op)


def _torch_act(torch, name):
    return {"relu": torch.relu, "linear": lambda t: t, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name]


def _nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _op_call(kind, x, params, attrs, trained, input_grads):
    return ops.OpCall(ops.OpSpec(kind, attrs, tuple(params)), [x.shape[1:]], trained=trained, input_grads=input_grads)


def prepare_conv(case: Case, rng, torch) -> Prepared:
    N, H, W, Cc = case.shape
    p = case.params
    K, F, pad, act = p["k"], p["F"], p["padding"], p["activation"]
    S = p.get("strides", 1)
    strides = (S, S)
    need_dinp = not case.first
    x = rng.standard_normal((N, H, W, Cc), dtype=np.float32)
    # He-scaled weights keep relu outputs O(1) through the layer, like trained nets.
    w = (rng.standard_normal((K, K, Cc, F)) * np.sqrt(2.0 / (K * K * Cc))).astype(np.float32)
    b = (0.1 * rng.standard_normal(F)).astype(np.float32)
    attrs = {"strides": strides, "padding": pad, "activation": act}
    call = _op_call("conv2d", x, [w, b], attrs, [True, True], need_dinp)
    out, tape = call.forward([x])
    G = rng.standard_normal(out.shape, dtype=np.float32)
    OH, OW, PT, PB, PL, PR = C.geometry(H, W, K, K, S, S, pad)

    def pf():
        return call.forward([x])

    def pb(t=tape):
        return call.backward(t, G)

    def nf():
        return oracle.forward("conv2d", [x], [w, b], attrs)

    def nb():
        return oracle.backward("conv2d", G, [x], [w, b], attrs)

    def nt():
        nf()
        return nb()

    fns = {"pycnn": {"fwd": pf, "bwd": pb, "total": lambda: pb(pf()[1])},
           "numpy": {"fwd": nf, "bwd": nb, "total": nt}}
    if torch is not None:
        Fn = torch.nn.functional
        tact = _torch_act(torch, act)
        xt = torch.from_numpy(_nchw(x)).requires_grad_(need_dinp)
        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).requires_grad_(True)
        bt = torch.from_numpy(b.copy()).requires_grad_(True)
        Gt = torch.from_numpy(_nchw(G))
        inputs = ([xt] if need_dinp else []) + [wt, bt]
        symmetric = PT == PB and PL == PR

        def tfwd():
            xin = xt if symmetric else Fn.pad(xt, (PL, PR, PT, PB))
            return tact(Fn.conv2d(xin, wt, bt, stride=strides, padding=(PT, PL) if symmetric else 0))

        yt = tfwd()
        fns["torch"] = {"fwd": tfwd,
                        "bwd": lambda: torch.autograd.grad(yt, inputs, Gt, retain_graph=True),
                        "total": lambda: torch.autograd.grad(tfwd(), inputs, Gt)}

    def check() -> str:
        (dinp,), (dw, db) = pb()
        assert (dinp is None) == (not need_dinp)
        (ndinp,), (ndw, ndb) = nb()
        d_np = [C.assert_close(f"{case.name} out vs NumPy", out, nf(), rtol=1e-4),
                C.assert_close(f"{case.name} dweight vs NumPy", dw, ndw),
                C.assert_close(f"{case.name} dbias vs NumPy", db, ndb)]
        if need_dinp:
            d_np.append(C.assert_close(f"{case.name} dinp vs NumPy", dinp, ndinp))
        msg = f"NumPy max|diff| {max(d_np):.1e}"
        if torch is not None:
            grads = torch.autograd.grad(tfwd(), inputs, Gt)
            tdw, tdb = grads[-2], grads[-1]
            d_t = [C.assert_close(f"{case.name} out vs torch", out, _nhwc(tfwd()), rtol=1e-4),
                   C.assert_close(f"{case.name} dweight vs torch", dw, tdw.numpy().transpose(2, 3, 1, 0)),
                   C.assert_close(f"{case.name} dbias vs torch", db, tdb.numpy())]
            if need_dinp:
                d_t.append(C.assert_close(f"{case.name} dinp vs torch", dinp, _nhwc(grads[0])))
            msg += f", PyTorch max|diff| {max(d_t):.1e}"
        return msg

    macs = N * OH * OW * F * K * K * Cc
    return Prepared(fns, check, {"fwd": 2.0 * macs, "bwd": 2.0 * macs * (2 if need_dinp else 1),
                                 "total": 2.0 * macs * (3 if need_dinp else 2)})


def prepare_maxpool(case: Case, rng, torch) -> Prepared:
    N, H, W, Cc = case.shape
    P = case.params["pool"]
    # Distinct values (shuffled arange + small noise): no window has a tie, so the three
    # implementations must route every gradient to the same input.
    x = (rng.permutation(N * H * W * Cc).astype(np.float64) + 0.25 * rng.random(N * H * W * Cc))
    x = (x / x.size).astype(np.float32).reshape(N, H, W, Cc)
    attrs = {"pool_size": (P, P), "strides": (P, P)}
    call = _op_call("maxpool2d", x, [], attrs, [], True)
    out, tape = call.forward([x])
    G = rng.standard_normal(out.shape, dtype=np.float32)

    def pf():
        return call.forward([x])

    def pb(t=tape):
        return call.backward(t, G)

    def nf():
        return oracle.forward("maxpool2d", [x], [], attrs)

    def nb():
        return oracle.backward("maxpool2d", G, [x], [], attrs)

    fns = {"pycnn": {"fwd": pf, "bwd": pb, "total": lambda: pb(pf()[1])},
           "numpy": {"fwd": nf, "bwd": nb, "total": lambda: (nf(), nb())}}
    if torch is not None:
        Fn = torch.nn.functional
        xt = torch.from_numpy(_nchw(x)).requires_grad_(True)
        Gt = torch.from_numpy(_nchw(G))

        def tfwd():
            return Fn.max_pool2d(xt, P)

        yt = tfwd()
        fns["torch"] = {"fwd": tfwd,
                        "bwd": lambda: torch.autograd.grad(yt, [xt], Gt, retain_graph=True),
                        "total": lambda: torch.autograd.grad(tfwd(), [xt], Gt)}

    def check() -> str:
        (dinp,), _ = pb()
        # a max and a gradient routed to the winner are exact: identical to the oracle's
        d = [C.assert_close(f"{case.name} out vs NumPy", out, nf(), rtol=0, atol_frac=0),
             C.assert_close(f"{case.name} dinp vs NumPy", dinp, nb()[0][0], rtol=0, atol_frac=0)]
        msg = f"NumPy max|diff| {max(d):.1e}"
        if torch is not None:
            (tdx,) = torch.autograd.grad(tfwd(), [xt], Gt)
            d = [C.assert_close(f"{case.name} out vs torch", out, _nhwc(tfwd()), rtol=0, atol_frac=0),
                 C.assert_close(f"{case.name} dinp vs torch", dinp, _nhwc(tdx), rtol=0, atol_frac=0)]
            msg += f", PyTorch max|diff| {max(d):.1e}"
        return msg

    return Prepared(fns, check, {"fwd": None, "bwd": None, "total": None})


def prepare_dense(case: Case, rng, torch) -> Prepared:
    N, IN = case.shape
    OUT, act = case.params["units"], case.params["activation"]
    x = rng.standard_normal((N, IN), dtype=np.float32)
    w = (rng.standard_normal((IN, OUT)) * np.sqrt(2.0 / IN)).astype(np.float32)
    b = (0.1 * rng.standard_normal(OUT)).astype(np.float32)
    attrs = {"activation": act}
    call = _op_call("dense", x, [w, b], attrs, [True, True], True)
    out, tape = call.forward([x])
    G = rng.standard_normal(out.shape, dtype=np.float32)

    def pf():
        return call.forward([x])

    def pb(t=tape):
        return call.backward(t, G)

    def nf():
        return oracle.forward("dense", [x], [w, b], attrs)

    def nb():
        return oracle.backward("dense", G, [x], [w, b], attrs)

    fns = {"pycnn": {"fwd": pf, "bwd": pb, "total": lambda: pb(pf()[1])},
           "numpy": {"fwd": nf, "bwd": nb, "total": lambda: (nf(), nb())}}
    if torch is not None:
        Fn = torch.nn.functional
        tact = _torch_act(torch, act)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        wt = torch.from_numpy(np.ascontiguousarray(w.T)).requires_grad_(True)
        bt = torch.from_numpy(b.copy()).requires_grad_(True)
        Gt = torch.from_numpy(G.copy())

        def tfwd():
            return tact(Fn.linear(xt, wt, bt))

        yt = tfwd()
        fns["torch"] = {"fwd": tfwd,
                        "bwd": lambda: torch.autograd.grad(yt, [xt, wt, bt], Gt, retain_graph=True),
                        "total": lambda: torch.autograd.grad(tfwd(), [xt, wt, bt], Gt)}

    def check() -> str:
        (dinp,), (dw, db) = pb()
        (ndinp,), (ndw, ndb) = nb()
        d = [C.assert_close(f"{case.name} out vs NumPy", out, nf(), rtol=1e-4),
             C.assert_close(f"{case.name} dinp vs NumPy", dinp, ndinp),
             C.assert_close(f"{case.name} dweight vs NumPy", dw, ndw),
             C.assert_close(f"{case.name} dbias vs NumPy", db, ndb)]
        msg = f"NumPy max|diff| {max(d):.1e}"
        if torch is not None:
            tdx, tdw, tdb = torch.autograd.grad(tfwd(), [xt, wt, bt], Gt)
            d = [C.assert_close(f"{case.name} out vs torch", out, tfwd().detach().numpy(), rtol=1e-4),
                 C.assert_close(f"{case.name} dinp vs torch", dinp, tdx.numpy()),
                 C.assert_close(f"{case.name} dweight vs torch", dw, tdw.numpy().T),
                 C.assert_close(f"{case.name} dbias vs torch", db, tdb.numpy())]
            msg += f", PyTorch max|diff| {max(d):.1e}"
        return msg

    macs = N * IN * OUT
    return Prepared(fns, check, {"fwd": 2.0 * macs, "bwd": 4.0 * macs, "total": 6.0 * macs})


def prepare_softmax_ce(case: Case, rng, torch) -> Prepared:
    N, K = case.shape
    logits = (3.0 * rng.standard_normal((N, K))).astype(np.float32)
    labels = rng.integers(0, K, N).astype(np.int64)
    name = "sparse_softmax_crossentropy"
    loss, hits, dlogits = ops.loss(name, logits, labels)

    def pf():
        return ops.loss(name, logits, labels, need_grad=False)

    def pt():
        return ops.loss(name, logits, labels)

    def nt():
        return oracle.sparse_softmax_crossentropy(logits, labels)

    # the oracle has one function for loss and gradient: it is timed as both passes
    fns = {"pycnn": {"fwd": pf, "total": pt}, "numpy": {"fwd": nt, "total": nt}}
    if torch is not None:
        Fn = torch.nn.functional
        lt = torch.from_numpy(logits.copy()).requires_grad_(True)
        yt = torch.from_numpy(labels)

        def tfwd():
            return Fn.cross_entropy(lt, yt)

        fns["torch"] = {"fwd": tfwd, "total": lambda: torch.autograd.grad(tfwd(), [lt])}

    def check() -> str:
        nloss, nhits, nd = nt()
        assert hits == nhits, (hits, nhits)
        d = [C.assert_close(f"{case.name} loss vs NumPy", loss, nloss, rtol=1e-5),
             C.assert_close(f"{case.name} dlogits vs NumPy", dlogits, nd, rtol=1e-5)]
        msg = f"NumPy max|diff| {max(d):.1e}"
        if torch is not None:
            (tdl,) = torch.autograd.grad(tfwd(), [lt])
            d = [C.assert_close(f"{case.name} loss vs torch", loss, float(tfwd().detach()), rtol=1e-5),
                 C.assert_close(f"{case.name} dlogits vs torch", dlogits, tdl.numpy(), rtol=1e-5)]
            msg += f", PyTorch max|diff| {max(d):.1e}"
        return msg

    return Prepared(fns, check, {"fwd": None, "bwd": None, "total": None})


PREPARE = {"conv": prepare_conv, "maxpool": prepare_maxpool, "dense": prepare_dense,
           "softmax_ce": prepare_softmax_ce}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny time budget per measurement (a few seconds in all)")
    ap.add_argument("--threads", default=None,
                    help="comma-separated thread counts, e.g. 1,2 (default: all usable cores)")
    ap.add_argument("--only", default=None, help="run only the ops whose name contains this text")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of interleaved rounds per op and pass (default 1.0, --quick 0.02)")
    ap.add_argument("--omp-wait-policy", choices=C.WAIT_POLICIES, default="default",
                    help="OpenMP wait policy shared by pycnn and torch in this process (default: libgomp's own; "
                         "an OMP_WAIT_POLICY set in the environment wins over 'default')")
    args = ap.parse_args()
    global ops
    ops = C.init(args.omp_wait_policy).ops
    budget = args.budget if args.budget is not None else (0.02 if args.quick else 1.0)
    min_reps, warmup = (2, 1) if args.quick else (5, 2)
    threads = C.parse_threads(args.threads)
    cases = [c for c in CASES if args.only is None or args.only in c.name]
    if not cases:
        raise SystemExit(f"--only matched no op. Received: --only={args.only!r}.")

    torch = C.import_torch()
    C.print_header("pycnn ops benchmark: pycnn.ops vs the NumPy oracle (float64) vs PyTorch",
                   torch.__version__ if torch is not None else None)
    print(f"Timing: median (min) ms of interleaved rounds, budget {budget} s per op and pass, "
          f"at least {min_reps} rounds after {warmup} warm-up calls. Ratios: peer median / pycnn median "
          "(> 1 means pycnn is faster). GFLOP/s: pycnn, counting 2 FLOPs per multiply-add.")
    print()

    t_start = time.perf_counter()
    load = C.OtherLoad()
    rng = np.random.default_rng(0)
    prepared = {}
    with C.Threads(threads[0], torch):
        for case in cases:
            prep = PREPARE[case.kind](case, rng, torch)
            print(f"checked {case.name} [{case.describe()}]: {prep.check()}")
            prepared[case.name] = prep
    print()

    frameworks = ["pycnn", "numpy"] + (["torch"] if torch is not None else [])
    disturbed = 0
    for n in threads:
        rows = []
        with C.Threads(n, torch):
            for case in cases:
                prep = prepared[case.name]
                for pas in ("fwd", "bwd", "total"):
                    if pas not in prep.fns["pycnn"]:
                        continue  # a fused call (the loss): no separate backward

                    def measure():
                        return C.interleaved({fw: prep.fns[fw][pas] for fw in frameworks}, budget,
                                             min_reps=min_reps, warmup=warmup)

                    # --quick windows are too short for /proc/stat's 10 ms ticks: no retries, no flags
                    t, other = (measure(), 0.0) if args.quick else C.undisturbed(measure)
                    flops = prep.flops[pas]
                    gflops = f"{flops / (t['pycnn'].median_ms * 1e6):.1f}" if flops else "-"
                    if other > C.DISTURBED_CORES:
                        pas += f" (*{other:.1f})"
                        disturbed += 1
                    rows.append([case.name, case.describe(), n, pas, t["pycnn"], t["numpy"],
                                 t.get("torch", "-"), C.ratio(t.get("torch"), t["pycnn"]),
                                 C.ratio(t["numpy"], t["pycnn"]), gflops])
        print(f"### {n} thread{'s' if n > 1 else ''}")
        print()
        print(C.markdown_table(["op", "shape (NHWC)", "threads", "pass", "pycnn ms", "NumPy oracle ms", "PyTorch ms",
                                "torch/pycnn", "numpy/pycnn", "pycnn GFLOP/s"], rows))
        print()
    if disturbed:
        print(f"(*x): {disturbed} measurement(s) during which other processes kept x cores busy on average "
              f"(more than {C.DISTURBED_CORES}) even after retries; treat those rows with care.")
    print(f"Total wall time {time.perf_counter() - t_start:.1f} s; {load.report()}.")


if __name__ == "__main__":
    main()
