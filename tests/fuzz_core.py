"""Property-based fuzzing of pycnn._core's forward kernels and adam_update (hypothesis).

Run by tests/test_fuzz.py in a child process, so a crash (a signal) fails that test with
the case that caused it instead of killing pytest: before each case this script writes the
case to the file named by --log, and at the end it prints ``cases N``.

Every case either returns what tests/reference.py computes from the same arrays, or raises
ValueError / TypeError / MemoryError whose message names the function. Arrays come with every
dtype NumPy has for numbers, big-endian byte order, negative strides, non-contiguous views,
read-only flags, NaN / inf values, empty and wrong-rank shapes; window arguments include 0,
negatives, bools, huge ints and kernels larger than the input.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402
from pycnn import _core  # noqa: E402

CASES = [0]
OUTCOMES = {"matched the reference": 0, "refused": 0}
LOG = [None]
ALLOWED = (ValueError, TypeError, MemoryError)
DTYPES = ["<f4", ">f4", "<f8", ">f8", "<f2", "i1", "<i4", ">i8", "u1", "?"]


def log_case(text: str) -> None:
    CASES[0] += 1
    if LOG[0] is not None:
        LOG[0].seek(0)
        LOG[0].write(text[:4000] + "\n")
        LOG[0].truncate()
        LOG[0].flush()


@st.composite
def arrays(draw, ndim=None, max_side=6, shape=None):
    """An array of (mostly) the given rank, in any dtype / layout the binding may meet."""
    if shape is None:
        rank = draw(st.integers(0, 6)) if ndim is None or draw(st.integers(0, 9)) == 0 else ndim
        shape = tuple(draw(st.lists(st.integers(0 if draw(st.integers(0, 14)) == 0 else 1, max_side),
                                    min_size=rank, max_size=rank)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES))) if draw(st.integers(0, 3)) == 0 else np.dtype(np.float32)
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
    special = draw(st.integers(0, 7))
    if special == 0 and values.size:
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = values.astype(dtype)
    layout = draw(st.integers(0, 5))
    if layout == 0 and a.ndim:
        a = np.flip(a, axis=draw(st.integers(0, a.ndim - 1)))           # negative strides
    elif layout == 1 and a.ndim:
        big = np.repeat(a, 2, axis=-1)
        a = big[..., ::2]                                                # non-contiguous view
    elif layout == 2:
        a = a.copy()
        a.flags.writeable = False
    return a


valid_window = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
window = st.one_of(valid_window, valid_window, valid_window, valid_window, st.integers(-2, 8), st.just(0), st.just(True), st.just(2**63 - 1), st.just(2**31),
                   st.tuples(st.integers(-1, 8), st.integers(-1, 8)), st.just((2, 2, 2)), st.just(2.0),
                   st.just(None), st.just("2"))
padding = st.sampled_from(["valid", "same", "valid", "same", "SAME", "full", ""])
activation = st.sampled_from(["linear", "relu", "sigmoid", "tanh", "linear", "relu", "softmax", "RELU"])


def f64(a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(a).astype(np.float64)


def check(name, call, expected):
    """Run ``call``; it must raise an allowed error naming ``name``, or match ``expected()``
    (which itself may raise ValueError when the inputs are invalid)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = call()
    except ALLOWED as exc:
        assert f"{name}()" in str(exc) or "incompatible function arguments" in str(exc), f"{name}: unclear {exc!r}"
        OUTCOMES["refused"] += 1
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = expected()
    got_list = got if isinstance(got, tuple) else (got,)
    want_list = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got_list, want_list):
        if w is None:
            continue
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert g.shape == w.shape, f"{name}: shape {g.shape} != {w.shape}"
        finite = np.isfinite(w)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{name}: NaN pattern")
        big = np.abs(w) > 1e20  # float32 overflow of huge values: only the sign and magnitude class
        ok = finite & ~big
        scale = max(1.0, float(np.max(np.abs(w[ok])))) if ok.any() else 1.0
        np.testing.assert_allclose(g[ok], w[ok], rtol=1e-3, atol=1e-3 * scale, err_msg=name)
    OUTCOMES["matched the reference"] += 1


