"""Errors of the generic entry points (pycnn.ops: Network / OpCall / run, loss, apply_update,
the runtime settings): every validation branch of every op's parse, attribute names and
types, parameter shapes and dtypes, input shapes / ranks / dtypes at call time, writeable
state, loss targets, update arguments. Each raises ValueError or TypeError with a message
that names the entry point (and the node and op), what was expected and what was received
(house style, section 5); nothing malformed reaches a kernel, and nothing crashes.

Also: non-contiguous, float64 and integer inputs are copied to C-contiguous float32, never
read through the wrong strides.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import oracle
import pycnn
from op_harness import make_call
from pycnn import ops

CE = "sparse_softmax_crossentropy"


def f32(*shape):
    return np.ones(shape, dtype=np.float32)


def raises(exc, *fragments):
    """pytest.raises matching every fragment literally, in order."""
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


def node_error(kind, *fragments, exc=ValueError):
    return raises(exc, f"Network(): node 0 (op '{kind}')", *fragments)


X = f32(2, 5, 5, 3)     # conv / pool input
WT = f32(3, 3, 3, 4)    # conv kernel -> out (2, 3, 3, 4)


# ----------------------------------------------------------------------------- every parse branch

PARSE_ERRORS = [
    # kind, inputs, params, attrs, expected fragments
    ("conv2d", [f32(2, 5, 3)], [WT, None], {}, ["needs (H, W, C) input", "Received: input shape (None, 5, 3)"]),
    ("conv2d", [X], [f32(3, 3, 3), None], {}, ["kernel of shape (3, 3, 3)", "does not fit", "(None, 5, 5, 3)"]),
    ("conv2d", [X], [f32(3, 3, 2, 4), None], {}, ["kernel of shape (3, 3, 2, 4)", "does not fit"]),
    ("conv2d", [X], [f32(3, 3, 3, 0), None], {}, ["kernel of shape (3, 3, 3, 0)", "does not fit"]),
    ("conv2d", [X], [f32(0, 3, 3, 4), None], {}, ["kernel of shape (0, 3, 3, 4)", "does not fit"]),
    ("conv2d", [f32(2, 6, 6, 4)], [f32(3, 3, 1, 3), None], {"groups": 3},
     ["kernel of shape (3, 3, 1, 3)", "(None, 6, 6, 4) with groups=3"]),           # channels % groups
    ("conv2d", [f32(2, 6, 6, 4)], [f32(3, 3, 2, 3), None], {"groups": 2},
     ["kernel of shape (3, 3, 2, 3)", "with groups=2"]),                             # filters % groups
    ("conv2d", [f32(2, 6, 6, 4)], [f32(3, 3, 4, 4), None], {"groups": 2},
     ["kernel of shape (3, 3, 4, 4)", "with groups=2"]),                             # kernel.shape[2] != C / groups
    ("conv2d", [X], [WT, None], {"groups": 0}, ["expected groups >= 1", "Received: groups=0"]),
    ("conv2d", [X], [WT, None], {"groups": -3}, ["expected groups >= 1", "Received: groups=-3"]),
    ("conv2d", [X], [WT, f32(3)], {}, ["expected parameter 1 of shape (4,)", "Received: (3,)"]),
    ("conv2d", [X], [WT, f32(1, 4)], {}, ["expected parameter 1 of shape (4,)", "Received: (1, 4)"]),
    ("conv2d", [X], [WT, None], {"strides": (0, 1)}, ["expected strides of 2", "Received: strides=(0, 1)"]),
    ("conv2d", [X], [WT, None], {"strides": (-1, 1)}, ["expected strides of 2", "Received: strides=(-1, 1)"]),
    ("conv2d", [X], [WT, None], {"strides": (1, 1, 1)}, ["expected strides of 2", "Received: strides=(1, 1, 1)"]),
    ("conv2d", [X], [WT, None], {"strides": (2,)}, ["expected strides of 2", "Received: strides=(2,)"]),
    ("conv2d", [X], [WT, None], {"strides": (2 ** 31, 1)}, ["expected strides of 2", "strides=(2147483648, 1)"]),
    ("conv2d", [X], [WT, None], {"dilation_rate": (0, 1)}, ["dilation_rate of 2", "Received: dilation_rate=(0, 1)"]),
    ("conv2d", [X], [WT, None], {"dilation_rate": (2 ** 40, 1)}, ["dilation_rate of 2", "(1099511627776, 1)"]),
    ("conv2d", [X], [WT, None], {"padding": "full"}, ["expected padding 'valid' or 'same'", "padding='full'"]),
    ("conv2d", [X], [WT, None], {"padding": "SAME"}, ["expected padding 'valid' or 'same'", "padding='SAME'"]),
    ("conv2d", [X], [WT, None], {"padding": ""}, ["Received: padding=''"]),
    ("conv2d", [X], [f32(6, 6, 3, 4), None], {}, ["output size would be zero or negative", "(None, 5, 5, 3)"]),
    ("conv2d", [X], [f32(6, 1, 3, 4), None], {"padding": "valid"}, ["output size would be zero or negative"]),
    ("conv2d", [f32(2, 6, 6, 4)], [f32(3, 3, 4, 4), None], {"dilation_rate": (3, 3)},
     ["output size would be zero or negative", "(None, 6, 6, 4)"]),
    ("conv2d", [X], [WT, None], {"activation": "selu"},
     ["expected activation to be one of", "'leaky_relu'", "'softmax'", "Received: activation='selu'"]),
    ("conv2d", [X], [WT, None], {"activation": "ReLU"}, ["Received: activation='ReLU'"]),
    ("dense", [f32(2, 3)], [f32(5, 4), None], {}, ["kernel of shape (5, 4)", "does not fit", "(None, 3)"]),
    ("dense", [f32(2, 3)], [f32(3), None], {}, ["kernel of shape (3,)", "does not fit"]),
    ("dense", [f32(2, 3)], [f32(3, 0), None], {}, ["kernel of shape (3, 0)"]),
    ("dense", [f32(4)], [f32(1, 2), None], {}, ["kernel of shape (1, 2)", "does not fit its input of shape (None)"]),
    ("dense", [f32(2, 3)], [f32(3, 4), f32(3)], {}, ["expected parameter 1 of shape (4,)", "Received: (3,)"]),
    ("dense", [f32(2, 3)], [f32(3, 4), None], {"activation": "swish"}, ["Received: activation='swish'"]),
    ("depthwise_conv2d", [f32(2, 5, 3)], [f32(3, 3, 3, 1), None], {}, ["needs (H, W, C) input"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 2, 1), None], {}, ["depthwise kernel of shape (3, 3, 2, 1)", "does not fit"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 0), None], {}, ["depthwise kernel of shape (3, 3, 3, 0)"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3), None], {}, ["depthwise kernel of shape (3, 3, 3)"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 2), f32(3)], {}, ["expected parameter 1 of shape (6,)", "Received: (3,)"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 2), None], {"strides": (0, 1)}, ["strides of 2", "strides=(0, 1)"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 2), None], {"dilation_rate": (1, -1)}, ["dilation_rate=(1, -1)"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 2), None], {"dilation_rate": (3, 3)},
     ["output size would be zero or negative"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 2), None], {"padding": "x"}, ["padding='x'"]),
    ("depthwise_conv2d", [X], [f32(3, 3, 3, 2), None], {"activation": "x"}, ["activation='x'"]),
    ("separable_conv2d", [X], [f32(3, 3, 3, 2), f32(1, 1, 3, 4), None], {},
     ["expected a pointwise kernel of shape (1, 1, 6, filters)", "Received: (1, 1, 3, 4)"]),
    ("separable_conv2d", [X], [f32(3, 3, 3, 2), f32(2, 1, 6, 4), None], {}, ["Received: (2, 1, 6, 4)"]),
    ("separable_conv2d", [X], [f32(3, 3, 3, 2), f32(6, 4), None], {}, ["Received: (6, 4)"]),
    ("separable_conv2d", [X], [f32(3, 3, 3, 2), f32(1, 1, 6, 0), None], {}, ["Received: (1, 1, 6, 0)"]),
    ("separable_conv2d", [X], [f32(3, 3, 3, 2), f32(1, 1, 6, 4), f32(6)], {},
     ["expected parameter 2 of shape (4,)", "Received: (6,)"]),
    ("separable_conv2d", [X], [f32(3, 3, 4, 2), f32(1, 1, 8, 4), None], {}, ["depthwise kernel of shape (3, 3, 4, 2)"]),
    ("separable_conv2d", [X], [f32(3, 3, 3, 2), f32(1, 1, 6, 4), None], {"strides": (1, 0)}, ["strides=(1, 0)"]),
    ("maxpool2d", [f32(2, 5, 5)], [], {}, ["needs (H, W, C) input", "Received: input shape (None, 5, 5)"]),
    ("maxpool2d", [X], [], {"pool_size": (0, 2)}, ["expected pool_size of 2", "Received: pool_size=(0, 2)"]),
    ("maxpool2d", [X], [], {"pool_size": (2, 2, 2)}, ["expected pool_size of 2", "pool_size=(2, 2, 2)"]),
    ("maxpool2d", [X], [], {"pool_size": (2 ** 63 - 1, 2)}, ["expected pool_size of 2", "(9223372036854775807, 2)"]),
    ("maxpool2d", [X], [], {"strides": (-1, 2)}, ["expected strides of 2", "Received: strides=(-1, 2)"]),
    ("maxpool2d", [X], [], {"strides": (2 ** 31, 2)}, ["expected strides of 2", "strides=(2147483648, 2)"]),
    ("maxpool2d", [X], [], {"padding": "full"}, ["Received: padding='full'"]),
    ("maxpool2d", [X], [], {"pool_size": (6, 6)}, ["output size would be zero or negative", "(None, 5, 5, 3)"]),
    ("avgpool2d", [f32(2, 5, 5)], [], {}, ["needs (H, W, C) input"]),
    ("avgpool2d", [X], [], {"pool_size": (1, 0)}, ["Received: pool_size=(1, 0)"]),
    ("avgpool2d", [X], [], {"strides": (0, 0)}, ["Received: strides=(0, 0)"]),
    ("avgpool2d", [X], [], {"padding": "Valid"}, ["Received: padding='Valid'"]),
    ("avgpool2d", [f32(2, 1, 5, 3)], [], {}, ["output size would be zero or negative", "(None, 1, 5, 3)"]),
    ("global_maxpool2d", [f32(2, 5, 5)], [], {}, ["needs (H, W, C) input"]),
    ("global_avgpool2d", [f32(2, 5)], [], {}, ["needs (H, W, C) input", "(None, 5)"]),
    ("batchnorm", [f32(3)], [None, None, f32(1), f32(1)], {}, ["expected an input with a channel axis"]),
    ("batchnorm", [X], [f32(4), None, f32(3), f32(3)], {}, ["expected parameter 0 of shape (3,)", "Received: (4,)"]),
    ("batchnorm", [X], [None, f32(3, 1), f32(3), f32(3)], {}, ["expected parameter 1 of shape (3,)", "(3, 1)"]),
    ("batchnorm", [X], [None, None, f32(2), f32(3)], {}, ["expected parameter 2 of shape (3,)", "Received: (2,)"]),
    ("batchnorm", [X], [None, None, f32(3), f32(4)], {}, ["expected parameter 3 of shape (3,)", "Received: (4,)"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"epsilon": 0.0}, ["expected epsilon > 0", "epsilon=0"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"epsilon": -1e-3}, ["expected epsilon > 0"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"epsilon": float("nan")}, ["epsilon=nan"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"epsilon": float("inf")}, ["epsilon=inf"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"momentum": 1.5}, ["expected momentum in [0, 1]", "1.5"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"momentum": -0.1}, ["expected momentum in [0, 1]"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"momentum": float("nan")}, ["momentum=nan"]),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], {"activation": "elu"}, ["Received: activation='elu'"]),
    ("sobel_edges", [f32(2, 1, 5, 3)], [], {}, ["needs images of at least 2x2 pixels", "(None, 1, 5, 3)"]),
    ("sobel_edges", [f32(2, 5, 1, 3)], [], {}, ["at least 2x2 pixels", "(None, 5, 1, 3)"]),
    ("sobel_edges", [f32(2, 5, 3)], [], {}, ["needs (H, W, C) input"]),
    ("image_gradient", [X], [], {"axis": 2}, ["expected axis 0 (dy) or 1 (dx)", "Received: axis=2"]),
    ("image_gradient", [X], [], {"axis": -1}, ["Received: axis=-1"]),
    ("image_gradient", [f32(2, 5, 3)], [], {"axis": 0}, ["needs (H, W, C) input"]),
    ("concatenate", [X, X], [], {"axis": 3}, ["expected a per-sample axis in [0, 3)", "Received: axis=3"]),
    ("concatenate", [X, X], [], {"axis": -1}, ["expected a per-sample axis in [0, 3)", "Received: axis=-1"]),
    ("concatenate", [X, f32(2, 5, 4, 3)], [], {"axis": 2},
     ["matching shapes except along axis 2", "(None, 5, 5, 3), (None, 5, 4, 3)"]),
    ("concatenate", [X, f32(2, 5, 5)], [], {"axis": 0}, ["matching shapes except along axis 0"]),
    ("concatenate", [X], [], {"axis": 0}, ["expected at least 2 input(s). Received: 1"]),
    ("add", [X, f32(2, 5, 5, 2)], [], {}, ["expected inputs of the same shape", "(None, 5, 5, 3), (None, 5, 5, 2)"]),
    ("add", [X], [], {}, ["expected at least 2 input(s). Received: 1"]),
    ("multiply", [X, X, f32(2, 5, 5)], [], {}, ["expected inputs of the same shape"]),
    ("zero_padding2d", [f32(2, 3)], [], {}, ["needs (H, W, C) input"]),
    ("zero_padding2d", [X], [], {"padding": (1, 1)}, ["expected padding as 4 sizes (top, bottom, left, right)"]),
    ("zero_padding2d", [X], [], {"padding": (1, 1, -1, 1)}, ["expected padding sizes", "(1, 1, -1, 1)"]),
    ("zero_padding2d", [X], [], {"padding": (2 ** 62, 0, 0, 0)}, ["expected padding sizes", "4611686018427387904"]),
    ("cropping2d", [f32(2, 3)], [], {}, ["needs (H, W, C) input"]),
    ("cropping2d", [X], [], {"cropping": (0, 0, 0, 0, 0)}, ["expected cropping as 4 sizes"]),
    ("cropping2d", [X], [], {"cropping": (0, 0, -3, 2)}, ["expected cropping sizes", "(0, 0, -3, 2)"]),
    ("cropping2d", [X], [], {"cropping": (0, 0, 3, 2)},
     ["would crop the input to nothing", "(None, 5, 5, 3)", "(0, 0, 3, 2)"]),
    ("cropping2d", [X], [], {"cropping": (5, 0, 0, 0)}, ["would crop the input to nothing"]),
    ("rescaling", [X], [], {"scale": (1.0, 2.0), "offset": (0.0, 0.0)},
     ["expected scale and offset of 1 value or 3", "Received: 2 and 2 values", "(None, 5, 5, 3)"]),
    ("rescaling", [X], [], {"scale": (1.0, 2.0, 3.0), "offset": 0.0}, ["Received: 3 and 1 values"]),
    ("rescaling", [X], [], {"scale": (), "offset": ()}, ["Received: 0 and 0 values"]),
    ("reshape", [X], [], {"target_shape": (0, -1)}, ["cannot reshape input of shape (None, 5, 5, 3)", "(0, -1)"]),
    ("reshape", [X], [], {"target_shape": (-1, -1)}, ["cannot reshape", "(-1, -1)"]),
    ("reshape", [X], [], {"target_shape": (-2, 5)}, ["cannot reshape", "(-2, 5)"]),
    ("reshape", [X], [], {"target_shape": (7, -1)}, ["cannot reshape", "75 values per sample", "(7, -1)"]),
    ("reshape", [X], [], {"target_shape": (7, 11)}, ["cannot reshape", "(7, 11)"]),
    ("reshape", [X], [], {"target_shape": ()}, ["cannot reshape", "()"]),
    ("reshape", [f32(1, 4)], [], {"target_shape": (2 ** 32, 2 ** 32, -1)}, ["cannot reshape", "4294967296"]),
    ("leaky_relu", [X], [], {"negative_slope": -1.0}, ["negative_slope to be a finite number >= 0",
                                                       "Received: negative_slope=-1"]),
    ("leaky_relu", [X], [], {"negative_slope": float("nan")}, ["negative_slope=nan"]),
    ("leaky_relu", [X], [], {"negative_slope": float("inf")}, ["negative_slope=inf"]),
    ("activation", [X], [], {"activation": "elu"}, ["expected activation to be one of", "activation='elu'"]),
    ("activation", [X], [], {"activation": "RELU"}, ["activation='RELU'"]),
    # int8 inference: quantize's own checks; the int8 ops read uint8 values only (their parse
    # branches are tested behind a quantize node in test_quantization.py)
    ("quantize", [X], [], {"scale": 0.0}, ["expected scale to be a positive finite float32 number", "scale=0."]),
    ("quantize", [X], [], {"scale": 1e-50}, ["expected scale to be a positive finite float32 number", "scale=1e-50"]),
    ("quantize", [X], [], {"scale": 1e-40}, ["expected a scale whose inverse is a positive finite float32"]),
    ("quantize", [X], [], {"scale": 1.0, "zero_point": 256}, ["expected zero_point in [0, 255]", "zero_point=256"]),
    ("dequantize", [X], [], {"scale": 1.0}, ["reads value 0, which holds float32 values", "Quantize it first"]),
    ("conv2d_int8", [X], [WT, None], {"in_scale": 1.0}, ["reads value 0, which holds float32 values"]),
    ("dense_int8", [f32(2, 3)], [f32(3, 4), None], {"in_scale": 1.0}, ["reads value 0, which holds float32"]),
    ("maxpool2d_int8", [X], [], {}, ["reads value 0, which holds float32 values"]),
    ("avgpool2d_int8", [X], [], {}, ["reads value 0, which holds float32 values"]),
    ("global_maxpool2d_int8", [X], [], {}, ["reads value 0, which holds float32 values"]),
    ("global_avgpool2d_int8", [X], [], {}, ["reads value 0, which holds float32 values"]),
]


def _id(case):
    kind, _, _, attrs, frags = case
    return f"{kind}-{frags[0][:40]}-{sorted(attrs.items())!s:.40}"


@pytest.mark.parametrize("kind,inputs,params,attrs,fragments", PARSE_ERRORS, ids=[_id(c) for c in PARSE_ERRORS])
def test_every_parse_branch_raises_naming_the_node_and_op(kind, inputs, params, attrs, fragments):
    with node_error(kind, *fragments):
        ops.run(kind, inputs, params, attrs)
    # the same through OpCall, with the layer's name in the message
    with raises(ValueError, f"Network(): layer 'my_{kind}' (op '{kind}')", *fragments):
        ops.OpCall(ops.OpSpec(kind, attrs, tuple(params)), [np.shape(x)[1:] for x in inputs], name=f"my_{kind}")


def test_every_registered_op_appears_in_the_parse_error_table():
    assert {c[0] for c in PARSE_ERRORS} == set(ops.registered_ops()) - {"flatten", "identity"}


def test_huge_input_sizes_are_refused_not_wrapped():
    """A per-sample size beyond int64 must not wrap into a small (or zero) one (it did: 2^80
    values wrapped to 0, and UBSan flagged the overflow); at most 2^40 values per sample."""
    for shape in [(2 ** 40, 2 ** 40), (2 ** 21, 2 ** 20), (2 ** 62, 4)]:
        with pytest.raises(ValueError, match=r"expected input 0 to have at most 2\^40 values per sample"):
            ops.Network([shape], [ops.node(ops.OpSpec("flatten", {}), None, [0])], [1])
    net = ops.Network([(2 ** 20, 2 ** 20)], [ops.node(ops.OpSpec("flatten", {}), None, [0])], [1])
    assert net.output_shapes == [[2 ** 40]]


# ----------------------------------------------------------------------------- attribute names and types


def test_unknown_attributes_are_named_with_the_known_ones():
    with node_error("conv2d", "has no attribute 'stride'", "Expected one of 'strides'", "'padding'",
                    "'dilation_rate'", "'groups'", "'activation'"):
        ops.run("conv2d", [X], [WT, None], {"stride": (1, 1)})
    with node_error("flatten", "has no attribute 'axis'", "Expected none"):
        ops.run("flatten", [X], [], {"axis": 1})
    with node_error("maxpool2d", "has no attribute 'pool'"):
        ops.run("maxpool2d", [X], [], {"pool": (2, 2)})


@pytest.mark.parametrize("kind,inputs,attr", [("reshape", [X], "target_shape"), ("concatenate", [X, X], "axis"),
                                              ("image_gradient", [X], "axis")])
def test_required_attributes(kind, inputs, attr):
    with node_error(kind, f"needs attribute '{attr}'"):
        ops.run(kind, inputs, [], {})


ATTR_TYPES = [
    # kind, inputs, params, attr, value, expected kind of value
    ("conv2d", [f32(2, 5, 5, 4)], [f32(3, 3, 2, 4), None], "groups", "2", "an integer"),
    ("conv2d", [f32(2, 5, 5, 4)], [f32(3, 3, 2, 4), None], "groups", True, "an integer"),
    ("conv2d", [f32(2, 5, 5, 4)], [f32(3, 3, 2, 4), None], "groups", 2.0, "an integer"),
    ("conv2d", [f32(2, 5, 5, 4)], [f32(3, 3, 2, 4), None], "groups", None, "an integer"),
    ("conv2d", [X], [WT, None], "strides", 2, "a tuple of integers"),
    ("conv2d", [X], [WT, None], "strides", "11", "a tuple of integers"),
    ("conv2d", [X], [WT, None], "strides", (1.5, 1), "a tuple of integers"),
    ("conv2d", [X], [WT, None], "strides", (True, 1), "a tuple of integers"),
    ("conv2d", [X], [WT, None], "strides", None, "a tuple of integers"),
    ("conv2d", [X], [WT, None], "dilation_rate", 1.0, "a tuple of integers"),
    ("conv2d", [X], [WT, None], "padding", 1.5, "a string"),
    ("conv2d", [X], [WT, None], "padding", None, "a string"),
    ("conv2d", [X], [WT, None], "activation", None, "a string"),
    ("dense", [f32(2, 3)], [f32(3, 4), None], "activation", 3, "a string"),
    ("maxpool2d", [X], [], "pool_size", 2, "a tuple of integers"),
    ("maxpool2d", [X], [], "pool_size", (2.0, 2), "a tuple of integers"),
    ("leaky_relu", [X], [], "negative_slope", "0.1", "a number"),
    ("leaky_relu", [X], [], "negative_slope", True, "a number"),
    ("leaky_relu", [X], [], "negative_slope", None, "a number"),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], "epsilon", "1e-3", "a number"),
    ("batchnorm", [X], [None, None, f32(3), f32(3)], "training", 1.0, "an integer"),
    ("rescaling", [X], [], "scale", "a", "a number or a tuple of numbers"),
    ("rescaling", [X], [], "scale", [1.0, "a"], "a number or a tuple of numbers"),
    ("rescaling", [X], [], "offset", None, "a number or a tuple of numbers"),
    ("reshape", [X], [], "target_shape", 75, "a tuple of integers"),
    ("concatenate", [X, X], [], "axis", 1.0, "an integer"),
    ("concatenate", [X, X], [], "axis", "1", "an integer"),
    ("image_gradient", [X], [], "axis", False, "an integer"),
    ("global_maxpool2d", [X], [], "keepdims", "yes", "an integer"),
    ("zero_padding2d", [X], [], "padding", 1, "a tuple of integers"),
    ("cropping2d", [X], [], "cropping", "1111", "a tuple of integers"),
]


@pytest.mark.parametrize("kind,inputs,params,attr,value,want", ATTR_TYPES,
                         ids=[f"{c[0]}-{c[3]}={c[4]!r}" for c in ATTR_TYPES])
def test_attribute_type_errors(kind, inputs, params, attr, value, want):
    with node_error(kind, f"expected attribute '{attr}' to be {want}", f"Received: {attr}={value!r}", exc=TypeError):
        ops.run(kind, inputs, params, {attr: value})


def test_numeric_attribute_values_of_other_python_and_numpy_types_are_accepted(rng):
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    want = ops.run("conv2d", [x], [w, None], {"groups": 2, "strides": (2, 1)})
    for groups, strides in [(np.int64(2), [2, 1]), (np.int32(2), (np.int64(2), np.int8(1))),
                            (2, np.array([2, 1]))]:
        np.testing.assert_array_equal(ops.run("conv2d", [x], [w, None], {"groups": groups, "strides": strides}), want)
    want = ops.run("leaky_relu", [x], [], {"negative_slope": 0.5})
    for slope in (np.float32(0.5), np.float64(0.5), 0.5):
        np.testing.assert_array_equal(ops.run("leaky_relu", [x], [], {"negative_slope": slope}), want)
    np.testing.assert_array_equal(ops.run("leaky_relu", [x], [], {"negative_slope": 1}), x)  # an int is a number
    want = ops.run("rescaling", [x], [], {"scale": (1.0, 2.0, 3.0, 4.0), "offset": (0.5, 0.5, 0.5, 0.5)})
    np.testing.assert_array_equal(ops.run("rescaling", [x], [], {"scale": [1, 2, 3, 4], "offset": [0.5] * 4}), want)
    want = ops.run("rescaling", [x], [], {"scale": 2.0, "offset": 0.5})
    np.testing.assert_array_equal(ops.run("rescaling", [x], [], {"scale": 2, "offset": [np.float32(0.5)]}), want)


def test_a_numpy_array_for_a_floats_attribute_is_accepted_or_a_type_error(rng):
    """A floats attribute given as a NumPy array (a sequence of numbers) is read like a tuple,
    or refused with a TypeError naming the attribute, never an internal cast error."""
    x = rng.standard_normal((2, 3)).astype(np.float32)
    want = ops.run("rescaling", [x], [], {"scale": (1.0, 2.0, 3.0), "offset": (0.0, 0.0, 0.0)})
    try:
        got = ops.run("rescaling", [x], [], {"scale": np.array([1.0, 2.0, 3.0]), "offset": np.zeros(3)})
    except TypeError as err:
        assert "expected attribute 'scale'" in str(err)
    else:
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- network structure


def _flatten_node(**changes):
    node = dict(kind="flatten", name=None, inputs=[0], params=[], attrs={}, weights=[])
    node.update(changes)
    return tuple(node.values())


STRUCTURE_ERRORS = [
    # input_shapes, nodes, outputs, exception, fragments
    ([(0, 3)], [_flatten_node()], [1], ValueError, ["Network() expected input_shapes[0] to hold positive integers",
                                                    "Received: (0, 3)"]),
    ([(3,), (-1, 3)], [_flatten_node()], [2], ValueError, ["input_shapes[1] to hold positive integers"]),
    ([(2.0, 3)], [_flatten_node()], [1], ValueError, ["input_shapes[0] to hold positive integers"]),
    ([(3,)], [["flatten", None, [0], [], {}, []]], [1], TypeError,
     ["Network() expected nodes[0] to be (kind, name, inputs, params, attrs, weights)"]),
    ([(3,)], [("flatten", None, [0], [], {})], [1], TypeError, ["expected nodes[0] to be"]),
    ([(3,)], [], [], ValueError, ["Network() expected at least one node or output"]),
    ([(3,)], [_flatten_node(kind="flattn")], [1], ValueError,
     ["Network(): node 0 (op 'flattn'): no op of this kind is registered", "Known ops:", "'conv2d'", "'flatten'"]),
    ([(3,), (3,)], [_flatten_node(inputs=[0, 1])], [2], ValueError,
     ["node 0 (op 'flatten') expected 1 input(s). Received: 2"]),
    ([(3,)], [_flatten_node(inputs=[1])], [1], ValueError,
     ["node 0 (op 'flatten') reads value 1, but only values 0 .. 0 exist before it"]),
    ([(3,)], [_flatten_node(inputs=[-1])], [1], ValueError, ["reads value -1"]),
    ([(3,)], [_flatten_node(), _flatten_node(inputs=[2])], [2], ValueError,
     ["node 1 (op 'flatten') reads value 2, but only values 0 .. 1 exist"]),
    ([(3,)], [_flatten_node()], [2], ValueError, ["Network(): output value 2 does not exist (values 0 .. 1)"]),
    ([(3,)], [_flatten_node()], [-1], ValueError, ["output value -1 does not exist"]),
    ([(3,)], [_flatten_node(name="f1", params=[f32(3)])], [1], ValueError,
     ["Network(): layer 'f1' (op 'flatten') expected 0 parameter(s). Received: 1"]),
    ([(3,)], [("dense", None, [0], [f32(3, 2)], {}, [])], [1], ValueError,
     ["node 0 (op 'dense') expected 2 parameter(s). Received: 1"]),
    ([(3,)], [("dense", None, [0], [None, None], {}, [])], [1], ValueError,
     ["node 0 (op 'dense') needs its parameter 'kernel'. Received: None"]),
    ([(3,)], [("dense", None, [0], [f32(3, 2), None], {}, [0, 1])], [1], ValueError,
     ["node 0 (op 'dense') cannot train parameter 'bias'"]),
    ([(3,)], [("dense", None, [0], [f32(3, 2), f32(2)], {}, [0, 0])], [1], ValueError,
     ["shares trained weight 0 with a parameter of another size"]),
    ([(3,)], [("dense", None, [0], [f32(3, 2), f32(2)], {}, [1, -1])], [1], ValueError,
     ["Network(): trained weight 0 is not used by any node"]),
]


@pytest.mark.parametrize("input_shapes,nodes,outputs,exc,fragments", STRUCTURE_ERRORS,
                         ids=[c[4][0][:60] for c in STRUCTURE_ERRORS])
def test_network_structure_errors(input_shapes, nodes, outputs, exc, fragments):
    with raises(exc, *fragments):
        ops.Network(input_shapes, nodes, outputs)


def test_one_trained_weight_may_be_shared_by_parameters_of_one_size(rng):
    """Two dense nodes reading one kernel (trained weight 0): its gradient is the sum of both."""
    w = rng.standard_normal((3, 3)).astype(np.float32)
    spec = ops.OpSpec("dense", {}, (w, None))
    net = ops.Network([(3,)], [ops.node(spec, None, [0], [0, -1]), ops.node(spec, None, [1], [0, -1])], [2])
    assert net.weight_sizes == [9]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    (out,), tape = net.forward([x])
    np.testing.assert_allclose(out, x @ w @ w, rtol=1e-5, atol=1e-6)
    G = rng.standard_normal(out.shape).astype(np.float32)
    grad = np.empty_like(w)
    net.backward(tape, [G], [grad])
    want = x.astype(np.float64).T @ (G @ w.T) + (x @ w).astype(np.float64).T @ G
    oracle.assert_close(grad, want, rtol=1e-4, atol=1e-4, scale_atol=True)


MALFORMED_NODES = [
    pytest.param([(3,)], [(5, None, [0], [], {}, [])], id="kind-int"),
    pytest.param([(3,)], [("flatten", 5, [0], [], {}, [])], id="name-int"),
    pytest.param([(3,)], [("flatten", None, "a", [], {}, [])], id="inputs-str"),
    pytest.param([(3,)], [("flatten", None, [0.5], [], {}, [])], id="inputs-float"),
    pytest.param([(3,)], [("flatten", None, [0], 5, {}, [])], id="params-int"),
    pytest.param([(3,)], [("reshape", None, [0], [], {5: (3,)}, [])], id="attr-name-int"),
    pytest.param([(3,)], [("flatten", None, [0], [], {}, "a")], id="weights-str"),
    pytest.param([(3,)], [("flatten", None, [0], [], {}, [0.5])], id="weights-float"),
    pytest.param([5], [("flatten", None, [0], [], {}, [])], id="input-shape-int"),
    pytest.param([None], [("flatten", None, [0], [], {}, [])], id="input-shape-None"),
    pytest.param([(3,)], [("zero_padding2d", None, [0], [], {"padding": (2 ** 64, 0, 0, 0)}, [])],
                 id="attr-int-beyond-int64"),
    pytest.param([(5, 5, 3)], [("maxpool2d", None, [0], [], {"strides": (-2 ** 70, 1)}, [])],
                 id="attr-int-below-int64"),
]


@pytest.mark.parametrize("input_shapes,nodes", MALFORMED_NODES)
def test_malformed_nodes_are_type_or_value_errors(input_shapes, nodes):
    """A node tuple of the wrong types is refused with TypeError / ValueError (as every other
    argument error), not a RuntimeError from the binding's internal casts."""
    with pytest.raises((TypeError, ValueError)):
        ops.Network(input_shapes, nodes, [len(input_shapes)])


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("param,exc,fragments", [
    ([[1.0, 2.0]] * 3, TypeError, ["parameter 0 to be a NumPy float32 array", "Received: list"]),
    (np.ones((3, 2)), TypeError, ["parameter 0 to be float32 in native byte order", "dtype=float64",
                                  "np.ascontiguousarray(a, np.float32)"]),
    (np.ones((3, 2), ">f4"), TypeError, ["float32 in native byte order", "dtype=>f4"]),
    (np.ones((3, 2), np.int32), TypeError, ["dtype=int32"]),
    (np.ones((2, 3), np.float32).T, ValueError, ["parameter 0 to be C-contiguous (read by later calls)"]),
])
def test_network_parameters_must_be_exact_float32_arrays(param, exc, fragments):
    """Network keeps pointers to its parameters: it never converts them (a copy would go stale)."""
    with raises(exc, "Network() expected node 0 (op 'dense')", *fragments):
        ops.Network([(3,)], [("dense", None, [0], [param, None], {}, [])], [1])


