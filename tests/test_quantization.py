"""int8 inference: the quantized ops against their exact NumPy reference (tests/oracle/
quantized.py), bit for bit, on every kernel path (AVX-512 VNNI, AVX2, baseline: the ``isa``
fixture); the element types of the op contract (a float op never reads bytes, outputs stay
float32, nothing trains through an int8 op); and pycnn.quantization: quantize() on models,
calibration, the float fallback, summary, save / load, bad input.

The ops are run inside small networks: uint8 test data enters as exact float32 integers
through ``quantize(scale=1)`` and leaves through ``dequantize(scale=1)``, both exact.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import oracle
import pycnn
from pycnn import layers, ops


def raises(exc, *fragments):
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


def node(kind, inputs, params=(), attrs=None, name=None):
    return ops.node(ops.OpSpec(kind, dict(attrs or {}), tuple(params)), name, inputs)


def run_int8(kind, xq, params=(), attrs=None):
    """Op ``kind`` on the uint8 batch ``xq`` in a network: its uint8 or float32 output."""
    attrs = dict(attrs or {})
    nodes = [node("quantize", [0], attrs={"scale": 1.0}), node(kind, [1], params, attrs)]
    uint8_out = attrs.get("out_dtype", "uint8") == "uint8" and kind not in ("dequantize",)
    if uint8_out:
        nodes.append(node("dequantize", [2], attrs={"scale": 1.0}))
    net = ops.Network([xq.shape[1:]], nodes, [len(nodes)])
    types = net.value_types
    assert types[0] == "float32" and types[1] == "uint8"
    assert types[2] == ("uint8" if uint8_out else "float32")
    out = net.predict(xq.astype(np.float32))[0]
    if uint8_out:
        assert np.array_equal(out, np.rint(out)) and out.min() >= 0 and out.max() <= 255
        return out.astype(np.uint8)
    return out


def assert_bits(got, want, what):
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape, want.shape)
    if got.dtype == np.float32:
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32), err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def qinput(rng, shape, zero_point):
    """uint8 data spread over the whole range, zero point included."""
    x = rng.integers(0, 256, shape).astype(np.uint8)
    x.flat[:: 7] = zero_point
    return x


# ----------------------------------------------------------------------------- quantize / dequantize


@pytest.mark.parametrize("scale,zero_point", [(1.0, 0), (0.0123, 17), (1 / 255, 0), (3.7, 255), (1e-3, 128)])
def test_quantize_and_dequantize_match_the_reference_bit_for_bit(isa, rng, scale, zero_point):
    x = (rng.standard_normal((3, 5, 7, 3)) * 100 * scale).astype(np.float32)
    x.flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30]
    halves = (np.arange(-3, 4) + 0.5) * scale  # exactly half-way after the division for scale 1
    x.flat[6:6 + halves.size] = halves
    out = ops.Network([x.shape[1:]], [node("quantize", [0], attrs={"scale": scale, "zero_point": zero_point}),
                                      node("dequantize", [1], attrs={"scale": scale, "zero_point": zero_point})],
                      [2]).predict(x)[0]
    q = oracle.quantize(x, scale, zero_point)
    assert q.flat[0] == 0 and q.flat[1] == 255 and q.flat[2] == 0  # NaN, inf, -inf
    assert_bits(out, oracle.dequantize(q, scale, zero_point), "dequantize(quantize(x))")
    qq = run_int8("dequantize", q, attrs={"scale": 1.0})  # dequantize alone: the exact integers back
    assert_bits(qq, q.astype(np.float32), "dequantize, scale 1")


def test_quantize_rounds_half_to_even():
    x = np.array([[0.5, 1.5, 2.5, 3.5, 254.5, 255.5, -0.5, 1e-8]], np.float32)
    q = ops.Network([(8,)], [node("quantize", [0], attrs={"scale": 1.0}), node("dequantize", [1], attrs={"scale": 1.0})],
                    [2]).predict(x)[0]
    np.testing.assert_array_equal(q[0], [0, 2, 2, 4, 254, 255, 0, 0])


# ----------------------------------------------------------------------------- conv2d_int8 / dense_int8

CONV_CASES = [
    # (N, H, W, C), (KH, KW, F), strides, padding
    ((2, 7, 6, 3), (3, 3, 5), (1, 1), "valid"),
    ((1, 8, 5, 1), (2, 3, 1), (1, 1), "same"),       # even kernel, 'same': the odd pixel bottom/right
    ((3, 9, 9, 4), (3, 3, 16), (2, 2), "same"),
    ((2, 6, 7, 6), (5, 5, 17), (1, 2), "same"),       # stride != kernel, F one over a vector
    ((1, 5, 5, 2), (5, 5, 64), (1, 1), "valid"),      # output 1x1, one full panel
    ((2, 6, 6, 8), (1, 1, 130), (1, 1), "valid"),     # 1x1, three panels, the last narrow
    ((5, 32, 32, 3), (5, 5, 6), (1, 1), "same"),      # LeNet's first layer
    ((4, 16, 16, 6), (5, 5, 16), (1, 1), "valid"),    # LeNet's second
    ((1, 11, 13, 33), (3, 2, 72), (3, 1), "valid"),   # C not a multiple of 4: K padded
    ((2, 31, 48, 3), (4, 3, 16), (3, 2), "same"),     # read in place (24 columns), strides, even kernel
]


def _conv_case(rng, case, activation, out_dtype, zero_point):
    (N, H, W, C), (KH, KW, F), strides, padding = case
    xq = qinput(rng, (N, H, W, C), zero_point)
    kernel = rng.standard_normal((KH, KW, C, F)).astype(np.float32) * 0.3
    if F > 2:
        kernel[..., 0] = 0.0  # an all-zero channel (its scale is 1)
        kernel[0, 0, 0, 2] = 5.0  # one large weight: the others quantize coarsely
    bias = (rng.standard_normal(F) * 2).astype(np.float32)
    out_scale = None if out_dtype == "float32" else 0.05
    attrs = dict(strides=strides, padding=padding, activation=activation,
                 **oracle.int8_attrs(0.021, zero_point, out_scale, 9 if activation == "linear" else 0))
    return xq, kernel, bias, attrs


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CONV_CASES])
@pytest.mark.parametrize("activation,out_dtype", [("relu", "uint8"), ("linear", "uint8"), ("linear", "float32"),
                                                  ("relu", "float32")])
def test_conv2d_int8_matches_the_reference_bit_for_bit(isa, rng, case, activation, out_dtype):
    xq, kernel, bias, attrs = _conv_case(rng, case, activation, out_dtype, zero_point=13)
    got = run_int8("conv2d_int8", xq, (kernel, bias), attrs)
    want = oracle.forward("conv2d_int8", [xq], [kernel, bias], attrs)
    assert_bits(got, want, f"conv2d_int8 {case} {activation} {out_dtype} on {isa}")
    if out_dtype == "uint8":
        assert len(np.unique(got)) > 3  # the scales spread the outputs, not all clamped


@pytest.mark.parametrize("filters", range(1, 10))
@pytest.mark.parametrize("shape,kernel_size", [((2, 7, 32, 3), (3, 3)), ((1, 5, 31, 4), (2, 5)), ((1, 4, 30, 1), (3, 1))])
def test_conv2d_int8_first_layer_shapes(isa, rng, filters, shape, kernel_size):
    """Few filters over windows a few bytes apart (C <= 4, stride 1): on AVX-512 the kernel
    that puts 16 output pixels in a vector (1 to 8 filters), with 2 filters or 15 pixels
    left in the last vector of a row."""
    xq = qinput(rng, shape, 7)
    kernel = (rng.standard_normal(kernel_size + (shape[3], filters)) * 0.4).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    for activation in ("relu", "linear"):
        attrs = dict(padding="same", activation=activation, **oracle.int8_attrs(0.03, 7, 0.04, 3))
        assert_bits(run_int8("conv2d_int8", xq, (kernel, bias), attrs),
                    oracle.forward("conv2d_int8", [xq], [kernel, bias], attrs), f"{filters} filters {shape}")


@pytest.mark.parametrize("width,filters", [(4, 64), (5, 64), (12, 64), (6, 48), (7, 48), (16, 48), (8, 32),
                                           (10, 32), (24, 32), (8, 16), (10, 16), (12, 16), (9, 130)])
def test_conv2d_int8_every_tile_height(isa, rng, width, filters):
    """Output rows of `width` pixels: on AVX-512 the tile height that wastes fewest rows per
    output row, for panels of 64, 48, 32 and 16 channels."""
    xq = qinput(rng, (2, 4, width + 2, 5), 11)
    kernel = (rng.standard_normal((3, 3, 5, filters)) * 0.3).astype(np.float32)
    attrs = dict(activation="relu", **oracle.int8_attrs(0.02, 11, 0.05, 0))
    assert_bits(run_int8("conv2d_int8", xq, (kernel, None), attrs),
                oracle.forward("conv2d_int8", [xq], [kernel, None], attrs), f"{width} x {filters}")


def test_conv2d_int8_without_bias_and_zero_point_zero(isa, rng):
    xq, kernel, _, attrs = _conv_case(rng, CONV_CASES[2], "relu", "uint8", zero_point=0)
    assert_bits(run_int8("conv2d_int8", xq, (kernel, None), attrs),
                oracle.forward("conv2d_int8", [xq], [kernel, None], attrs), "no bias")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softmax", "gelu"])
def test_conv2d_int8_float_output_applies_any_activation(rng, activation):
    xq, kernel, bias, attrs = _conv_case(rng, CONV_CASES[0], activation, "float32", zero_point=3)
    got = run_int8("conv2d_int8", xq, (kernel, bias), attrs)
    linear = oracle.forward("conv2d_int8", [xq], [kernel, bias], dict(attrs, activation="linear"))
    np.testing.assert_allclose(got, oracle.activate(linear.astype(np.float64), activation), rtol=1e-5, atol=1e-6)


DENSE_CASES = [((7, 12), 5), ((3, 10), 70), ((25, 576), 120), ((2, 4, 9), 3), ((13, 4096), 10), ((1, 1), 1)]


@pytest.mark.parametrize("shape,units", DENSE_CASES, ids=[f"{s}-{u}" for s, u in DENSE_CASES])
@pytest.mark.parametrize("activation,out_dtype", [("relu", "uint8"), ("linear", "uint8"), ("linear", "float32")])
def test_dense_int8_matches_the_reference_bit_for_bit(isa, rng, shape, units, activation, out_dtype):
    xq = qinput(rng, shape, 200)
    kernel = (rng.standard_normal((shape[-1], units)) / np.sqrt(shape[-1])).astype(np.float32)
    bias = rng.standard_normal(units).astype(np.float32)
    attrs = dict(activation=activation, **oracle.int8_attrs(0.01, 200, None if out_dtype == "float32" else 0.02, 100))
    got = run_int8("dense_int8", xq, (kernel, bias), attrs)
    assert_bits(got, oracle.forward("dense_int8", [xq], [kernel, bias], attrs), f"dense_int8 {shape} {units} on {isa}")


def test_int8_kernel_paths_follow_the_isa_cap(isa):
    want = {"native": pycnn.build_info()["int8_kernels"], "avx2": "avx2", "baseline": "baseline"}[isa]
    assert ops.build_info()["int8_kernels"] == want
    if isa == "native" and "avx512_vnni" in open("/proc/cpuinfo").read():
        assert want == "avx512_vnni"


def test_the_largest_sums_do_not_overflow(isa):
    """All inputs 255, all weights at +-127 (after quantization), the longest reduction the
    op accepts in a size a test affords: the int32 sums are exact."""
    K = 4099
    xq = np.full((3, K), 255, np.uint8)
    kernel = np.ones((K, 3), np.float32)
    kernel[:, 1] = -1.0
    attrs = oracle.int8_attrs(127.0, 0, None, 0)  # mul = 127 * (1 / 127): 1 in float32
    got = run_int8("dense_int8", xq, (kernel, None), attrs)
    assert_bits(got, oracle.forward("dense_int8", [xq], [kernel, None], attrs), "the largest sums")
    np.testing.assert_array_equal(got[0], np.float32([255 * 127 * K, -255 * 127 * K, 255 * 127 * K]))


def test_threads_do_not_change_int8_results(rng):
    """One large image: the executor leaves the threads to the kernels (blocks of rows in
    parallel); a batch: each thread a share. Both equal one thread's result."""
    xq, kernel, bias, attrs = _conv_case(rng, ((1, 96, 80, 8), (3, 3, 32), (1, 1), "same"), "relu", "uint8", 5)
    batch = qinput(rng, (64, 12, 12, 8), 5)
    old = pycnn.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            pycnn.set_num_threads(threads)
            outs.append((run_int8("conv2d_int8", xq, (kernel, bias), attrs),
                         run_int8("conv2d_int8", batch, (kernel, bias), attrs)))
    finally:
        pycnn.set_num_threads(old)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- pooling on uint8

