"""Property-based fuzzing of pycnn's generic entry points (hypothesis): ops.run of the window
ops, conv2d, dense and the element-wise / image ops, ops.loss, ops.apply_update, and the
model API.

Run by tests/test_fuzz.py in a child process, so a crash (a signal) fails that test with
the case that caused it instead of killing pytest: before each case this script writes the
case to the file named by --log, and at the end it prints ``cases N``.

Every case either returns what the float64 oracle (tests/oracle) computes from the same
arrays, or raises ValueError / TypeError / MemoryError whose message names the entry point.
Arrays come with every dtype NumPy has for numbers, big-endian byte order, negative strides,
non-contiguous views, read-only flags, NaN / inf values, empty and wrong-rank shapes;
attributes include 0, negatives, bools, huge ints, floats, None, strings and windows larger
than the input. Hypothesis runs derandomized: the same cases every run.
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
import oracle  # noqa: E402
from pycnn import ops  # noqa: E402

CASES = [0]
OUTCOMES = {"matched the oracle": 0, "refused": 0}
LOG = [None]
ALLOWED = (ValueError, TypeError, MemoryError)
#: How an error names the entry point it came from.
ENTRY_POINTS = ("Network()", "predict()", "forward()", "backward()", "ops.run(", "pycnn.ops expected", "loss()",
                "apply_update()")
DTYPES = ["<f4", ">f4", "<f8", ">f8", "<f2", "i1", "<i4", ">i8", "u1", "?"]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


def fuzz_settings(examples=EXAMPLES):
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def log_case(text: str) -> None:
    CASES[0] += 1
    if LOG[0] is not None:
        LOG[0].seek(0)
        LOG[0].write(text[:4000] + "\n")
        LOG[0].truncate()
        LOG[0].flush()


@st.composite
def arrays(draw, ndim=None, max_side=6, shape=None):
    """An array of (mostly) the given rank, in any dtype / layout the entry points may meet."""
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


def mostly(valid, hostile, odds=6):
    """``valid`` in ``odds`` of ``odds + 1`` draws, else ``hostile``: most cases reach the kernels."""
    return st.integers(0, odds).flatmap(lambda k: hostile if k == 0 else valid)


pair = mostly(st.tuples(st.integers(1, 4), st.integers(1, 4)),
              st.one_of(st.integers(-2, 8), st.just(0), st.just(True), st.just((2**63 - 1, 2)), st.just((2**31, 1)),
                        st.tuples(st.integers(-1, 8), st.integers(-1, 8)), st.just((2, 2, 2)), st.just((2,)),
                        st.just(2.0), st.just((2.0, 2)), st.just(None), st.just("2"), st.just([1, 1])))
padding = mostly(st.sampled_from(["valid", "same"]), st.sampled_from(["SAME", "full", "", None, 1]))
activation = mostly(st.sampled_from(list(oracle.ACTIVATIONS)), st.sampled_from(["selu", "RELU", None, 1]))
side = mostly(st.integers(1, 4), st.integers(0, 7))


def f64(a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(a).astype(np.float64)


def check(call, expected, what):
    """Run ``call``; it must raise an allowed error naming an entry point, or match
    ``expected()`` (computed by the oracle only once the call succeeded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = call()
    except ALLOWED as exc:
        assert any(e in str(exc) for e in ENTRY_POINTS), f"an error that names no entry point: {exc!r}"
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
        assert g.shape == w.shape, f"shape {g.shape} != {w.shape}"
        finite = np.isfinite(w)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg="NaN pattern")
        big = np.abs(w) > 1e20  # float32 overflow of huge values: only the sign and magnitude class
        ok = finite & ~big
        scale = max(1.0, float(np.max(np.abs(w[ok])))) if ok.any() else 1.0
        np.testing.assert_allclose(g[ok], w[ok], rtol=1e-3, atol=1e-3 * scale)
    OUTCOMES["matched the oracle"] += 1
    key = f"{what} matched"
    OUTCOMES[key] = OUTCOMES.get(key, 0) + 1


def _attrs(**kw):
    return {k: v for k, v in kw.items() if v is not None or k.startswith("_")}


