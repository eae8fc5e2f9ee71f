"""Every validation branch of the pycnn._core binding raises, with a message that names the function,
the argument and the value received (house style section 5); nothing malformed reaches a kernel.
Also: non-contiguous, float64 and integer inputs are copied to C-contiguous float32, never
read through the wrong strides."""
from __future__ import annotations

import re

import numpy as np
import pytest

import pycnn
import reference as ref
from pycnn import _core


def f32(*shape):
    return np.ones(shape, dtype=np.float32)


def raises(exc, *fragments):
    """pytest.raises matching every fragment literally, in order."""
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


X = f32(2, 5, 5, 3)     # conv / pool input
WT = f32(3, 3, 3, 4)    # conv weight -> out (2, 3, 3, 4)
DOUT = f32(2, 3, 3, 4)


# ----------------------------------------------------------------------------- conv2d


@pytest.mark.parametrize("fn", ["forward", "backward"])
def test_conv2d_shape_errors(fn):
    def call(inp, weight, **kw):
        if fn == "forward":
            return _core.conv2d_forward(inp, weight, **kw)
        return _core.conv2d_backward(kw.pop("dout", DOUT), inp, weight, **kw)

    name = f"conv2d_{fn}()"
    with raises(ValueError, name, "'inp'", "4-D", "Received: inp.shape=(5, 5, 3)"):
        call(f32(5, 5, 3), WT)
    with raises(ValueError, name, "'weight'", "4-D", "Received: weight.shape=(3, 3, 3)"):
        call(X, f32(3, 3, 3))
    with raises(ValueError, name, "weight.shape[2]", "inp.shape[3]=3", "weight.shape=(3, 3, 2, 4)"):
        call(X, f32(3, 3, 2, 4))
    with raises(ValueError, name, "every dimension >= 1", "inp.shape=(0, 5, 5, 3)"):
        call(f32(0, 5, 5, 3), WT)
    with raises(ValueError, name, "every dimension >= 1", "weight.shape=(3, 3, 3, 0)"):
        call(X, f32(3, 3, 3, 0))
    with raises(ValueError, name, "output size would be zero or negative", "input shape=(2, 5, 5, 3)",
                "kernel_size=(6, 6)", "padding='valid'"):
        call(X, f32(6, 6, 3, 4))
    with raises(ValueError, name, "output size", "strides=(1, 1)"):
        call(X, f32(6, 1, 3, 4))


def test_conv2d_forward_bias_errors():
    with raises(ValueError, "conv2d_forward()", "'bias' of shape (4,)", "Received: bias.shape=(3,)"):
        _core.conv2d_forward(X, WT, f32(3))
    with raises(ValueError, "conv2d_forward()", "'bias'", "Received: bias.shape=(1, 4)"):
        _core.conv2d_forward(X, WT, f32(1, 4))


@pytest.mark.parametrize("strides,exc,received", [
    (0, ValueError, "strides=0"),
    ((1, 0), ValueError, "strides=(1, 0)"),
    ((-1, 1), ValueError, "strides=(-1, 1)"),
    ((1, 1, 1), ValueError, "strides=(1, 1, 1)"),
    ((2,), ValueError, "strides=(2,)"),
    (1.5, TypeError, "strides=1.5"),
    ((1.5, 1), TypeError, "strides=(1.5, 1)"),
    ("11", TypeError, "strides='11'"),
    (True, TypeError, "strides=True"),
    (None, TypeError, "strides=None"),
])
def test_strides_errors(strides, exc, received):
    with raises(exc, "conv2d_forward()", "'strides'", received):
        _core.conv2d_forward(X, WT, strides=strides)
    with raises(exc, "conv2d_backward()", "'strides'", received):
        _core.conv2d_backward(DOUT, X, WT, strides=strides)
    if strides is not None:  # for pooling, strides=None means "the pool size"
        with raises(exc, "maxpool2d_forward()", "'strides'", received):
            _core.maxpool2d_forward(X, 2, strides)
        with raises(exc, "avgpool2d_backward()", "'strides'", received):
            _core.avgpool2d_backward(f32(2, 2, 2, 3), X.shape, 2, strides)