def _pool_args_ok(inp, pool, strides):
    def pair(v):
        if isinstance(v, bool) or not isinstance(v, (int, tuple)):
            raise ValueError
        return v
    return pair(pool), (pool if strides is None else pair(strides))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(inp=arrays(ndim=4), pool=window, strides=window, pad=padding, kind=st.sampled_from(["max", "avg"]))
def fuzz_pool(inp, pool, strides, pad, kind):
    log_case(f"{kind}pool2d_forward shape={inp.shape} dtype={inp.dtype} strides={inp.strides} pool={pool!r} "
             f"strides={strides!r} padding={pad!r}")
    fn = getattr(_core, f"{kind}pool2d_forward")
    reference = getattr(ref, f"{kind}pool2d_forward")

    def expected():
        out = reference(f64(inp), pool, strides, pad.lower())
        return out[0] if kind == "max" else out
    check(f"{kind}pool2d_forward", lambda: fn(inp, pool, strides, pad)[0] if kind == "max" else fn(inp, pool, strides, pad),
          expected)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(inp=arrays(ndim=4), kh=st.integers(0, 7), kw=st.integers(0, 7), cin_delta=st.sampled_from([0, 0, 0, 1]),
       f=st.integers(0, 4), bias=st.booleans(), strides=window, pad=padding, act=activation, data=st.data())
def fuzz_conv(inp, kh, kw, cin_delta, f, bias, strides, pad, act, data):
    cin = (inp.shape[3] if inp.ndim == 4 else 1) + cin_delta
    weight = data.draw(arrays(shape=(kh, kw, cin, f)))
    b = data.draw(arrays(shape=(f,))) if bias else None
    log_case(f"conv2d_forward inp={inp.shape}/{inp.dtype} weight={weight.shape}/{weight.dtype} bias={bias} "
             f"strides={strides!r} padding={pad!r} activation={act!r}")
    check("conv2d_forward", lambda: _core.conv2d_forward(inp, weight, b, strides, pad, act),
          lambda: ref.conv2d_forward(f64(inp), f64(weight), None if b is None else f64(b), strides, pad.lower(),
                                     act.lower()))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(inp=arrays(ndim=2, max_side=9), out=st.integers(0, 5), in_delta=st.sampled_from([0, 0, 0, -1, 1]),
       bias=st.booleans(), act=activation, data=st.data())
def fuzz_dense(inp, out, in_delta, bias, act, data):
    fin = max(0, (inp.shape[-1] if inp.ndim else 1) + in_delta)
    weight = data.draw(arrays(shape=(fin, out)))
    b = data.draw(arrays(shape=(out,))) if bias else None
    log_case(f"dense_forward inp={inp.shape}/{inp.dtype} weight={weight.shape} bias={bias} activation={act!r}")
    check("dense_forward", lambda: _core.dense_forward(inp, weight, b, act),
          lambda: ref.dense_forward(f64(inp), f64(weight), None if b is None else f64(b), act.lower()))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(inp=arrays(), op=st.sampled_from(["softmax", "relu", "sigmoid", "tanh", "sobel", "dy", "dx"]))
def fuzz_elementwise_and_images(inp, op):
    log_case(f"{op} inp={inp.shape}/{inp.dtype}/{inp.strides}")
    if op == "sobel":
        check("sobel_edges_forward", lambda: _core.sobel_edges_forward(inp), lambda: ref.sobel_edges_forward(f64(inp)))
    elif op in ("dy", "dx"):
        axis = 0 if op == "dy" else 1
        check("image_gradient_forward", lambda: _core.image_gradient_forward(inp, axis),
              lambda: ref.image_gradient_forward(f64(inp), axis))
    elif op == "softmax":
        check("softmax_forward", lambda: _core.softmax_forward(inp), lambda: ref.softmax_forward(f64(inp)))
    else:
        reference = {"relu": ref.relu_forward, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh}[op]
        check(f"{op}_forward", lambda: getattr(_core, f"{op}_forward")(inp), lambda: reference(f64(inp)))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(n=st.integers(0, 4), size=st.integers(0, 50), mutate=st.integers(-1, 3), bad=st.integers(0, 6),
       alpha=st.sampled_from([0.01, -1.0, float("nan"), 1e40]))