@fuzz_settings()
@given(inp=arrays(ndim=4), pool=pair, strides=pair, pad=padding, kind=st.sampled_from(["maxpool2d", "avgpool2d"]),
       omit=st.sampled_from(["none", "strides", "pool_size", "padding"]))
def fuzz_pool(inp, pool, strides, pad, kind, omit):
    attrs = {"pool_size": pool, "strides": strides, "padding": pad}
    attrs.pop(omit, None)
    log_case(f"ops.run('{kind}') shape={inp.shape} dtype={inp.dtype} strides={inp.strides} attrs={attrs!r}")
    check(lambda: ops.run(kind, [inp], [], attrs), lambda: oracle.forward(kind, [f64(inp)], [], attrs), kind)


@fuzz_settings()
@given(inp=arrays(ndim=4), kh=side, kw=side, cin_delta=mostly(st.just(0), st.just(1)), f=side,
       groups=mostly(st.sampled_from([1, 1, 2]), st.sampled_from([0, 3, -1])), bias=st.booleans(),
       strides=pair, dilation=mostly(st.just((1, 1)), pair, 2), pad=padding, act=activation, data=st.data())
def fuzz_conv(inp, kh, kw, cin_delta, f, groups, bias, strides, dilation, pad, act, data):
    cin = (inp.shape[3] if inp.ndim == 4 else 1) // max(groups, 1) + cin_delta
    weight = data.draw(arrays(shape=(kh, kw, cin, f)))
    b = data.draw(arrays(shape=(f,))) if bias else None
    attrs = {"strides": strides, "dilation_rate": dilation, "padding": pad, "activation": act, "groups": groups}
    log_case(f"ops.run('conv2d') inp={inp.shape}/{inp.dtype} weight={weight.shape}/{weight.dtype} bias={bias} "
             f"attrs={attrs!r}")
    check(lambda: ops.run("conv2d", [inp], [weight, b], attrs),
          lambda: oracle.forward("conv2d", [f64(inp)], [f64(weight), None if b is None else f64(b)], attrs), "conv2d")


@fuzz_settings()
@given(inp=arrays(max_side=9), out=side, in_delta=mostly(st.just(0), st.sampled_from([-1, 1])),
       bias=st.booleans(), act=activation, data=st.data())
def fuzz_dense(inp, out, in_delta, bias, act, data):
    fin = max(0, (inp.shape[-1] if inp.ndim else 1) + in_delta)
    weight = data.draw(arrays(shape=(fin, out)))
    b = data.draw(arrays(shape=(out,))) if bias else None
    log_case(f"ops.run('dense') inp={inp.shape}/{inp.dtype} weight={weight.shape} bias={bias} activation={act!r}")
    check(lambda: ops.run("dense", [inp], [weight, b], {"activation": act}),
          lambda: oracle.forward("dense", [f64(inp)], [f64(weight), None if b is None else f64(b)],
                                 {"activation": act}), "dense")


@fuzz_settings()
@given(inp=arrays(), act=activation, op=st.sampled_from(["activation", "leaky_relu", "sobel_edges", "dy", "dx",
                                                         "flatten", "global_maxpool2d", "global_avgpool2d"]),
       slope=st.sampled_from([0.0, 0.3, 2.0, -1.0, float("nan")]))
def fuzz_elementwise_and_images(inp, act, op, slope):
    kind, attrs = {"activation": ("activation", {"activation": act}),
                   "leaky_relu": ("leaky_relu", {"negative_slope": slope}),
                   "dy": ("image_gradient", {"axis": 0}), "dx": ("image_gradient", {"axis": 1})}.get(op, (op, {}))
    log_case(f"ops.run('{kind}') inp={inp.shape}/{inp.dtype}/{inp.strides} attrs={attrs!r}")
    check(lambda: ops.run(kind, [inp], [], attrs), lambda: oracle.forward(kind, [f64(inp)], [], attrs), kind)