POOL_CASES = [((2, 6, 6, 3), (2, 2), (2, 2), "valid"), ((1, 7, 5, 16), (3, 3), (2, 2), "same"),
              ((3, 32, 32, 6), (2, 2), (2, 2), "valid"), ((2, 5, 8, 1), (2, 3), (1, 2), "same"),
              ((1, 5, 601, 8), (2, 2), (2, 2), "valid"),    # a row longer than the kernel's line buffer
              ((1, 4, 4, 2100), (2, 2), (2, 2), "valid"),   # one window wider than it
              ((2, 7, 9, 5), (3, 2), (3, 2), "valid")]      # side-by-side windows, rows and columns left over


@pytest.mark.parametrize("case", POOL_CASES, ids=[str(c) for c in POOL_CASES])
@pytest.mark.parametrize("kind", ["maxpool2d_int8", "avgpool2d_int8"])
def test_pooling_on_uint8_matches_the_reference(rng, case, kind):
    shape, pool, strides, padding = case
    xq = qinput(rng, shape, 0)
    attrs = dict(pool_size=pool, strides=strides, padding=padding)
    assert_bits(run_int8(kind, xq, (), attrs), oracle.forward(kind, [xq], [], attrs), f"{kind} {case}")


@pytest.mark.parametrize("kind", ["global_maxpool2d_int8", "global_avgpool2d_int8"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_global_pooling_on_uint8_matches_the_reference(rng, kind, keepdims):
    xq = qinput(rng, (3, 5, 7, 4), 0)
    assert_bits(run_int8(kind, xq, (), {"keepdims": keepdims}),
                oracle.forward(kind, [xq], [], {"keepdims": keepdims}), kind)


def test_views_pass_bytes_on(rng):
    xq = qinput(rng, (2, 4, 4, 3), 0)
    net = ops.Network([(4, 4, 3)], [node("quantize", [0], attrs={"scale": 1.0}), node("flatten", [1]),
                                    node("reshape", [2], attrs={"target_shape": (6, 8)}), node("identity", [3]),
                                    node("dequantize", [4], attrs={"scale": 1.0})], [5])
    assert net.value_types == ["float32", "uint8", "uint8", "uint8", "uint8", "float32"]
    np.testing.assert_array_equal(net.predict(xq.astype(np.float32))[0], xq.reshape(2, 6, 8))


# ----------------------------------------------------------------------------- the contract's element types

K3 = np.ones((3, 3, 3, 4), np.float32)
INT8 = oracle.int8_attrs(0.1, 0, 0.1, 0)


def test_a_float_op_refuses_bytes_and_an_int8_op_refuses_floats():
    with raises(ValueError, "Network(): layer 'c' (op 'conv2d')", "reads value 1, which holds uint8 values",
                "reads float32 values", "Dequantize it first (op 'dequantize')"):
        ops.Network([(5, 5, 3)], [node("quantize", [0], attrs={"scale": 1.0}), node("conv2d", [1], (K3, None), name="c")],
                    [2])
    with raises(ValueError, "node 0 (op 'conv2d_int8')", "reads value 0, which holds float32 values",
                "reads uint8 (quantized) values", "Quantize it first (op 'quantize')"):
        ops.Network([(5, 5, 3)], [node("conv2d_int8", [0], (K3, None), INT8)], [1])


def test_network_outputs_are_float32():
    with raises(ValueError, "Network(): output value 1 holds uint8 values", "outputs are float32",
                "End with op 'dequantize'"):
        ops.Network([(5,)], [node("quantize", [0], attrs={"scale": 1.0})], [1])


def test_nothing_trains_through_an_int8_op():
    q = node("quantize", [0], attrs={"scale": 1.0})
    conv = ops.node(ops.OpSpec("conv2d_int8", INT8, (K3, None)), "qconv", [1], weights=[0, -1])
    with raises(ValueError, "layer 'qconv' (op 'conv2d_int8') is inference-only", "parameter 'kernel' cannot be trained"):
        ops.Network([(5, 5, 3)], [q, conv, node("dequantize", [2], attrs={"scale": 1.0})], [3])
    with raises(ValueError, "node 0 (op 'quantize') is inference-only", "no gradient can pass through it",
                "input gradients were asked for"):
        ops.Network([(5, 5, 3)], [q, node("conv2d_int8", [1], (K3, None), INT8),
                                  node("dequantize", [2], attrs={"scale": 1.0})], [3], input_grads=True)
    # A trained float layer after the int8 ones is fine: its gradient stops there.
    dense = np.ones((36, 2), np.float32)
    net = ops.Network([(5, 5, 3)], [q, node("conv2d_int8", [1], (K3, None), INT8),
                                    node("dequantize", [2], attrs={"scale": 1.0}), node("flatten", [3]),
                                    ops.node(ops.OpSpec("dense", {}, (dense, None)), "d", [4], weights=[0, -1])], [5])
    grads = [np.empty_like(dense)]
    x = np.random.default_rng(0).random((2, 5, 5, 3), dtype=np.float32) * 3
    loss, _ = net.train_step(x, np.array([0, 0]), "sparse_softmax_crossentropy", grads)
    assert np.isfinite(loss) and np.abs(grads[0]).sum() > 0


def test_registry_describes_element_types_and_inference_only_ops():
    registered = ops.registered_ops()
    assert registered["conv2d_int8"].reads == "uint8" and registered["conv2d_int8"].inference_only
    assert registered["quantize"].reads == "float32" and registered["dequantize"].reads == "uint8"
    assert registered["flatten"].reads == "any" and not registered["flatten"].inference_only
    assert registered["conv2d"].reads == "float32" and not registered["conv2d"].inference_only


INT8_PARSE_ERRORS = [
    # kind, input shape, params, attrs, fragments
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, in_scale=0.0), ["expected in_scale to be a positive finite",
                                                                      "in_scale=0"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, in_scale=float("nan")), ["in_scale=nan"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, out_scale=-1.0), ["expected out_scale", "out_scale=-1"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, in_zero_point=-1), ["expected in_zero_point in [0, 255]",
                                                                          "in_zero_point=-1"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, out_zero_point=300), ["out_zero_point=300"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, out_dtype="int8"), ["expected out_dtype 'uint8' or 'float32'",
                                                                          "out_dtype='int8'"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, activation="sigmoid"),
     ["expected activation 'linear' or 'relu' with out_dtype='uint8'", "activation='sigmoid'"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, out_dtype="float32", activation="elu"),
     ["expected activation to be one of", "activation='elu'"]),
    ("conv2d_int8", (5, 5, 2), (K3, None), INT8, ["kernel of shape (3, 3, 3, 4)", "does not fit", "(None, 5, 5, 2)"]),
    ("conv2d_int8", (5, 5), (K3, None), INT8, ["needs (H, W, C) input"]),
    ("conv2d_int8", (5, 5, 3), (K3, np.ones(3, np.float32)), INT8, ["expected parameter 1 of shape (4,)"]),
    ("conv2d_int8", (2, 2, 3), (K3, None), INT8, ["computed output size would be zero or negative"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, strides=(0, 1)), ["expected strides of 2 integers"]),
    ("conv2d_int8", (5, 5, 3), (K3, None), dict(INT8, padding="full"), ["expected padding 'valid' or 'same'"]),
    ("conv2d_int8", (5, 5, 3), (np.where(K3 > 0, np.nan, 0).astype(np.float32), None), INT8,
     ["expected finite kernel values to quantize", "Received: kernel value nan at flat index 0"]),
    ("dense_int8", (6,), (np.ones((6, 2), np.float32), np.float32([1, np.inf])), INT8,
     ["expected finite bias values", "bias value inf at flat index 1"]),
    ("dense_int8", (6,), (np.ones((5, 2), np.float32), None), INT8, ["kernel of shape (5, 2)", "does not fit"]),
    ("dense_int8", (33004,), (np.ones((33004, 1), np.float32), None), INT8,
     ["has a reduction of 33004 values per output, more than the 33000", "Keep this layer in float32"]),
    ("maxpool2d_int8", (5, 5, 3), (), {"pool_size": (0, 2)}, ["expected pool_size of 2 integers"]),
    ("avgpool2d_int8", (1, 5, 3), (), {"pool_size": (2, 2)}, ["computed output size would be zero or negative"]),
    ("global_avgpool2d_int8", (5, 3), (), {}, ["needs (H, W, C) input"]),
]