@pytest.mark.parametrize("call", [
    lambda p: _core.conv2d_forward(X, WT, padding=p),
    lambda p: _core.conv2d_backward(DOUT, X, WT, padding=p),
    lambda p: _core.maxpool2d_forward(X, 2, padding=p),
    lambda p: _core.maxpool2d_backward(f32(2, 2, 2, 3), np.zeros((2, 2, 2, 3), np.int32), X.shape, 2, padding=p),
    lambda p: _core.avgpool2d_forward(X, 2, padding=p),
    lambda p: _core.avgpool2d_backward(f32(2, 2, 2, 3), X.shape, 2, padding=p),
], ids=["conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
        "avgpool2d_forward", "avgpool2d_backward"])
def test_padding_errors(call):
    with raises(ValueError, "expected padding 'valid' or 'same'", "Received: padding='full'"):
        call("full")
    with raises(ValueError, "Received: padding=''"):
        call("")


def test_padding_is_case_insensitive():
    np.testing.assert_array_equal(_core.conv2d_forward(X, WT, padding="SAME"), _core.conv2d_forward(X, WT, padding="same"))


@pytest.mark.parametrize("call", [
    lambda a: _core.conv2d_forward(X, WT, activation=a),
    lambda a: _core.conv2d_backward(DOUT, X, WT, DOUT, activation=a),
    lambda a: _core.dense_forward(f32(2, 3), f32(3, 4), activation=a),
    lambda a: _core.dense_backward(f32(2, 4), f32(2, 3), f32(3, 4), f32(2, 4), activation=a),
], ids=["conv2d_forward", "conv2d_backward", "dense_forward", "dense_backward"])
def test_activation_errors(call):
    with raises(ValueError, "expected activation 'linear', 'relu', 'sigmoid' or 'tanh'", "Received: activation='softmax'"):
        call("softmax")


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_conv2d_backward_needs_out_for_nonlinear_activation(activation):
    with raises(ValueError, "conv2d_backward()", "'out'", "Received: out=None"):
        _core.conv2d_backward(DOUT, X, WT, activation=activation)
    with raises(ValueError, "conv2d_backward()", "'out'", "(2, 3, 3, 4)", "Received: out.shape=(2, 3, 3, 5)"):
        _core.conv2d_backward(DOUT, X, WT, f32(2, 3, 3, 5), activation=activation)


def test_conv2d_backward_dout_shape():
    with raises(ValueError, "conv2d_backward()", "'dout'", "(2, 3, 3, 4)", "Received: dout.shape=(2, 3, 3, 3)"):
        _core.conv2d_backward(f32(2, 3, 3, 3), X, WT)
    with raises(ValueError, "conv2d_backward()", "'dout'", "(2, 5, 5, 4)", "Received: dout.shape=(2, 3, 3, 4)"):
        _core.conv2d_backward(DOUT, X, WT, padding="same")
    with raises(ValueError, "conv2d_backward()", "'dout'", "Received: dout.shape=(18, 4)"):
        _core.conv2d_backward(f32(18, 4), X, WT)