@pytest.mark.parametrize("bad,received", [(np.ones((3, 2), np.complex64), "dtype=complex64"),
                                          (np.full((3, 2), None, dtype=object), "dtype=object"),
                                          (np.full((3, 2), "a"), "dtype=<U1")], ids=["complex", "object", "str"])
def test_opcall_refuses_non_numeric_parameters(bad, received):
    with raises(TypeError, "real numeric array for parameter 0 of op 'dense'", received):
        ops.OpCall(ops.OpSpec("dense", {}, (bad, None)), [(3,)])
    with raises(TypeError, "parameter 1 of op 'dense'", received):
        ops.run("dense", [f32(2, 3)], [f32(3, 2), bad[0]])


def test_opcall_converts_other_numeric_parameters(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    w = rng.integers(-3, 4, (3, 2))
    want = ops.run("dense", [x], [w.astype(np.float32), None])
    for param in (w, w.tolist(), w.astype(np.float64), np.asfortranarray(w.astype(np.float32))):
        np.testing.assert_array_equal(ops.run("dense", [x], [param, None]), want)


# ----------------------------------------------------------------------------- state (moving statistics)


def test_state_parameters_must_be_writeable():
    ro = f32(3)
    ro.flags.writeable = False
    with raises(ValueError, "Network() expected node 0 (op 'batchnorm') parameter 2 to be writeable",
                "(updated in place)"):
        ops.run("batchnorm", [X], [None, None, ro, f32(3)])
    with raises(ValueError, "parameter 3 to be writeable"):
        ops.OpCall(ops.OpSpec("batchnorm", {"training": 1}, (None, None, f32(3), ro)), [(5, 5, 3)])
    with raises(ValueError, "needs its parameter 'moving_mean'. Received: None"):
        ops.run("batchnorm", [X], [None, None, None, f32(3)])
    with raises(ValueError, "needs its parameter 'moving_variance'. Received: None"):
        ops.run("batchnorm", [X], [None, None, f32(3), None])
    with raises(ValueError, "cannot train parameter 'moving_mean'"):
        make_call("batchnorm", [X], [f32(3), None, f32(3), f32(3)], {}, trained=[True, False, True, False])


def test_read_only_gamma_and_beta_are_fine():
    """gamma and beta are read, never written: a read-only array will do."""
    g, b = np.full(3, 2.0, np.float32), np.full(3, 0.5, np.float32)
    g.flags.writeable = b.flags.writeable = False
    out = ops.run("batchnorm", [X], [g, b, np.zeros(3, np.float32), np.ones(3, np.float32)])
    np.testing.assert_allclose(out, 2.0 / np.sqrt(1 + 1e-3) + 0.5, rtol=1e-6)


def test_committed_statistics_are_never_written_into_a_hidden_copy(rng):
    """Moving statistics handed to OpCall in another dtype must not be converted to a copy that
    the commit then writes (the caller's arrays silently unchanged): either OpCall refuses them,
    or the caller's arrays receive the batch's moments."""
    x = (rng.standard_normal((6, 4, 4, 3)) * 2 + 3).astype(np.float32)
    moving_mean, moving_var = np.zeros(3), np.ones(3)  # float64
    try:
        call = ops.OpCall(ops.OpSpec("batchnorm", {"training": 1, "momentum": 0.0},
                                     (None, None, moving_mean, moving_var)), [x.shape[1:]])
    except (TypeError, ValueError) as err:
        assert "moving_mean" in str(err) or "parameter 2" in str(err)
        return
    _, tape = call.forward([x])
    call.commit(tape)
    mean, var = oracle.batch_moments(x)
    oracle.assert_close(moving_mean, mean, rtol=1e-4, atol=1e-5, name="moving_mean")
    oracle.assert_close(moving_var, var, rtol=1e-4, atol=1e-5, name="moving_variance")


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python: a crash (a signal) fails the test instead of pytest."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("producer", ["flatten", "batchnorm-3", "batchnorm-64"])
def test_a_tape_from_another_network_is_refused_by_backward_and_commit(producer):
    code = f"""
import numpy as np
from pycnn import ops
def bn(C):
    return ops.OpCall(ops.OpSpec("batchnorm", {{"training": 1}},
                      (None, None, np.zeros(C, np.float32), np.ones(C, np.float32))), [(4, C)])
other = {{"flatten": lambda: ops.OpCall(ops.OpSpec("flatten", {{}}), [(4, 3)]),
          "batchnorm-3": lambda: bn(3), "batchnorm-64": lambda: bn(64)}}["{producer}"]()
_, tape = other.forward([np.ones((2, 4, other.network.value_shapes[0][1]), np.float32)])
mine = bn(3)
for what, call in [("backward", lambda: mine.backward(tape, np.ones((2, 4, 3), np.float32))),
                   ("commit", lambda: mine.commit(tape))]:
    try:
        call()
        print(what, "accepted")
    except ValueError as err:
        assert "tape from this network" in str(err), err
        print(what, "refused")
"""
    proc = _run_isolated(code)
    assert proc.returncode == 0, f"status {proc.returncode} (negative: killed by that signal)\n{proc.stderr[-3000:]}"
    assert proc.stdout.split() == ["backward", "refused", "commit", "refused"], proc.stdout


# ----------------------------------------------------------------------------- inputs at call time


@pytest.fixture(scope="module")
def conv_call():
    return ops.OpCall(ops.OpSpec("conv2d", {"padding": "same"}, (f32(3, 3, 3, 4), f32(4))), [(5, 5, 3)])


@pytest.mark.parametrize("x,received", [(f32(2, 5, 4, 3), "x.shape=(2, 5, 4, 3)"), (f32(5, 5, 3), "x.shape=(5, 5, 3)"),
                                        (f32(0, 5, 5, 3), "x.shape=(0, 5, 5, 3)"), (np.float32(1), "x.shape=()")],
                         ids=["H!=", "no-batch-axis", "empty-batch", "scalar"])
def test_forward_and_predict_check_the_input_shape(conv_call, x, received):
    for fn, name in [(lambda: conv_call.forward([x]), "forward()"),
                     (lambda: conv_call.network.predict([x]), "predict()")]:
        with raises(ValueError, name, "expected input 0 of shape (None, 5, 5, 3) with a non-empty batch", received):
            fn()


def test_forward_checks_the_number_of_inputs_and_their_batches(conv_call):
    with raises(ValueError, "forward() expected 1 input array(s). Received: 2"):
        conv_call.forward([X, X])
    with raises(ValueError, "forward() expected 1 input array(s). Received: 0"):
        conv_call.forward([])
    add = ops.Network([(3,), (3,)], [ops.node(ops.OpSpec("add", {}), None, [0, 1])], [2])
    with raises(ValueError, "predict() expected input 1 of shape (None, 3) with a non-empty batch the same for every "
                            "input", "x.shape=(3, 3)"):
        add.predict([f32(2, 3), f32(3, 3)])
    with raises(ValueError, "ops.run('flatten') expected non-empty batches (N, ...)", "[(0, 3)]"):
        ops.run("flatten", [f32(0, 3)])
    with raises(ValueError, "ops.run('flatten') expected non-empty batches", "Received shapes: []"):
        ops.run("flatten", [])


BAD_ARRAYS = [
    (np.ones((2, 5, 5, 3), np.complex64), "dtype=complex64"),
    (np.full((2, 5, 5, 3), None, dtype=object), "dtype=object"),
    (np.full((2, 5, 5, 3), "a"), "dtype=<U1"),
]


@pytest.mark.parametrize("bad,received", BAD_ARRAYS, ids=["complex", "object", "str"])
def test_non_numeric_inputs_are_type_errors(conv_call, bad, received):
    with raises(TypeError, "forward() expected a real numeric array (converted to float32) for argument 'x'", received):
        conv_call.forward([bad])
    with raises(TypeError, "predict()", "real numeric array", received):
        ops.run("maxpool2d", [bad])
    with raises(TypeError, "predict()", received):
        ops.run("activation", [bad], attrs={"activation": "softmax"})
    _, tape = conv_call.forward([X])
    with raises(TypeError, "backward()", "'douts[0]'", received):
        conv_call.backward(tape, bad[:, :, :, :1].repeat(4, axis=3))


def test_none_and_non_arrays_are_type_errors(conv_call):
    with raises(TypeError, "forward() expected a float32 array for argument 'x'. Received: None"):
        conv_call.forward([None])
    with raises(TypeError, "forward()", "'x'", "dtype=object"):
        conv_call.forward([object()])


def test_backward_checks_its_arguments(conv_call):
    out, tape = conv_call.forward([X])
    net = conv_call.network
    grads = [f32(3, 3, 3, 4), f32(4)]
    with raises(ValueError, "backward() expected douts[0] of the output's shape (2, 5, 5, 4). Received: (2, 5, 5, 3)"):
        net.backward(tape, [f32(2, 5, 5, 3)], grads)
    with raises(ValueError, "backward() expected douts[0] of the output's shape (2, 5, 5, 4). Received: (3, 5, 5, 4)"):
        net.backward(tape, [f32(3, 5, 5, 4)], grads)
    with raises(ValueError, "backward() expected 1 output gradients (or None). Received: 2"):
        net.backward(tape, [out, out], grads)
    with raises(ValueError, "backward() expected 2 grads arrays (one per trained weight). Received: 1"):
        net.backward(tape, [out], grads[:1])
    with raises(ValueError, "backward() expected grads[1] of 4 values. Received: 5"):
        net.backward(tape, [out], [grads[0], f32(5)])
    with raises(TypeError, "backward() expected grads[1] to be float32 in native byte order (updated in place)",
                "dtype=float64"):
        net.backward(tape, [out], [grads[0], np.ones(4)])
    ro = f32(4)
    ro.flags.writeable = False
    with raises(ValueError, "backward() expected grads[1] to be writeable"):
        net.backward(tape, [out], [grads[0], ro])
    with raises(ValueError, "backward() expected grads[0] to be C-contiguous"):
        net.backward(tape, [out], [f32(3, 3, 4, 3).transpose(0, 1, 3, 2), f32(4)])
    with raises(ValueError, "backward() expected a tape from this network's forward()"):
        ops.OpCall(conv_call.spec, [(5, 5, 3)]).backward(tape, out)
    with pytest.raises(TypeError):
        net.backward(None, [out], grads)
    # None for an output gradient: nothing flows back from that output
    (dinp,) = net.backward(tape, [None], grads)
    assert not dinp.any() and not grads[0].any() and not grads[1].any()


def test_input_grads_false_gives_none(rng):
    call = make_call("dense", [f32(2, 3)], [f32(3, 4), None], {}, input_grads=False)
    _, tape = call.forward([f32(2, 3)])
    dinputs, dparams = call.backward(tape, f32(2, 4))
    assert dinputs == [None] and dparams[0].shape == (3, 4) and dparams[1] is None


# ----------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("outputs,targets,weights,exc,fragments", [
    (f32(4, 3), np.zeros(4, int), None, None, None),
    (f32(4), np.zeros(4, np.int64), None, ValueError, ["expected outputs of shape (N, classes)", "outputs.shape=(4,)"]),
    (f32(0, 3), np.zeros(0, np.int64), None, ValueError, ["outputs.shape=(0, 3)"]),
    (f32(4, 0), np.zeros(4, np.int64), None, ValueError, ["outputs.shape=(4, 0)"]),
    (np.ones((4, 3), complex), np.zeros(4, int), None, TypeError, ["'outputs'", "dtype=complex128"]),
    (f32(4, 3), np.zeros(4), None, TypeError, ["expected integer class indices for argument 'targets'",
                                               "dtype=float64", "y.astype('int64')"]),
    (f32(4, 3), np.zeros(4, bool), None, TypeError, ["integer class indices", "dtype=bool"]),
    (f32(4, 3), np.array(["a"] * 4), None, TypeError, ["integer class indices", "dtype=<U1"]),
    (f32(4, 3), None, None, TypeError, ["integer class indices"]),
    (f32(4, 3), np.zeros(3, np.int64), None, ValueError, ["'targets' of shape (4,), one class index per sample",
                                                          "targets.shape=(3,)"]),
    (f32(4, 3), np.zeros((4, 1), np.int64), None, ValueError, ["targets.shape=(4, 1)"]),
    (f32(4, 3), np.array([0, 1, 3, 2]), None, ValueError, ["class indices in [0, 3)", "Received: targets[2]=3"]),
    (f32(4, 3), np.array([0, -1, 1, 2], np.int32), None, ValueError, ["class indices in [0, 3)", "targets[1]=-1"]),
    (f32(4, 3), np.array([0, 1, 2 ** 40, 2]), None, ValueError, ["targets[2]=1099511627776"]),
    (f32(4, 3), np.array([0, 1, 2 ** 63, 2], np.uint64), None, ValueError, ["class indices in [0, 3)", "targets[2]="]),
    (f32(4, 3), np.zeros(4, int), np.ones(3), ValueError, ["'sample_weight' of shape (4,)",
                                                           "sample_weight.shape=(3,)"]),
    (f32(4, 3), np.zeros(4, int), np.array([1, -1, 1, 1.0]), ValueError, ["finite sample weights >= 0",
                                                                          "sample_weight[1]=-1"]),
    (f32(4, 3), np.zeros(4, int), np.array([1, np.nan, 1, 1.0]), ValueError, ["sample_weight[1]=nan"]),
    (f32(4, 3), np.zeros(4, int), np.array([1, 1, np.inf, 1.0]), ValueError, ["sample_weight[2]=inf"]),
    (f32(4, 3), np.zeros(4, int), np.array(["a"] * 4), TypeError, ["'sample_weight'", "dtype=<U1"]),
])
def test_loss_errors(outputs, targets, weights, exc, fragments):
    if exc is None:
        ops.loss(CE, outputs, targets, weights)
        return
    with raises(exc, "loss()", *fragments):
        ops.loss(CE, outputs, targets, weights)