@pytest.mark.parametrize("kind,shape,params,attrs,fragments", INT8_PARSE_ERRORS,
                         ids=[f"{c[0]}-{c[4][0][:40]}" for c in INT8_PARSE_ERRORS])
def test_every_int8_parse_branch_raises_naming_the_node_and_op(kind, shape, params, attrs, fragments):
    with raises(ValueError, f"Network(): layer 'q' (op '{kind}')", *fragments):
        ops.Network([shape], [node("quantize", [0], attrs={"scale": 1.0}), node(kind, [1], params, attrs, name="q")],
                    [2])


# ----------------------------------------------------------------------------- pycnn.quantization

from pycnn import executor, quantization  # noqa: E402


def small_lenet(seed=0, last="softmax"):
    """LeNet's layer kinds at a test's size: conv relu, pool, conv relu, pool, flatten, dense."""
    pycnn.utils.set_random_seed(seed)
    return pycnn.Sequential([layers.Input((12, 12, 3)), layers.Conv2D(6, 3, padding="same", activation="relu"),
                             layers.MaxPooling2D(2), layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
                             layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(5, activation=last)])


def images(rng, n, shape=(12, 12, 3)):
    return rng.random((n,) + shape, dtype=np.float32)


def test_quantize_runs_a_model_in_int8_exactly_as_the_reference(rng):
    """The whole pipeline against the oracle's ops with the scales quantize() chose: quantize
    the input, conv (relu) -> uint8, pool, conv, pool, flatten, dense (relu), dense (float out)."""
    model = small_lenet(last="linear")
    calib = images(rng, 40)
    q = quantization.quantize(model, calib)
    assert q.int8_layers == [l.name for l in model.layers]
    assert set(q.value_types) == {"float32", "uint8"}
    x = images(rng, 9)
    got = q.predict(x, verbose=0)
    qp = {v: q._qparams[v] for v in sorted(q._qparams)}
    (s_in, z_in), (s1, z1), (s2, z2), (s3, z3) = [qp[v] for v in sorted(qp)]
    conv1, _, conv2, _, _, dense1, dense2 = model.layers
    a = oracle.quantize(x, s_in, z_in)
    a = oracle.conv2d_int8_forward(a, conv1.kernel, conv1.bias, s_in, z_in, s1, z1, padding="same", activation="relu")
    a = oracle.maxpool2d_int8_forward(a, 2)
    a = oracle.conv2d_int8_forward(a, conv2.kernel, conv2.bias, s1, z1, s2, z2, activation="relu")
    a = oracle.maxpool2d_int8_forward(a, 2).reshape(9, -1)
    a = oracle.dense_int8_forward(a, dense1.kernel, dense1.bias, s2, z2, s3, z3, activation="relu")
    want = oracle.dense_int8_forward(a, dense2.kernel, dense2.bias, s3, z3, out_dtype="float32")
    assert_bits(got, want, "quantized model vs the oracle")
    # ... and close to the float model
    ref = model.predict(x, verbose=0)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_calibration_ranges_are_the_float_values_ranges(rng):
    model = small_lenet()
    calib = images(rng, 30)
    q = quantization.quantize(model, calib)
    (s_in, z_in) = q._qparams[0]
    assert z_in == 0 and s_in == pytest.approx(calib.max() / 255)
    conv1_out = model.layers[0](calib)
    s1, z1 = q._qparams[min(v for v in q._qparams if v > 0)]
    assert z1 == 0 and s1 == pytest.approx(conv1_out.max() / 255, rel=1e-6)
    p = quantization.quantize(model, calib, method="percentile", percentile=99.0)
    assert p.info["method"] == "percentile"
    assert all(p._qparams[v][0] <= q._qparams[v][0] * (1 + 1e-9) for v in q._qparams)
    assert any(p._qparams[v][0] < q._qparams[v][0] for v in q._qparams)