# ----------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_pool_forward_errors(kind):
    fwd = getattr(_core, f"{kind}_forward")
    name = f"{kind}_forward()"
    with raises(ValueError, name, "'inp'", "4-D", "Received: inp.shape=(5, 5)"):
        fwd(f32(5, 5), 2)
    with raises(ValueError, name, "every dimension >= 1", "inp.shape=(2, 5, 0, 3)"):
        fwd(f32(2, 5, 0, 3), 2)
    with raises(ValueError, name, "'pool_size'", "Received: pool_size=0"):
        fwd(X, 0)
    with raises(ValueError, name, "'pool_size'", "Received: pool_size=(2, 2, 2)"):
        fwd(X, (2, 2, 2))
    with raises(TypeError, name, "'pool_size'", "Received: pool_size=2.0"):
        fwd(X, 2.0)
    with raises(TypeError, name, "'pool_size'", "Received: pool_size=None"):
        fwd(X, None)
    with raises(ValueError, name, "output size would be zero or negative", "input shape=(2, 5, 5, 3)",
                "pool_size=(6, 6)"):
        fwd(X, 6)


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_pool_backward_input_shape_errors(kind):
    name = f"{kind}_backward()"

    def call(input_shape, dout=f32(2, 2, 2, 3)):
        if kind == "maxpool2d":
            return _core.maxpool2d_backward(dout, np.zeros(dout.shape, np.int32), input_shape, 2)
        return _core.avgpool2d_backward(dout, input_shape, 2)

    with raises(ValueError, name, "'input_shape'", "Received: input_shape=(5, 5, 3)"):
        call((5, 5, 3))
    with raises(ValueError, name, "'input_shape'", "Received: input_shape=(2, 0, 5, 3)"):
        call((2, 0, 5, 3))
    with raises(ValueError, name, "'input_shape'", "Received: input_shape=(2, 5, -5, 3)"):
        call((2, 5, -5, 3))
    with raises(TypeError, name, "'input_shape'", "Received: input_shape='abcd'"):
        call("abcd")
    with raises(TypeError, name, "'input_shape'", "Received: input_shape=None"):
        call(None)
    with raises(ValueError, name, "'dout'", "(2, 2, 2, 3)", "Received: dout.shape=(2, 2, 2, 4)"):
        call((2, 5, 5, 3), dout=f32(2, 2, 2, 4))
    with raises(ValueError, name, "output size would be zero or negative"):
        call((2, 1, 5, 3))


def test_maxpool2d_backward_argmax_errors():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    out, argmax = _core.maxpool2d_forward(x, 2)
    name = "maxpool2d_backward()"
    with raises(ValueError, name, "'argmax'", "(2, 2, 2, 3)", "Received: argmax.shape=(2, 2, 2, 2)"):
        _core.maxpool2d_backward(out, argmax[..., :2], x.shape, 2)
    bad = argmax.copy()
    bad[1, 1, 0, 2] = 5 * 5 * 3  # one past the end of the sample
    with raises(ValueError, name, "'argmax'", f"argmax.flat[{np.ravel_multi_index((1, 1, 0, 2), bad.shape)}]=75"):
        _core.maxpool2d_backward(out, bad, x.shape, 2)
    bad = argmax.copy()
    bad[0, 0, 0, 0] = -1
    with raises(ValueError, name, "argmax.flat[0]=-1"):
        _core.maxpool2d_backward(out, bad, x.shape, 2)
    with raises(ValueError, name, "argmax.flat[0]=2147483647"):
        _core.maxpool2d_backward(out, np.full(argmax.shape, 2**31 - 1, np.int32), x.shape, 2)
    with raises(ValueError, name, "'argmax'", "Received: argmax.shape=(24,)"):
        _core.maxpool2d_backward(out, argmax.ravel(), x.shape, 2)
    # int64 argmax holding valid indices is accepted (converted)
    np.testing.assert_array_equal(_core.maxpool2d_backward(out, argmax.astype(np.int64), x.shape, 2),
                                  _core.maxpool2d_backward(out, argmax, x.shape, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.uint32, np.bool_])
def test_maxpool2d_backward_argmax_dtype_error(dtype):
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 1)).astype(np.float32)
    out, argmax = _core.maxpool2d_forward(x, 2)
    with raises(TypeError, "maxpool2d_backward()", "'argmax'", "int32", f"Received: dtype={np.dtype(dtype)}"):
        _core.maxpool2d_backward(out, argmax.astype(dtype), x.shape, 2)


def test_maxpool2d_backward_int64_argmax_is_range_checked_before_narrowing():
    """An int64 index outside the int32 range must be rejected, not wrapped into a valid-looking one."""
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 1)).astype(np.float32)
    out, argmax = _core.maxpool2d_forward(x, 2)
    bad = argmax.astype(np.int64)
    bad[0, 0, 0, 0] += 2**32  # wraps to the original, valid index if narrowed to int32 first
    with raises(ValueError, "maxpool2d_backward()", "'argmax'", f"argmax.flat[0]={int(bad[0, 0, 0, 0])}"):
        _core.maxpool2d_backward(out, bad, x.shape, 2)


# ----------------------------------------------------------------------------- dense


