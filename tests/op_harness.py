"""Checks every op test runs, through pycnn's one door to the core (pycnn.ops): the float32
op (a one-node network, ops.OpCall) against the float64 oracle (tests/oracle).

- :func:`check_forward`: OpCall.forward against oracle.forward, and ops.run (the network's
  predict) equal to it;
- :func:`check_backward`: OpCall.backward driven by a *random* upstream gradient against
  oracle.backward (an all-ones dout would hide transposition bugs);
- :func:`check_oracle_fd`: central finite differences of the float64 oracle (eps 1e-6,
  normwise relative error below 1e-6) against oracle.backward;
- :func:`check_spot_fd`: ~20 random coordinates of every input and trained parameter,
  finite differences (eps 1e-2) of the float32 op itself against its backward (1e-2);
- :func:`check_threads`: forward and backward with 1 thread and with 2 threads agree.

Tolerances (house style, section 6): forward rtol = atol = 1e-5; backward 1e-4, with the
absolute part scaled by the RMS for parameter gradients, which are long float32 sums over
the batch (see oracle.assert_close).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import oracle
from pycnn import ops

FWD = dict(rtol=1e-5, atol=1e-5)
BWD = dict(rtol=1e-4, atol=1e-4)
BWD_SUM = dict(BWD, scale_atol=True)


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def state_flags(kind: str) -> List[bool]:
    return [p.state for p in ops.registered_ops()[kind].params]


def make_call(kind: str, inputs: Sequence[np.ndarray], params: Sequence[Any] = (),
              attrs: Optional[Dict[str, Any]] = None, trained: Optional[Sequence[bool]] = None,
              input_grads: bool = True) -> ops.OpCall:
    """The op compiled for the per-sample shapes of ``inputs``; by default every present
    parameter but state is trained."""
    params = tuple(params)
    if trained is None:
        trained = [p is not None and not s for p, s in zip(params, state_flags(kind))]
    spec = ops.OpSpec(kind, dict(attrs or {}), params)
    return ops.OpCall(spec, [np.shape(x)[1:] for x in inputs], trained=trained, input_grads=input_grads)


def check_forward(kind, inputs, params=(), attrs=None, tol=FWD, name="out"):
    """-> (float32 output of OpCall.forward, the compiled call, its tape)."""
    call = make_call(kind, inputs, params, attrs)
    out, tape = call.forward(list(inputs))
    want = oracle.forward(kind, inputs, params, attrs)
    assert out.dtype == np.float32, name
    assert out.shape == want.shape, (name, out.shape, want.shape)
    assert out.shape[1:] == call.output_shape, (out.shape, call.output_shape)
    oracle.assert_close(out, want, name=f"{kind} {name}", **tol)
    inference = ops.run(kind, list(inputs), params, attrs)
    np.testing.assert_array_equal(inference, out, err_msg=f"{kind}: ops.run (predict) != OpCall.forward")
    return out, call, tape


def check_backward(kind, inputs, params=(), attrs=None, rng=None, dout=None, input_tol=BWD, param_tol=BWD_SUM,
                   trained=None, input_grads=True):
    """Backward with a random upstream gradient (or ``dout``) against the oracle's; returns
    (dinputs, dparams, dout)."""
    call = make_call(kind, inputs, params, attrs, trained, input_grads)
    out, tape = call.forward(list(inputs))
    if dout is None:
        dout = f32(rng.standard_normal(out.shape))
    dinputs, dparams = call.backward(tape, dout)
    want_in, want_par = oracle.backward(kind, dout, inputs, params, attrs)
    assert len(dinputs) == len(inputs) and len(dparams) == len(params)
    for j, (g, w) in enumerate(zip(dinputs, want_in)):
        if not input_grads:
            assert g is None, f"{kind}: dinputs[{j}] without input_grads"
            continue
        assert g.dtype == np.float32 and g.shape == np.shape(inputs[j]), (kind, j)
        oracle.assert_close(g, w, name=f"{kind} dinputs[{j}]", **input_tol)
    names = [p.name for p in ops.registered_ops()[kind].params]
    for k, (g, w, t) in enumerate(zip(dparams, want_par, call.trained)):
        if not t:
            assert g is None, f"{kind}: a gradient for untrained parameter '{names[k]}'"
            continue
        assert g.dtype == np.float32 and g.shape == np.shape(params[k]), (kind, names[k])
        oracle.assert_close(g, w, name=f"{kind} d{names[k]}", **param_tol)
    return dinputs, dparams, dout


def check_oracle_fd(kind, inputs, params=(), attrs=None, rng=None, eps=1e-6, tol=1e-6):
    """Finite differences of sum(oracle.forward * G) (float64 copies) against oracle.backward."""
    xs = [np.array(x, dtype=np.float64) for x in inputs]
    ps = [None if p is None else np.array(p, dtype=np.float64) for p in params]
    G = rng.standard_normal(np.shape(oracle.forward(kind, xs, ps, attrs)))
    dx, dp = oracle.backward(kind, G, xs, ps, attrs)

    def loss():
        return float(np.sum(oracle.forward(kind, xs, ps, attrs) * G))

    arrays, grads, names = list(xs), list(dx), [f"dinputs[{j}]" for j in range(len(xs))]
    for k, (p, g) in enumerate(zip(ps, dp)):
        if p is not None and g is not None:
            arrays.append(p)
            grads.append(g)
            names.append(f"dparams[{k}]")
    oracle.fd_check(loss, arrays, grads, [f"{kind} {n}" for n in names], eps=eps, tol=tol)


def check_spot_fd(kind, inputs, params=(), attrs=None, rng=None, count=20, eps=1e-2, tol=1e-2, skip_kinks=False):
    """~``count`` coordinates of every input and trained parameter: finite differences of the
    float32 op (the loss summed in float64, so the difference quotient sees only the op's
    rounding) against its own backward. Parameters are perturbed in place: the compiled
    call reads the caller's float32 arrays.

    ``skip_kinks`` (relu, leaky_relu): a coordinate whose +-eps step changes which outputs
    are positive straddles a kink and is skipped; at least half of all coordinates must
    remain (a bias, which moves a whole channel, may lose all of its own)."""
    xs = [f32(x) for x in inputs]
    call = make_call(kind, xs, params, attrs)
    out, tape = call.forward(xs)
    G = rng.standard_normal(out.shape)
    dinputs, dparams = call.backward(tape, f32(G))

    pattern = out > 0

    def loss():
        return float(np.sum(call.forward(xs)[0].astype(np.float64) * G))

    def smooth(arr, i):
        old = arr[i].copy()
        same = True
        for step in (eps, -eps):
            arr[i] = old + step
            same = same and np.array_equal(call.forward(xs)[0] > 0, pattern)
        arr[i] = old
        return same

    targets = [(x, g, f"dinputs[{j}]") for j, (x, g) in enumerate(zip(xs, dinputs))]
    targets += [(p, g, f"dparams[{k}]") for k, (p, g) in enumerate(zip(call.spec.params, dparams)) if g is not None]
    drawn = checked = 0
    for arr, grad, name in targets:
        idx = oracle.random_indices(rng, arr.shape, count)
        drawn += len(idx)
        if skip_kinks:
            idx = [i for i in idx if smooth(arr, i)]
        checked += len(idx)
        if not idx:
            continue
        num = oracle.numerical_gradient(loss, arr, eps=eps, indices=idx)
        ana = np.array([grad[i] for i in idx], dtype=np.float64)
        err = oracle.rel_error(num, ana)
        assert err < tol, f"{kind} {name}: float32 finite-difference relative error {err:.3g}"
    assert checked >= drawn // 2, f"{kind}: {drawn - checked} of {drawn} coordinates straddle a kink"


def preactivation_margin(kind, inputs, params=(), attrs=None) -> float:
    """min |z| of the op's pre-activation (its output with activation 'linear'), float64:
    finite differences of a relu / leaky_relu op need it away from 0."""
    a = dict(attrs or {})
    a["activation"] = "linear"
    return float(np.min(np.abs(oracle.forward(kind, inputs, params, a))))


def away_from_kinks(rng, draw, kind, attrs=None, min_abs=1e-3, tries=200):
    """Redraw ``draw(rng) -> (inputs, params)`` until every pre-activation is at least
    ``min_abs`` away from 0 (only relu and leaky_relu have a kink)."""
    for _ in range(tries):
        inputs, params = draw(rng)
        if dict(attrs or {}).get("activation") not in ("relu", "leaky_relu"):
            return inputs, params
        if preactivation_margin(kind, inputs, params, attrs) >= min_abs:
            return inputs, params
    raise AssertionError("could not draw inputs away from the kink")


def assert_same(a, b, name, rel=1e-6):
    """1 vs 2 threads: equal within ``rel`` of the array's scale (parallel batch reductions may
    add partial sums in another order)."""
    if a is None or b is None:
        assert a is None and b is None, name
        return
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, name
    scale = max(1.0, float(np.max(np.abs(a), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0))
    assert err <= rel * scale, f"{name}: 1 vs 2 threads differ by {err:.3g} (scale {scale:.3g})"


def check_threads(kind, inputs, params=(), attrs=None, rng=None, rel=1e-6):
    """Forward and backward (random dout) with 1 and with 2 threads."""
    call = make_call(kind, inputs, params, attrs)
    before = ops.get_num_threads()
    results = []
    dout = None
    try:
        for n in (1, 2):
            ops.set_num_threads(n)
            out, tape = call.forward(list(inputs))
            if dout is None:
                dout = f32(rng.standard_normal(out.shape))
            dinputs, dparams = call.backward(tape, dout)
            results.append([out] + list(dinputs) + list(dparams))
    finally:
        ops.set_num_threads(before)
    for j, (a, b) in enumerate(zip(*results)):
        assert_same(a, b, f"{kind} result {j}", rel)


def check_op(kind, inputs, params=(), attrs=None, rng=None):
    """Forward and backward against the oracle (the two checks every case gets)."""
    check_forward(kind, inputs, params, attrs)
    check_backward(kind, inputs, params, attrs, rng)