def test_loss_name_is_checked():
    with raises(ValueError, "loss() has no loss named 'categorical_crossentropy'"):
        ops.loss("categorical_crossentropy", f32(4, 3), np.zeros(4, int))


def test_train_step_checks_targets_grads_and_update(rng):
    w, b = (rng.standard_normal((6, 3)) * 0.1).astype(np.float32), np.zeros(3, np.float32)
    net = ops.Network([(6,)], [ops.node(ops.OpSpec("dense", {}, (w, b)), "d", [0], [0, 1])], [1])
    x, y = rng.standard_normal((4, 6)).astype(np.float32), np.array([0, 1, 2, 1])
    grads = [f32(6, 3), f32(3)]
    with raises(ValueError, "train_step() has no loss named 'mse'"):
        net.train_step(x, y, "mse", grads)
    with raises(TypeError, "train_step() expected integer class indices", "dtype=float64"):
        net.train_step(x, y.astype(float), CE, grads)
    with raises(ValueError, "train_step() expected class indices in [0, 3)", "targets[2]=3"):
        net.train_step(x, np.array([0, 1, 3, 1]), CE, grads)
    with raises(ValueError, "train_step() expected 'targets' of shape (4,)", "targets.shape=(3,)"):
        net.train_step(x, y[:3], CE, grads)
    with raises(ValueError, "train_step() expected 2 grads arrays (one per trained weight). Received: 1"):
        net.train_step(x, y, CE, grads[:1])
    with raises(ValueError, "train_step() expected 'sample_weight' of shape (4,)"):
        net.train_step(x, y, CE, grads, sample_weight=np.ones(3))
    with raises(ValueError, "train_step() expected outputs_out of shape (4, 3)"):
        net.train_step(x, y, CE, grads, outputs_out=f32(4, 2))
    with raises(ValueError, "train_step() expected weights[0] to be the array the network reads"):
        net.train_step(x, y, CE, grads, update=("sgd", [0.1, 0, 0], [f32(6, 3), f32(3)], [[f32(6, 3)], [f32(3)]]))
    with raises(ValueError, "train_step() expected update=(name, hyper, weights, slots[, decay])"):
        net.train_step(x, y, CE, grads, update=("sgd", [0.1, 0, 0]))
    with raises(ValueError, "train_step() expected input 0 of shape (None, 6)", "x.shape=(4, 5)"):
        net.train_step(f32(4, 5), y, CE, grads)
    reshaped = ops.Network([(6,)], [ops.node(ops.OpSpec("dense", {}, (w, b)), "d", [0], [0, 1]),
                                    ops.node(ops.OpSpec("reshape", {"target_shape": (3, 1)}), None, [1])], [2])
    with raises(ValueError, "train_step() expected a network with one output of shape (N, classes)"):
        reshaped.train_step(x, y, CE, grads)
    loss, hits = net.train_step(x, y, CE, grads)  # and the well-formed call works
    assert loss == pytest.approx(oracle.sparse_softmax_crossentropy(x @ w + b, y)[0], rel=1e-5)