@pytest.mark.parametrize("fn", ["forward", "backward"])
def test_dense_shape_errors(fn):
    def call(inp, weight):
        if fn == "forward":
            return _core.dense_forward(inp, weight)
        return _core.dense_backward(f32(2, 4), inp, weight)

    name = f"dense_{fn}()"
    with raises(ValueError, name, "'inp'", "2-D", "Received: inp.shape=(2, 3, 1)"):
        call(f32(2, 3, 1), f32(3, 4))
    with raises(ValueError, name, "'weight'", "2-D", "Received: weight.shape=(3,)"):
        call(f32(2, 3), f32(3))
    with raises(ValueError, name, "weight.shape[0]", "inp.shape[1]=3", "weight.shape=(5, 4)"):
        call(f32(2, 3), f32(5, 4))
    with raises(ValueError, name, "non-empty", "inp.shape=(2, 0)"):
        call(f32(2, 0), f32(0, 4))


def test_dense_bias_dout_out_errors():
    with raises(ValueError, "dense_forward()", "'bias' of shape (4,)", "Received: bias.shape=(3,)"):
        _core.dense_forward(f32(2, 3), f32(3, 4), f32(3))
    with raises(ValueError, "dense_backward()", "'dout'", "(2, 4)", "Received: dout.shape=(4, 2)"):
        _core.dense_backward(f32(4, 2), f32(2, 3), f32(3, 4))
    with raises(ValueError, "dense_backward()", "'out'", "Received: out=None"):
        _core.dense_backward(f32(2, 4), f32(2, 3), f32(3, 4), activation="sigmoid")
    with raises(ValueError, "dense_backward()", "'out'", "Received: out.shape=(2, 3)"):
        _core.dense_backward(f32(2, 4), f32(2, 3), f32(3, 4), f32(2, 3), activation="relu")


# ----------------------------------------------------------------------------- softmax and cross-entropy


def test_softmax_errors():
    with raises(ValueError, "softmax_forward()", "'inp'", "at least 1 dimension", "Received: inp.shape=()"):
        _core.softmax_forward(np.float32(1.0))
    with raises(ValueError, "softmax_forward()", "non-empty last axis", "Received: inp.shape=(3, 0)"):
        _core.softmax_forward(f32(3, 0))
    with raises(ValueError, "softmax_backward()", "same shape", "dout.shape=(2, 3)", "out.shape=(3, 2)"):
        _core.softmax_backward(f32(2, 3), f32(3, 2))


@pytest.mark.parametrize("fn", ["forward", "backward"])
def test_crossentropy_errors(fn):
    def call(arr, labels):
        if fn == "forward":
            return _core.softmax_crossentropy_forward(arr, labels)
        return _core.softmax_crossentropy_backward(arr, labels)

    name = f"softmax_crossentropy_{fn}()"
    arg = "logits" if fn == "forward" else "probs"
    with raises(ValueError, name, f"'{arg}'", "2-D", f"Received: {arg}.shape=(4,)"):
        call(f32(4), np.zeros(4, np.int64))
    with raises(ValueError, name, "non-empty", f"{arg}.shape=(0, 3)"):
        call(f32(0, 3), np.zeros(0, np.int64))
    with raises(TypeError, name, "integer class indices", "'labels'", "Received: dtype=float64"):
        call(f32(4, 3), np.zeros(4))
    with raises(TypeError, name, "integer class indices", "Received: dtype=bool"):
        call(f32(4, 3), np.zeros(4, bool))
    with raises(ValueError, name, "'labels' of shape (4,)", "Received: labels.shape=(3,)"):
        call(f32(4, 3), np.zeros(3, np.int64))
    with raises(ValueError, name, "'labels' of shape (4,)", "Received: labels.shape=(4, 1)"):
        call(f32(4, 3), np.zeros((4, 1), np.int64))
    with raises(ValueError, name, "class indices in [0, 3)", "Received: labels[2]=3"):
        call(f32(4, 3), np.array([0, 1, 3, 2]))
    with raises(ValueError, name, "class indices in [0, 3)", "Received: labels[1]=-1"):
        call(f32(4, 3), np.array([0, -1, 1, 2], np.int32))