def test_predictions_do_not_depend_on_batch_size_or_threads(rng):
    q = quantization.quantize(small_lenet(), images(rng, 20))
    x = images(rng, 50)
    whole = q.predict(x, batch_size=50, verbose=0)
    np.testing.assert_array_equal(q.predict(x, batch_size=7, verbose=0), whole)
    old = pycnn.get_num_threads()
    try:
        pycnn.set_num_threads(1)
        np.testing.assert_array_equal(q.predict(x, batch_size=50, verbose=0), whole)
    finally:
        pycnn.set_num_threads(old)


def test_batchnorm_is_folded_first_and_training_only_layers_quantize_to_their_inference(rng):
    pycnn.utils.set_random_seed(3)
    model = pycnn.Sequential([layers.Input((10, 10, 3)), layers.RandomFlip("horizontal"), layers.RandomCrop(8, 8),
                              layers.Conv2D(6, 3, use_bias=False), layers.BatchNormalization(), layers.Activation("relu"),
                              layers.Dropout(0.5), layers.Flatten(), layers.Dense(4, activation="softmax")])
    x = images(rng, 64, (10, 10, 3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, rng.integers(0, 4, 64), epochs=2, batch_size=16, verbose=0)  # moving statistics away from 0 / 1
    q = quantization.quantize(model, x[:32])
    runs = {p.name: p.runs for p in q.layers}
    names = [l.name for l in model.layers]
    assert runs[names[0]] == "identity" and runs[names[5]] == "identity"  # RandomFlip, Dropout
    assert runs[names[1]] == "float32"  # RandomCrop's centre crop has no int8 kernel
    assert runs[names[3]] == f"folded into {names[2]}" and runs[names[4]] == f"fused into {names[2]}"
    assert runs[names[2]] == runs[names[6]] == runs[names[7]] == "int8"
    ref, got = model.predict(x, verbose=0), q.predict(x, verbose=0)
    assert np.mean(ref.argmax(1) == got.argmax(1)) > 0.9 and np.abs(ref - got).max() < 0.05


class Doubler(layers.Layer):
    """A Python layer without a native op."""

    def call(self, inputs, training=False):
        return inputs * 2.0


def test_layers_without_an_int8_kernel_run_in_float32_between_dequantize_and_quantize(rng):
    pycnn.utils.set_random_seed(4)
    L = {"conv": layers.Conv2D(8, 3, activation="relu", padding="same"),  # read by float ops: float32 out
         "depthwise": layers.DepthwiseConv2D(3, padding="same"),          # no int8 kernel
         "add": layers.Add(),                                             # nor here
         "dilated": layers.Conv2D(8, 3, dilation_rate=2, activation="relu"),
         "python": Doubler(),
         "conv2": layers.Conv2D(4, 3, activation="relu"),                 # quantize before it; uint8 out
         "pool": layers.GlobalAveragePooling2D(), "dense": layers.Dense(3),   # pooling on uint8, dense int8
         "tanh": layers.Activation("tanh"),                               # dequantize before it
         "pool2": layers.GlobalAveragePooling2D(), "dense2": layers.Dense(3),  # float pooling, quantize, dense
         "add2": layers.Add(), "softmax": layers.Activation("softmax")}
    inp = layers.Input((9, 9, 4))
    a = L["conv"](inp)
    f = L["conv2"](L["python"](L["dilated"](L["add"]([a, L["depthwise"](a)]))))
    out = L["softmax"](L["add2"]([L["dense"](L["pool"](f)), L["dense2"](L["pool2"](L["tanh"](f)))]))
    model = pycnn.Model(inp, out)
    x = rng.random((30, 9, 9, 4), dtype=np.float32)
    q = quantization.quantize(model, x)
    runs = {p.name: (p.runs, p.detail) for p in q.layers}
    run = {key: runs[layer.name] for key, layer in L.items()}
    assert run["conv"] == ("int8", "float32 out, relu")
    assert run["depthwise"] == run["add"] == run["tanh"] == ("float32", "no int8 kernel")
    assert run["dilated"] == ("float32", "the int8 kernel has no dilation_rate=[2, 2]")
    assert run["python"] == ("float32", "Python layer")
    assert run["conv2"] == ("int8", "uint8 out, relu fused") and run["pool"] == ("int8", "on uint8")
    assert run["pool2"] == ("float32", "") and run["dense"] == run["dense2"] == ("int8", "float32 out")
    lines = []
    q.summary(print_fn=lines.append)
    text = "\n".join(lines)
    name = {key: layer.name for key, layer in L.items()}
    assert f"quantize: float32 -> uint8 after '{name['python']}', before '{name['conv2']}'" in text
    assert f"dequantize: uint8 -> float32 after '{name['conv2']}', before '{name['tanh']}'" in text
    assert f"quantize: float32 -> uint8 after '{name['pool2']}', before '{name['dense2']}'" in text
    assert "Python layer" in text and "int8 layers: 5 of 13" in text
    ref, got = model.predict(x, verbose=0), q.predict(x, verbose=0)
    assert np.abs(ref - got).max() < 0.05


def test_a_model_with_two_inputs(rng):
    pycnn.utils.set_random_seed(5)
    x1, x2 = layers.Input((6, 6, 2)), layers.Input((5,))
    a = layers.Flatten()(layers.Conv2D(3, 3, activation="relu")(x1))
    b = layers.Dense(4, activation="relu")(x2)
    out = layers.Dense(2)(layers.Concatenate()([a, b]))
    model = pycnn.Model([x1, x2], out)
    data = [rng.random((20, 6, 6, 2), dtype=np.float32), rng.random((20, 5), dtype=np.float32)]
    q = quantization.quantize(model, data)
    np.testing.assert_allclose(q.predict(data, verbose=0), model.predict(data, verbose=0), atol=0.05)
    with raises(ValueError, "quantize() expected calibration_data as a list of 2 arrays"):
        quantization.quantize(model, data[0])


def test_the_quantized_model_is_a_copy(rng):
    model = small_lenet()
    x = images(rng, 10)
    q = quantization.quantize(model, images(rng, 10))
    before = q.predict(x, verbose=0)
    for w in model.weights:
        w[...] = 0.0
    np.testing.assert_array_equal(q.predict(x, verbose=0), before)
    assert q.float_model is not model


def test_evaluate_and_compile(rng):
    model = small_lenet()
    x, y = images(rng, 40), rng.integers(0, 5, 40)
    q = quantization.quantize(model, x)
    loss, acc = q.evaluate(x, y, verbose=0)
    probs = q.predict(x, verbose=0)
    assert acc == pytest.approx(np.mean(probs.argmax(1) == y))
    assert loss == pytest.approx(-np.mean(np.log(np.maximum(probs[np.arange(40), y], 1e-7))), rel=1e-5)
    assert q.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": acc}
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    q2 = quantization.quantize(model, x)
    assert q2.metrics_names == ["loss", "accuracy"]
    with raises(ValueError, "x and y must contain the same number of samples"):
        q.evaluate(x, y[:3], verbose=0)


def test_save_and_load_reproduce_predictions_bit_for_bit(rng, tmp_path):
    model = small_lenet()
    x = images(rng, 12)
    q = quantization.quantize(model, images(rng, 25), method="percentile", percentile=99.9)
    path = tmp_path / "q.npz"
    q.save(path)
    loaded = pycnn.models.load_model(path)
    assert isinstance(loaded, quantization.QuantizedModel)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), q.predict(x, verbose=0))
    assert loaded.info == q.info and loaded._qparams == q._qparams
    assert [(p.name, p.runs) for p in loaded.layers] == [(p.name, p.runs) for p in q.layers]
    with raises(ValueError, "writes pycnn's .npz format"):
        q.save(tmp_path / "q.keras")