def fuzz_adam(n, size, mutate, bad, alpha):
    W = [np.ones(size, np.float32) for _ in range(n)]
    M = [np.zeros(size, np.float32) for _ in range(n)]
    V = [np.zeros(size, np.float32) for _ in range(n)]
    G = [np.full(size, 0.5, np.float32) for _ in range(n)]
    if n and bad == 1:
        W[0] = W[0].astype(">f4")
    elif n and bad == 2:
        M[-1] = M[-1][::-1]
    elif n and bad == 3:
        V[0] = np.zeros(size + 1, np.float32)
    elif n and bad == 4:
        G[0] = "gradient"

    class Mutating:
        def __array__(self, dtype=None, copy=None):
            for lst in (W, M, V):
                lst.clear()
            return np.full(size, 0.5, np.float32)
    if 0 <= mutate < n:
        G[mutate] = Mutating()
    log_case(f"adam_update n={n} size={size} mutate={mutate} bad={bad} alpha={alpha}")
    try:
        _core.adam_update(list(W), G, list(M), list(V), alpha, 0.9, 0.999, 1e-7)
    except ALLOWED as exc:
        assert "adam_update()" in str(exc) or "incompatible" in str(exc), repr(exc)


def _model(kind):
    import pycnn
    from pycnn import layers

    pycnn.utils.set_random_seed(0)
    if kind == "lenet-ish":
        stack = [layers.Conv2D(2, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten()]
    elif kind == "global":
        stack = [layers.Conv2D(2, 3, padding="same"), layers.GlobalAveragePooling2D()]
    else:
        stack = [layers.AveragePooling2D(2, padding="same"), layers.Flatten(), layers.Dropout(0.5)]
    model = pycnn.Sequential([layers.Input((6, 6, 2))] + stack + [layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@settings(max_examples=max(20, int(os.environ.get("FUZZ_EXAMPLES", "300")) // 5), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["lenet-ish", "global", "pool-dropout"]),
       x=st.one_of(st.integers(0, 5).flatmap(lambda n: arrays(shape=(n, 6, 6, 2))),
                   st.integers(1, 5).flatmap(lambda n: arrays(shape=(n, 6, 6, 2))), arrays(ndim=4, max_side=7)),
       y=arrays(ndim=1, max_side=7), labels=st.sampled_from(["random", "valid", "column", "out of range", "nan"]),
       method=st.sampled_from(["fit", "predict", "evaluate", "train_on_batch"]),
       batch_size=st.sampled_from([1, 2, 32, 32, 0, -1, True, 2.5]))
def fuzz_model_api(kind, x, y, labels, method, batch_size):
    """The model API on hostile data: a result of the right shape, or a ValueError / TypeError."""
    import pycnn

    model = _model(kind)
    n = x.shape[0] if x.ndim else 0
    if labels == "valid":
        y = np.arange(n) % 3
    elif labels == "column":
        y = (np.arange(n) % 3).reshape(-1, 1)
    elif labels == "out of range":
        y = np.full(n, 3)
    elif labels == "nan":
        y = np.full(n, np.nan)
    log_case(f"model {kind}.{method} x={x.shape}/{x.dtype} y={np.shape(y)}/{np.asarray(y).dtype} "
             f"labels={labels} batch_size={batch_size!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "fit":
                model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, nonfinite_loss="ignore")
            elif method == "predict":
                out = model.predict(x, batch_size=batch_size, verbose=0)
                assert out.shape == (x.shape[0], 3), out.shape
                assert np.isnan(out).any() or np.allclose(out.sum(axis=1), 1, atol=1e-4)
            elif method == "evaluate":
                model.evaluate(x, y, batch_size=batch_size, verbose=0)
            else:
                model.train_on_batch(x, y)
    except (ValueError, TypeError, pycnn.NonFiniteLossError) as exc:
        assert str(exc), "an error without a message"
        OUTCOMES["refused"] += 1
        return
    OUTCOMES["model calls that ran"] = OUTCOMES.get("model calls that ran", 0) + 1


TARGETS = [fuzz_pool, fuzz_conv, fuzz_dense, fuzz_elementwise_and_images, fuzz_adam, fuzz_model_api]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    if args.log:
        LOG[0] = open(args.log, "w")
    for target in TARGETS:
        target()
    print(f"cases {CASES[0]} " + ", ".join(f"{k}: {v}" for k, v in OUTCOMES.items()), flush=True)


if __name__ == "__main__":
    main()