@pytest.mark.parametrize("scale", ["0.5", [1.0], object()], ids=["str", "list", "object"])
def test_crossentropy_backward_scale_must_be_a_number(scale):
    with raises(TypeError, "softmax_crossentropy_backward()", "'scale'", "Received: scale="):
        _core.softmax_crossentropy_backward(f32(2, 3) / 3, np.array([0, 1]), scale)


def test_crossentropy_backward_numeric_scales_are_accepted():
    p = np.full((2, 3), 1 / 3, np.float32)
    want = ref.softmax_crossentropy_backward(p, [0, 2], 2.0)
    for scale in (2, 2.0, np.float64(2.0), np.int32(2)):
        ref.assert_close(_core.softmax_crossentropy_backward(p, np.array([0, 2]), scale), want, rtol=1e-6, atol=1e-7)


def test_non_string_padding_and_activation_are_type_errors():
    with raises(TypeError, "padding=1.5"):
        _core.conv2d_forward(X, WT, padding=1.5)
    with raises(TypeError, "activation=None"):
        _core.dense_forward(f32(2, 3), f32(3, 4), activation=None)


# ----------------------------------------------------------------------------- element-wise


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_backward_shape_error(name):
    with raises(ValueError, f"{name}_backward()", "same shape", "dout.shape=(2, 3)", "out.shape=(2, 4)"):
        getattr(_core, f"{name}_backward")(f32(2, 3), f32(2, 4))


# ----------------------------------------------------------------------------- dtypes and array-likes


BAD_ARRAYS = [
    (np.ones((2, 5, 5, 3), np.complex64), "dtype=complex64"),
    (np.full((2, 5, 5, 3), None, dtype=object), "dtype=object"),
    (np.full((2, 5, 5, 3), "a"), "dtype=<U1"),
]


@pytest.mark.parametrize("bad,received", BAD_ARRAYS, ids=["complex", "object", "str"])
def test_non_numeric_dtypes_are_type_errors(bad, received):
    with raises(TypeError, "conv2d_forward()", "real numeric array", "'inp'", received):
        _core.conv2d_forward(bad, WT)
    with raises(TypeError, "conv2d_forward()", "'weight'", "dtype="):
        _core.conv2d_forward(X, bad[:3, :3])
    with raises(TypeError, "maxpool2d_forward()", "'inp'", received):
        _core.maxpool2d_forward(bad, 2)
    with raises(TypeError, "softmax_forward()", "'inp'", received):
        _core.softmax_forward(bad)
    with raises(TypeError, "dense_forward()", "'inp'", received):
        _core.dense_forward(bad[:, 0, 0, :], f32(3, 2))
    with raises(TypeError, "relu_forward()", "'inp'", received):
        _core.relu_forward(bad)
    with raises(TypeError, "conv2d_backward()", "'dout'", received):
        _core.conv2d_backward(bad[:, :3, :3, :].repeat(2, axis=3)[..., :4], X, WT)


def test_none_and_non_arrays_are_type_errors():
    with raises(TypeError, "conv2d_forward()", "'inp'", "Received: None"):
        _core.conv2d_forward(None, WT)
    with raises(TypeError, "softmax_forward()", "'inp'"):
        _core.softmax_forward(object())
    with raises(TypeError, "conv2d_forward()", "'bias'"):
        _core.conv2d_forward(X, WT, np.array(["a"] * 4))


def test_set_num_threads_errors():
    before = _core.get_num_threads()
    try:
        with raises(ValueError, "set_num_threads()", "positive integer", "Received: n=0"):
            _core.set_num_threads(0)
        with raises(ValueError, "set_num_threads()", "Received: n=-2"):
            _core.set_num_threads(-2)
        with raises(ValueError, "set_num_threads()", "Received: n=0"):
            pycnn.set_num_threads(0)
        with raises(TypeError, "set_num_threads()", "Received: n=2.0"):
            pycnn.set_num_threads(2.0)
        with raises(TypeError, "set_num_threads()", "Received: n=True"):
            pycnn.set_num_threads(True)
        assert _core.get_num_threads() == before
    finally:
        _core.set_num_threads(before)