def test_a_damaged_quantization_entry_is_refused(rng, tmp_path):
    import json
    q = quantization.quantize(small_lenet(), images(rng, 10))
    path = tmp_path / "q.npz"
    q.save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(str(arrays["__pycnn_manifest__"]))
    manifest["quantization"]["values"][0][1] = -1.0
    arrays["__pycnn_manifest__"] = np.array(json.dumps(manifest))
    np.savez(path, **arrays)
    with raises(ValueError, "damaged quantization entry", "scale -1"):
        pycnn.models.load_model(path)


BAD_CALIBRATION = [
    (np.zeros((0, 12, 12, 3), np.float32), ValueError, ["expected at least one calibration sample",
                                                        "calibration_data.shape=(0, 12, 12, 3)"]),
    (np.zeros((4, 12, 12), np.float32), ValueError, ["expected calibration_data of shape (N, 12, 12, 3)",
                                                     "Received: calibration_data.shape=(4, 12, 12)"]),
    (np.zeros((4, 10, 12, 3), np.float32), ValueError, ["(the model's input shape (None, 12, 12, 3))"]),
    (np.full((4, 12, 12, 3), np.nan, np.float32), ValueError, ["expected finite calibration samples",
                                                               "1728 NaN or infinite values", "(0, 0, 0, 0)"]),
    (np.array([[["a"]]]), TypeError, ["expected a real numeric array for 'calibration_data'"]),
    (None, TypeError, ["expected calibration_data to be an array of input samples. Received: None"]),
]