# ----------------------------------------------------------------------------- updates


W5, G5 = f32(5), f32(5)
ADAM = [0.1, 0.9, 0.999, 1e-7]


def _ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("name,hyper,weights,grads,slots,exc,fragments", [
    ("rmsprop", [0.1], [W5], [G5], [[f32(5)]], ValueError, ["has no update named 'rmsprop'"]),
    ("adam", [0.1, 0.9], [W5], [G5], [[f32(5), f32(5)]], ValueError, ["expected 4 hyper-parameters for update 'adam'"]),
    ("sgd", [0.1], [W5], [G5], [[f32(5)]], ValueError, ["expected 3 hyper-parameters for update 'sgd'"]),
    ("adam", [np.nan, 0.9, 0.999, 1e-7], [W5], [G5], [[f32(5), f32(5)]], ValueError,
     ["finite hyper-parameters", "nan"]),
    ("adam", [0.1, 0.9, np.inf, 1e-7], [W5], [G5], [[f32(5), f32(5)]], ValueError, ["finite hyper-parameters", "inf"]),
    ("adam", [-0.1, 0.9, 0.999, 1e-7], [W5], [G5], [[f32(5), f32(5)]], ValueError, ["alpha", "alpha=-0.1"]),
    ("adam", [0.1, 1.5, 0.999, 1e-7], [W5], [G5], [[f32(5), f32(5)]], ValueError, ["beta_1", "beta_1=1.5"]),
    ("sgd", [0.1, -0.5, 0], [W5], [G5], [[f32(5)]], ValueError, ["momentum", "momentum=-0.5"]),
    ("sgd", [0.1, 0.5, 2], [W5], [G5], [[f32(5)]], ValueError, ["nesterov to be 0 or 1", "nesterov=2"]),
    ("adam", ADAM, [W5, W5], [G5], [[f32(5), f32(5)]], ValueError,
     ["one weight and one list of slots per gradient (1)"]),
    ("adam", ADAM, [W5], [G5], [[f32(5)]], ValueError, ["expected 2 slot arrays per weight for update 'adam'"]),
    ("adam", ADAM, [W5], [G5], [f32(5)], ValueError, ["expected 2 slot arrays per weight"]),
    ("adam", ADAM, [W5], [G5], [[f32(5), f32(4)]], ValueError, ["expected slots[0][1] of its weight's size"]),
    ("adam", ADAM, [W5], [f32(4)], [[f32(5), f32(5)]], ValueError, ["expected weights[0] of its gradient's size 4"]),
    ("adam", ADAM, [np.ones(5)], [G5], [[f32(5), f32(5)]], TypeError,
     ["weights[0] to be float32 in native byte order (updated in place)", "dtype=float64"]),
    ("adam", ADAM, [f32(5).astype(">f4")], [G5], [[f32(5), f32(5)]], TypeError, ["dtype=>f4"]),
    ("adam", ADAM, [_ro(W5)], [G5], [[f32(5), f32(5)]], ValueError, ["weights[0] to be writeable"]),
    ("adam", ADAM, [f32(10)[::2]], [G5], [[f32(5), f32(5)]], ValueError, ["weights[0] to be C-contiguous"]),
    ("adam", ADAM, [[1.0] * 5], [G5], [[f32(5), f32(5)]], TypeError, ["weights[0] to be a NumPy float32 array",
                                                                     "Received: list"]),
    ("adam", ADAM, [W5], [G5], [[f32(5), _ro(W5)]], ValueError, ["slots[0][1] to be writeable"]),
    ("adam", ADAM, [W5], [G5], [[f32(5), np.ones(5)]], TypeError, ["slots[0][1] to be float32", "dtype=float64"]),
    ("adam", ADAM, [W5], ["g"], [[f32(5), f32(5)]], TypeError, ["real numeric array for a gradient", "dtype=<U1"]),
    ("adam", ADAM, [W5], [np.ones(5, complex)], [[f32(5), f32(5)]], TypeError, ["dtype=complex128"]),
])
def test_update_errors(name, hyper, weights, grads, slots, exc, fragments):
    before = [np.array(w, copy=True) for w in weights]
    with raises(exc, *fragments):
        ops.apply_update(name, hyper, weights, grads, slots)
    for a, b in zip(before, weights):  # nothing was applied
        np.testing.assert_array_equal(a, b)