def test_set_isa_errors():
    with raises(ValueError, "set_isa()", "'baseline', 'avx2' or 'avx512'", "Received: name='sse2'"):
        _core.set_isa("sse2")
    assert _core.get_isa() == pycnn.build_info()["isa_active"]


# ----------------------------------------------------------------------------- conversions never misread strides


def test_noncontiguous_and_converted_inputs_give_identical_results():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((4, 11, 13, 6)).astype(np.float32)
    view = big[::2, 1::2, ::-1, 1:4]           # strided, reversed, sliced channels
    assert not view.flags.c_contiguous
    x = np.ascontiguousarray(view)
    w_f = np.asfortranarray(rng.standard_normal((3, 3, 3, 5)).astype(np.float32))
    w = np.ascontiguousarray(w_f)
    b = rng.standard_normal(10).astype(np.float32)[::2]  # strided 1-D
    want = _core.conv2d_forward(x, w, np.ascontiguousarray(b), strides=2, padding="same")
    np.testing.assert_array_equal(_core.conv2d_forward(view, w_f, b, strides=2, padding="same"), want)
    np.testing.assert_array_equal(_core.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                                       b.astype(np.float64), strides=2, padding="same"), want)
    G = rng.standard_normal(want.shape).astype(np.float32)
    G_view = np.ascontiguousarray(np.transpose(G, (1, 0, 2, 3))).transpose(1, 0, 2, 3)
    assert not G_view.flags.c_contiguous
    for a, c in zip(_core.conv2d_backward(G_view, view, w_f, strides=2, padding="same"),
                    _core.conv2d_backward(G, x, w, strides=2, padding="same")):
        np.testing.assert_array_equal(a, c)

    out_v, arg_v = _core.maxpool2d_forward(view, 2, 1, "same")
    out_c, arg_c = _core.maxpool2d_forward(x, 2, 1, "same")
    np.testing.assert_array_equal(out_v, out_c)
    np.testing.assert_array_equal(arg_v, arg_c)
    np.testing.assert_array_equal(_core.avgpool2d_forward(view, 3, 2), _core.avgpool2d_forward(x, 3, 2))
    np.testing.assert_array_equal(_core.softmax_forward(view), _core.softmax_forward(x))
    np.testing.assert_array_equal(_core.tanh_forward(view), _core.tanh_forward(x))

    flat_view = big[::2, 1, :, :3].reshape(2, -1)[:, ::-1]  # (2, 39), negative stride
    assert not flat_view.flags.c_contiguous
    wd = rng.standard_normal((39, 7)).astype(np.float32)
    wd_f = np.asfortranarray(wd)
    np.testing.assert_array_equal(_core.dense_forward(flat_view, wd_f),
                                  _core.dense_forward(np.ascontiguousarray(flat_view), wd))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_, np.float16, np.float64])
def test_integer_and_other_float_dtypes_are_converted(dtype):
    rng = np.random.default_rng(4)
    x_int = rng.integers(0, 2 if dtype == np.bool_ else 5, (2, 6, 5, 3)).astype(dtype)
    x32 = x_int.astype(np.float32)  # small integers: exactly representable in every dtype above
    w = rng.integers(-2, 3, (2, 2, 3, 4)).astype(dtype if dtype != np.uint8 and dtype != np.bool_ else np.int8)
    np.testing.assert_array_equal(_core.conv2d_forward(x_int, w), _core.conv2d_forward(x32, w.astype(np.float32)))
    np.testing.assert_array_equal(_core.maxpool2d_forward(x_int, 2)[0], _core.maxpool2d_forward(x32, 2)[0])
    np.testing.assert_array_equal(_core.relu_forward(x_int), _core.relu_forward(x32))
    got = _core.softmax_forward(x_int)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _core.softmax_forward(x32))


def test_array_likes_are_accepted():
    np.testing.assert_array_equal(_core.softmax_forward([1.0, 2.0, 3.0]), _core.softmax_forward(np.array([1, 2, 3], np.float32)))
    loss, _ = _core.softmax_crossentropy_forward([[0.0, 1.0]], [1])
    assert loss == pytest.approx(ref.softmax_crossentropy_forward([[0.0, 1.0]], [1])[0], rel=1e-6)