@pytest.mark.parametrize("data,exc,fragments", BAD_CALIBRATION, ids=[f[0][:30] for _, _, f in BAD_CALIBRATION])
def test_bad_calibration_data_is_a_clear_error(data, exc, fragments):
    with raises(exc, "quantize()", *fragments):
        quantization.quantize(small_lenet(), data)


def test_bad_arguments_are_clear_errors(rng):
    model, x = small_lenet(), images(rng, 4)
    x[1, 2, 3, 1] = np.inf
    with raises(ValueError, "1 NaN or infinite values (the first at index (1, 2, 3, 1))"):
        quantization.quantize(model, x)
    with raises(ValueError, "expected method to be one of 'minmax', 'percentile'", "method='entropy'"):
        quantization.quantize(model, images(rng, 4), method="entropy")
    with raises(ValueError, "expected percentile to be a number in (50, 100]", "percentile=101"):
        quantization.quantize(model, images(rng, 4), method="percentile", percentile=101)
    with raises(TypeError, "quantize() expected a pycnn model", "model of type ndarray"):
        quantization.quantize(np.zeros(3), images(rng, 4))
    with raises(RuntimeError, "has not been built"):
        quantization.quantize(pycnn.Sequential([layers.Dense(3)]), images(rng, 4))
    with raises(TypeError, "expected a float32 model", "quantized already"):
        quantization.quantize(quantization.quantize(model, images(rng, 4)), images(rng, 4))