def test_update_hyper_parameters_must_be_numbers():
    with pytest.raises((TypeError, ValueError)):
        ops.apply_update("adam", ["a", 0.9, 0.999, 1e-7], [f32(5)], [f32(5)], [[f32(5), f32(5)]])


# ----------------------------------------------------------------------------- runtime settings


def test_set_num_threads_errors():
    before = ops.get_num_threads()
    try:
        with raises(ValueError, "set_num_threads()", "positive integer", "Received: n=0"):
            ops.set_num_threads(0)
        with raises(ValueError, "set_num_threads()", "Received: n=-2"):
            ops.set_num_threads(-2)
        with raises(ValueError, "set_num_threads()", "at most 256 threads", "Received: n=257"):
            ops.set_num_threads(257)
        with pytest.raises(TypeError):
            ops.set_num_threads(2.0)
        with raises(ValueError, "set_num_threads()", "Received: n=0"):
            pycnn.set_num_threads(0)
        with raises(TypeError, "set_num_threads()", "Received: n=2.0"):
            pycnn.set_num_threads(2.0)
        with raises(TypeError, "set_num_threads()", "Received: n=True"):
            pycnn.set_num_threads(True)
        with raises(TypeError, "set_num_threads()", "Received: n=None"):
            pycnn.set_num_threads(None)
        assert ops.get_num_threads() == before
    finally:
        ops.set_num_threads(before)