@fuzz_settings()
@given(logits=arrays(ndim=2, max_side=7), labels=arrays(ndim=1, max_side=7),
       kind=st.sampled_from(["random", "valid", "valid", "int8", "uint64", "out of range", "column"]),
       weights=st.sampled_from(["none", "none", "ones", "random", "negative", "nan", "short"]))
def fuzz_loss(logits, labels, kind, weights):
    n = logits.shape[0] if logits.ndim else 0
    k = logits.shape[1] if logits.ndim == 2 else 1
    if kind in ("valid", "int8", "uint64"):
        labels = (np.arange(n) % max(k, 1)).astype({"valid": np.int64, "int8": np.int8, "uint64": np.uint64}[kind])
    elif kind == "out of range":
        labels = np.full(n, k)
    elif kind == "column":
        labels = (np.arange(n) % max(k, 1)).reshape(-1, 1)
    w = {"none": None, "ones": np.ones(n), "random": np.random.default_rng(n).random(n), "negative": -np.ones(n),
         "nan": np.full(n, np.nan), "short": np.ones(max(n - 1, 0))}[weights]
    log_case(f"ops.loss logits={logits.shape}/{logits.dtype} labels={np.shape(labels)}/{np.asarray(labels).dtype} "
             f"kind={kind} weights={weights}")

    def expected():
        loss, hits, d = oracle.sparse_softmax_crossentropy(f64(logits), np.asarray(labels).astype(np.int64), w)
        return np.float64(loss), d

    def call():
        loss, hits, d = ops.loss("sparse_softmax_crossentropy", logits, labels, w)
        return np.float64(loss), d
    check(call, expected, "loss")


@fuzz_settings()
@given(n=st.integers(0, 4), size=st.integers(0, 50), mutate=st.integers(-1, 3), bad=st.integers(0, 7),
       name=st.sampled_from(["adam", "sgd"]), alpha=st.sampled_from([0.01, -1.0, float("nan"), 1e40]))
def fuzz_update(n, size, mutate, bad, name, alpha):
    slots_per = 2 if name == "adam" else 1
    W = [np.ones(size, np.float32) for _ in range(n)]
    S = [[np.zeros(size, np.float32) for _ in range(slots_per)] for _ in range(n)]
    G = [np.full(size, 0.5, np.float32) for _ in range(n)]
    if n and bad == 1:
        W[0] = W[0].astype(">f4")
    elif n and bad == 2:
        S[-1][0] = S[-1][0][::-1]
    elif n and bad == 3:
        S[0][-1] = np.zeros(size + 1, np.float32)
    elif n and bad == 4:
        G[0] = "gradient"
    elif n and bad == 5:
        S[0] = S[0][:1] if slots_per == 2 else []

    class Mutating:
        def __array__(self, dtype=None, copy=None):
            for lst in (W, S):
                lst.clear()
            return np.full(size, 0.5, np.float32)
    if 0 <= mutate < n:
        G[mutate] = Mutating()
    hyper = [alpha, 0.9, 0.999, 1e-7] if name == "adam" else [alpha, 0.9, 0]
    log_case(f"apply_update({name!r}) n={n} size={size} mutate={mutate} bad={bad} alpha={alpha}")
    try:
        ops.apply_update(name, hyper, W, G, S)
    except ALLOWED as exc:
        assert "apply_update()" in str(exc) or "pycnn.ops expected" in str(exc), repr(exc)


def _model(kind):
    import pycnn
    from pycnn import layers

    pycnn.utils.set_random_seed(0)
    if kind == "lenet-ish":
        stack = [layers.Conv2D(2, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten()]
    elif kind == "global":
        stack = [layers.Conv2D(2, 3, padding="same"), layers.BatchNormalization(), layers.GlobalAveragePooling2D()]
    else:
        stack = [layers.AveragePooling2D(2, padding="same"), layers.Flatten(), layers.Dropout(0.5)]
    model = pycnn.Sequential([layers.Input((6, 6, 2))] + stack + [layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@fuzz_settings(max(20, EXAMPLES // 5))
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


TARGETS = [fuzz_pool, fuzz_conv, fuzz_dense, fuzz_elementwise_and_images, fuzz_loss, fuzz_update, fuzz_model_api]


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