def test_per_channel_weights_are_the_ops_weights(rng):
    kernel = rng.standard_normal((3, 3, 4, 7)).astype(np.float32)
    kernel[..., 2] = 0.0
    q, scale = quantization.per_channel_weights(kernel)
    want_q, want_scale = oracle.quantize_weights(kernel)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(scale, want_scale)


@pytest.mark.parametrize("kind", ["sequential", "pooling"])
def test_onnx_export_of_a_quantized_model_runs_in_onnx_runtime(rng, tmp_path, kind):
    """QDQ form: ONNX Runtime fuses it into its integer kernels; its requantization rounds its
    own way, so the outputs are close to pycnn's int8 ones, not equal."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if kind == "sequential":
        model = small_lenet()
    else:
        pycnn.utils.set_random_seed(6)
        inp = layers.Input((10, 10, 3))
        a = layers.AveragePooling2D(2)(layers.Conv2D(8, 3, padding="same", activation="relu")(inp))
        b = layers.Conv2D(8, 3, activation="relu")(a)
        c = layers.Concatenate()([layers.GlobalAveragePooling2D()(b), layers.GlobalMaxPooling2D()(b)])
        model = pycnn.Model(inp, layers.Dense(4, activation="softmax")(c))
    shape = model.input_shape[1:]
    x = rng.random((60,) + tuple(shape), dtype=np.float32)
    q = quantization.quantize(model, x)
    path = tmp_path / "q.onnx"
    q.export(path)
    proto = onnx.load(path)
    ops_used = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops_used
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want = q.predict(x, verbose=0)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 0.1
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9
    with raises(ValueError, "writes format='onnx' only"):
        q.export(tmp_path / "q.tflite", format="tflite")


# ----------------------------------------------------------------------------- the CLI


def test_cli_quantize_prints_both_accuracies_and_speeds_and_saves(capsys, tmp_path, monkeypatch):
    from dataset_fixtures import write_cifar_bin
    from pycnn.__main__ import main

    monkeypatch.setenv("PYCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYCNN_DATASETS_URL", "http://127.0.0.1:9")  # no network
    write_cifar_bin(tmp_path / "data" / "cifar-10-batches-bin", np.random.default_rng(5), n=60)
    pycnn.utils.set_random_seed(0)
    weights = tmp_path / "lenet.npz"
    pycnn.models.lenet().save_weights(weights)
    out_file = tmp_path / "lenet_int8.npz"
    threads = pycnn.get_num_threads()
    try:
        code = main(["quantize", "--data-dir", str(tmp_path / "data"), "--weights", str(weights), "--calibration", "50",
                     "--limit-test", "40", "--threads", "1", "--save", str(out_file)])
    finally:
        pycnn.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Calibrating on the first 50 training images (minmax)" in out
    assert 'Model: "lenet" quantized to int8' in out and "int8 layers: 8 of 8" in out
    assert re.search(r"^test accuracy +0\.\d{4} +0\.\d{4}$", out, re.M)
    assert re.search(r"^predict, images/s \(batch 256\) +[\d,]+ +[\d,]+$", out, re.M)
    assert re.search(r"^int8: [+-]\d+\.\d\d points of accuracy, \d+\.\d\dx the images per second", out, re.M)
    assert isinstance(pycnn.models.load_model(out_file), quantization.QuantizedModel)
    code = main(["quantize", "--data-dir", str(tmp_path / "data"), "--weights", str(tmp_path / "missing.npz")])
    assert code == 1 and "quantize expected a weights file" in capsys.readouterr().err