def test_set_isa_errors():
    with raises(ValueError, "set_isa()", "'baseline', 'avx2' or 'avx512'", "Received: name='sse2'"):
        ops.set_isa("sse2")
    with pytest.raises(TypeError):
        ops.set_isa(None)
    assert ops.get_isa() == ops.build_info()["isa_active"]


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
    attrs = {"strides": (2, 2), "padding": "same"}
    want = ops.run("conv2d", [x], [w, np.ascontiguousarray(b)], attrs)
    np.testing.assert_array_equal(ops.run("conv2d", [view], [w_f, b], attrs), want)
    np.testing.assert_array_equal(ops.run("conv2d", [x.astype(np.float64)], [w.astype(np.float64),
                                                                             b.astype(np.float64)], attrs), want)
    G = rng.standard_normal(want.shape).astype(np.float32)
    G_view = np.ascontiguousarray(np.transpose(G, (1, 0, 2, 3))).transpose(1, 0, 2, 3)
    assert not G_view.flags.c_contiguous
    a_call = make_call("conv2d", [view], [w_f, b], attrs)
    c_call = make_call("conv2d", [x], [w, np.ascontiguousarray(b)], attrs)
    _, a_tape = a_call.forward([view])
    _, c_tape = c_call.forward([x])
    (a_dx,), a_dp = a_call.backward(a_tape, G_view)
    (c_dx,), c_dp = c_call.backward(c_tape, G)
    for a, c in zip([a_dx] + a_dp, [c_dx] + c_dp):
        np.testing.assert_array_equal(a, c)

    pool = {"pool_size": (2, 2), "strides": (1, 1), "padding": "same"}
    np.testing.assert_array_equal(ops.run("maxpool2d", [view], attrs=pool), ops.run("maxpool2d", [x], attrs=pool))
    a_call, c_call = make_call("maxpool2d", [view], [], pool), make_call("maxpool2d", [x], [], pool)
    Gp = rng.standard_normal(ops.run("maxpool2d", [x], attrs=pool).shape).astype(np.float32)
    np.testing.assert_array_equal(a_call.backward(a_call.forward([view])[1], Gp[:, ::-1].copy()[:, ::-1])[0][0],
                                  c_call.backward(c_call.forward([x])[1], Gp)[0][0])
    avg = {"pool_size": (3, 3), "strides": (2, 2)}
    np.testing.assert_array_equal(ops.run("avgpool2d", [view], attrs=avg), ops.run("avgpool2d", [x], attrs=avg))
    for act in ("softmax", "tanh"):
        np.testing.assert_array_equal(ops.run("activation", [view], attrs={"activation": act}),
                                      ops.run("activation", [x], attrs={"activation": act}))

    flat_view = big[::2, 1, :, :3].reshape(2, -1)[:, ::-1]  # (2, 39), negative stride
    assert not flat_view.flags.c_contiguous
    wd = rng.standard_normal((39, 7)).astype(np.float32)
    np.testing.assert_array_equal(ops.run("dense", [flat_view], [np.asfortranarray(wd), None]),
                                  ops.run("dense", [np.ascontiguousarray(flat_view)], [wd, None]))
    z = rng.standard_normal((8, 5)).astype(np.float32)
    labels = np.arange(16)[::2] % 5  # strided labels
    want = ops.loss(CE, z, np.ascontiguousarray(labels))
    got = ops.loss(CE, np.asfortranarray(z), labels)
    assert got[:2] == want[:2]
    np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_, np.float16, np.float64, ">f4"])
def test_integer_and_other_float_dtypes_are_converted(dtype):
    rng = np.random.default_rng(4)
    x_int = rng.integers(0, 2 if dtype == np.bool_ else 5, (2, 6, 5, 3)).astype(dtype)
    x32 = x_int.astype(np.float32)  # small integers: exactly representable in every dtype above
    w = rng.integers(-2, 3, (2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(ops.run("conv2d", [x_int], [w, None]), ops.run("conv2d", [x32], [w, None]))
    np.testing.assert_array_equal(ops.run("maxpool2d", [x_int]), ops.run("maxpool2d", [x32]))
    np.testing.assert_array_equal(ops.run("activation", [x_int], attrs={"activation": "relu"}), x32)
    got = ops.run("activation", [x_int], attrs={"activation": "softmax"})
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ops.run("activation", [x32], attrs={"activation": "softmax"}))


def test_array_likes_are_accepted():
    np.testing.assert_array_equal(ops.run("activation", [[[1.0, 2.0, 3.0]]], attrs={"activation": "softmax"}),
                                  ops.run("activation", [np.array([[1, 2, 3]], np.float32)],
                                          attrs={"activation": "softmax"}))
    loss, hits, _ = ops.loss(CE, [[0.0, 1.0]], [1])
    assert loss == pytest.approx(oracle.sparse_softmax_crossentropy([[0.0, 1.0]], [1])[0], rel=1e-6) and hits == 1
