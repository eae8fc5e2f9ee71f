"""Checks of the float64 NumPy oracle itself (tests/oracle), independent of the C++ core.

Forward: window arithmetic by hand, convolutions and pooling against direct scalar loops,
the lecture's worked examples, and (when importable) PyTorch. Backward: central finite
differences (eps=1e-6, normwise relative error below 1e-6) of loss = sum(out * G) with a
random upstream gradient G, for every op kind through oracle.forward / oracle.backward, on
tiny shapes chosen to avoid kinks (distinct max-pool values, ReLU pre-activations away
from 0). Also: the oracle describes the same ops (inputs, parameters, attribute defaults,
activation names) as the C++ registry, so a new op cannot go without an oracle.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle as ref
from op_harness import away_from_kinks
from pycnn import ops

EPS = 1e-6
TOL = 1e-6


def fd_check(loss, arrays, grads, names):
    """Finite-difference every array in ``arrays`` and compare with the analytic ``grads``."""
    ref.fd_check(loss, arrays, grads, names, eps=EPS, tol=TOL)


# ----------------------------------------------------------------------------- the registry


def test_every_registered_op_has_an_oracle_with_the_same_contract():
    registered = ops.registered_ops()
    assert sorted(registered) == sorted(ref.OPS)
    for kind, schema in registered.items():
        mine = ref.OPS[kind]
        assert schema.inputs == mine.inputs, kind
        assert tuple(p.name for p in schema.params) == mine.params, kind
        assert tuple(p.name for p in schema.params if p.state) == mine.state, kind
        assert {a.name for a in schema.attrs} == set(mine.attrs), kind
        for a in schema.attrs:
            default = mine.attrs[a.name]
            if a.required:
                assert default is ref.REQUIRED, (kind, a.name)
            else:
                assert (list(default) if isinstance(default, tuple) else default) == a.default, (kind, a.name)
    assert sorted(ops.activations()) == sorted(ref.ACTIVATIONS)
    assert sorted(ops.losses()) == ["sparse_softmax_crossentropy"]
    assert sorted(ops.updates()) == ["adam", "sgd"]


# ----------------------------------------------------------------------------- window arithmetic


@pytest.mark.parametrize("in_size,k,s,expected", [
    (5, 3, 1, (1, 1)),
    (5, 2, 1, (0, 1)),   # even kernel: the odd pixel goes after (bottom/right)
    (7, 3, 2, (1, 1)),   # out 4: (4-1)*2 + 3 - 7 = 2
    (8, 3, 2, (0, 1)),   # out 4: (4-1)*2 + 3 - 8 = 1
    (3, 5, 1, (2, 2)),   # window larger than the input
    (9, 2, 3, (0, 0)),   # stride > window: no padding needed
    (32, 5, 1, (2, 2)),
    (1, 1, 1, (0, 0)),
])
def test_same_padding(in_size, k, s, expected):
    assert ref.same_padding(in_size, k, s) == expected


@pytest.mark.parametrize("in_size,k,s,padding,expected", [
    (32, 5, 1, "valid", 28), (32, 5, 1, "same", 32), (7, 2, 2, "valid", 3), (7, 2, 2, "same", 4),
    (5, 5, 1, "valid", 1), (6, 3, 4, "valid", 1), (6, 3, 4, "same", 2), (4, 5, 1, "valid", 0),
])
def test_output_size(in_size, k, s, padding, expected):
    assert ref.output_size(in_size, k, s, padding) == expected


def test_dilated_geometry():
    # 3 taps 2 apart cover 5 pixels: 'valid' on 9 gives 5; 'same' pads (5 - 1) = 4 as 2 + 2
    assert ref.geometry(9, 9, 3, 3, 1, 1, "valid", 2, 2) == (5, 5, 0, 0, 0, 0)
    assert ref.geometry(9, 8, 3, 2, 1, 1, "same", 2, 3) == (9, 8, 2, 2, 1, 2)
    with pytest.raises(ValueError, match="output size would be"):
        ref.geometry(4, 4, 3, 3, 1, 1, "valid", 2, 2)


# ----------------------------------------------------------------------------- forward vs direct loops


def conv_direct(x, w, b, strides, padding, dilation=(1, 1), groups=1):
    """conv2d by its scalar definition, nested loops, zero padding by bounds checks."""
    N, H, W, C = x.shape
    KH, KW, Cg, F = w.shape
    SH, SW = strides
    DH, DW = dilation
    EKH, EKW = (KH - 1) * DH + 1, (KW - 1) * DW + 1
    OH, OW = ref.output_size(H, EKH, SH, padding), ref.output_size(W, EKW, SW, padding)
    PT = ref.same_padding(H, EKH, SH)[0] if padding == "same" else 0
    PL = ref.same_padding(W, EKW, SW)[0] if padding == "same" else 0
    Fg = F // groups
    out = np.zeros((N, OH, OW, F))
    for n, oh, ow, f in itertools.product(range(N), range(OH), range(OW), range(F)):
        s = 0.0 if b is None else b[f]
        g = f // Fg
        for kh, kw, c in itertools.product(range(KH), range(KW), range(Cg)):
            ih, iw = oh * SH + kh * DH - PT, ow * SW + kw * DW - PL
            if 0 <= ih < H and 0 <= iw < W:
                s += x[n, ih, iw, g * Cg + c] * w[kh, kw, c, f]
        out[n, oh, ow, f] = s
    return out


CONV_TINY = [
    # N, H, W, C, KH, KW, F, strides, padding
    (1, 4, 4, 1, 2, 2, 1, (1, 1), "valid"),
    (2, 5, 4, 2, 3, 3, 2, (1, 1), "valid"),
    (2, 6, 5, 2, 3, 2, 3, (2, 1), "valid"),
    (2, 5, 6, 2, 2, 2, 2, (1, 1), "same"),
    (1, 5, 4, 3, 4, 3, 2, (2, 2), "same"),
    (2, 3, 2, 1, 5, 5, 2, (1, 1), "same"),
    (1, 4, 5, 3, 1, 1, 2, (2, 2), "valid"),
]
CONV_IDS = ["x".join(map(str, c[:7])) + f"-s{c[7][0]}{c[7][1]}-{c[8]}" for c in CONV_TINY]


@pytest.mark.parametrize("case", CONV_TINY, ids=CONV_IDS)
def test_conv_forward_matches_direct_loops(case, rng):
    N, H, W, C, KH, KW, F, strides, padding = case
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((KH, KW, C, F))
    b = rng.standard_normal(F)
    got = ref.conv2d_forward(x, w, b, strides, padding)
    np.testing.assert_allclose(got, conv_direct(x, w, b, strides, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,W,C,KH,KW,F,strides,padding,dilation,groups", [
    (7, 6, 4, 3, 3, 6, (1, 1), "valid", (2, 2), 2),
    (6, 7, 6, 2, 3, 3, (1, 1), "same", (3, 2), 3),
    (8, 7, 4, 3, 2, 8, (2, 1), "same", (1, 2), 4),
    (5, 5, 2, 3, 3, 4, (2, 2), "same", (2, 2), 1),
])
def test_dilated_grouped_conv_and_depthwise_match_direct_loops(H, W, C, KH, KW, F, strides, padding, dilation,
                                                               groups, rng):
    x = rng.standard_normal((2, H, W, C))
    w = rng.standard_normal((KH, KW, C // groups, F))
    b = rng.standard_normal(F)
    np.testing.assert_allclose(ref.conv2d_forward(x, w, b, strides, padding, dilation_rate=dilation, groups=groups),
                               conv_direct(x, w, b, strides, padding, dilation, groups), rtol=1e-12, atol=1e-12)
    # depthwise with multiplier M is the grouped conv with groups = C on the kernel reshaped to
    # (KH, KW, 1, C*M): output channel c*M + m is filter c*M + m of group c (Keras's order)
    M = 2
    dw = rng.standard_normal((KH, KW, C, M))
    db = rng.standard_normal(C * M)
    np.testing.assert_allclose(ref.depthwise_conv2d_forward(x, dw, db, strides, padding, dilation),
                               conv_direct(x, dw.reshape(KH, KW, 1, C * M), db, strides, padding, dilation, C),
                               rtol=1e-12, atol=1e-12)
    pw = rng.standard_normal((1, 1, C * M, 3))
    np.testing.assert_allclose(ref.separable_conv2d_forward(x, dw, pw, None, strides, padding, dilation),
                               conv_direct(conv_direct(x, dw.reshape(KH, KW, 1, C * M), None, strides, padding,
                                                       dilation, C), pw, None, (1, 1), "valid"),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,W,pool,strides,padding", [
    (4, 4, (2, 2), None, "valid"), (5, 7, (2, 2), None, "valid"), (5, 6, (3, 3), (1, 1), "valid"),
    (5, 5, (2, 3), (2, 1), "same"), (4, 6, (3, 2), (2, 2), "same"), (3, 3, (4, 4), (1, 1), "same"),
])
def test_pool_forward_matches_direct_loops(H, W, pool, strides, padding, rng):
    N, C = 2, 3
    x = rng.permutation(N * H * W * C).reshape(N, H, W, C) - 20.0  # distinct, many negative
    KH, KW = pool
    SH, SW = pool if strides is None else strides
    OH, OW = ref.output_size(H, KH, SH, padding), ref.output_size(W, KW, SW, padding)
    PT = ref.same_padding(H, KH, SH)[0] if padding == "same" else 0
    PL = ref.same_padding(W, KW, SW)[0] if padding == "same" else 0
    mx, av = np.empty((N, OH, OW, C)), np.empty((N, OH, OW, C))
    for n, oh, ow, c in itertools.product(range(N), range(OH), range(OW), range(C)):
        vals = [x[n, ih, iw, c] for ih in range(oh * SH - PT, oh * SH - PT + KH)
                for iw in range(ow * SW - PL, ow * SW - PL + KW) if 0 <= ih < H and 0 <= iw < W]
        mx[n, oh, ow, c], av[n, oh, ow, c] = max(vals), sum(vals) / len(vals)
    out = ref.maxpool2d_forward(x, pool, strides, padding)
    argmax = ref.maxpool2d_argmax(x, pool, strides, padding)
    np.testing.assert_array_equal(out, mx)
    np.testing.assert_array_equal(x.reshape(N, -1)[np.arange(N)[:, None], argmax.reshape(N, -1)],
                                  out.reshape(N, -1))
    np.testing.assert_allclose(ref.avgpool2d_forward(x, pool, strides, padding), av, rtol=1e-13)


def test_maxpool_tie_goes_to_first_in_row_major_scan():
    x = np.array([[0, 5, 5], [5, 1, 5], [2, 5, 5]], dtype=np.float64).reshape(1, 3, 3, 1)
    out = ref.maxpool2d_forward(x, 2, strides=1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5, 5], [5, 5]])
    # windows: (0,0)->first 5 at (0,1); (0,1)->(0,1); (1,0)->(1,0); (1,1)->(1,2)
    np.testing.assert_array_equal(ref.maxpool2d_argmax(x, 2, strides=1)[0, :, :, 0], [[1, 1], [3, 5]])
    dinp = ref.maxpool2d_backward(np.ones((1, 2, 2, 1)), x, 2, strides=1)
    np.testing.assert_array_equal(dinp[0, :, :, 0], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])
    g = ref.global_maxpool2d_backward(np.ones((1, 1)), x)
    np.testing.assert_array_equal(g[0, :, :, 0], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_softmax_is_stable_for_large_logits():
    np.testing.assert_allclose(ref.softmax_forward([1.0, 2.0, 3.0]),
                               [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    np.testing.assert_allclose(ref.softmax_forward([1000.0, 1001.0, 1002.0]),
                               [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    loss, _ = ref.softmax_crossentropy_forward([[1000.0, 0.0]], [1])
    assert loss == pytest.approx(1000.0)
    loss, hits, d = ref.sparse_softmax_crossentropy([[1000.0, 0.0]], [1])
    assert loss == pytest.approx(1000.0) and hits == 0
    np.testing.assert_allclose(d, [[1.0, -1.0]])


def test_sparse_softmax_crossentropy_value_hits_and_weights(rng):
    z = rng.standard_normal((5, 3))
    z[3] = [2.0, 2.0, 0.0]  # a tie: the first maximum (class 0) is the prediction
    labels = np.array([0, 2, 1, 1, 2])
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0])
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    per_row = -np.log(probs[np.arange(5), labels])
    loss, hits, d = ref.sparse_softmax_crossentropy(z, labels, w)
    assert loss == pytest.approx(np.sum(w * per_row) / 5, rel=1e-12)
    assert hits == sum(int(np.argmax(z[r]) == labels[r]) for r in range(5))
    assert ref.sparse_softmax_crossentropy(z, labels)[0] == pytest.approx(np.mean(per_row), rel=1e-12)
    fd_check(lambda: ref.sparse_softmax_crossentropy(z, labels, w)[0], [z], [d], ["dlogits"])


torch = None
try:  # optional cross-check only; torch is never a pycnn dependency
    import torch
    import torch.nn.functional as torch_f
except Exception:  # pragma: no cover - depends on the machine
    torch = None


@pytest.mark.skipif(torch is None, reason="torch is not importable")
@pytest.mark.parametrize("case", CONV_TINY + [(3, 9, 8, 4, 3, 3, 5, (2, 2), "same"),
                                              (2, 10, 11, 3, 4, 2, 4, (3, 2), "same")])
def test_conv_and_pool_forward_match_torch(case, rng):
    N, H, W, C, KH, KW, F, strides, padding = case
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((KH, KW, C, F))
    b = rng.standard_normal(F)
    PT, PB = ref.same_padding(H, KH, strides[0]) if padding == "same" else (0, 0)
    PL, PR = ref.same_padding(W, KW, strides[1]) if padding == "same" else (0, 0)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    conv = torch_f.conv2d(torch_f.pad(xt, (PL, PR, PT, PB)), torch.from_numpy(w).permute(3, 2, 0, 1),
                          torch.from_numpy(b), stride=strides)
    np.testing.assert_allclose(ref.conv2d_forward(x, w, b, strides, padding),
                               conv.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-10)
    # pooling with the same geometry: -inf padding for max; for avg, sum / number of real elements
    xp = torch_f.pad(xt, (PL, PR, PT, PB), value=-np.inf)
    mx = torch_f.max_pool2d(xp, (KH, KW), strides)
    np.testing.assert_array_equal(ref.maxpool2d_forward(x, (KH, KW), strides, padding),
                                  mx.permute(0, 2, 3, 1).numpy())
    total = torch_f.avg_pool2d(torch_f.pad(xt, (PL, PR, PT, PB)), (KH, KW), strides) * (KH * KW)
    count = torch_f.avg_pool2d(torch_f.pad(torch.ones_like(xt), (PL, PR, PT, PB)), (KH, KW), strides) * (KH * KW)
    np.testing.assert_allclose(ref.avgpool2d_forward(x, (KH, KW), strides, padding),
                               (total / count).permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- finite differences, every op


def _distinct(rng, shape, spacing=0.1):
    """Values ``spacing`` apart plus small noise: no max-pool ties, and a 1e-6 step never changes a winner."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * spacing - n * spacing / 2 + rng.uniform(0, spacing / 10, n)).reshape(shape)


def _conv_case(N, H, W, C, KH, KW, F, strides, padding, dilation=(1, 1), groups=1, bias=True):
    def draw(r):
        return [r.standard_normal((N, H, W, C))], [r.standard_normal((KH, KW, C // groups, F)) * 0.5,
                                                   r.standard_normal(F) * 0.5 if bias else None]
    return draw, dict(strides=strides, padding=padding, dilation_rate=dilation, groups=groups)


def _fd_cases():
    cases = []
    for c, cid in zip(CONV_TINY, CONV_IDS):
        cases.append((f"conv2d-{cid}", "conv2d", *_conv_case(*c)))
    cases += [
        ("conv2d-dilated-groups2-same", "conv2d", *_conv_case(2, 6, 5, 6, 3, 2, 6, (1, 1), "same", (2, 1), 2)),
        ("conv2d-groups3-stride21", "conv2d", *_conv_case(2, 6, 5, 6, 3, 2, 6, (2, 1), "valid", (1, 1), 3)),
        ("conv2d-groups6-dilated-nobias", "conv2d", *_conv_case(1, 6, 5, 6, 3, 2, 6, (1, 1), "valid", (1, 2), 6,
                                                                False)),
    ]
    for M, strides, padding, dilation in [(1, (1, 1), "same", (2, 2)), (2, (2, 2), "same", (1, 1)),
                                          (3, (1, 1), "valid", (2, 1))]:
        def dw(r, M=M):
            return [r.standard_normal((2, 6, 7, 3))], [r.standard_normal((3, 2, 3, M)), r.standard_normal(3 * M)]

        def sep(r, M=M):
            return [r.standard_normal((2, 6, 7, 3))], [r.standard_normal((3, 2, 3, M)),
                                                       r.standard_normal((1, 1, 3 * M, 4)), r.standard_normal(4)]
        attrs = dict(strides=strides, padding=padding, dilation_rate=dilation)
        cases.append((f"depthwise-M{M}-{padding}", "depthwise_conv2d", dw, attrs))
        cases.append((f"separable-M{M}-{padding}", "separable_conv2d", sep, attrs))
    for rank_shape in [(3, 5), (2, 3, 5)]:
        for bias in (True, False):
            def dense(r, s=rank_shape, bias=bias):
                return [r.standard_normal(s)], [r.standard_normal((5, 4)), r.standard_normal(4) if bias else None]
            cases.append((f"dense-{len(rank_shape)}d-bias{int(bias)}", "dense", dense, {}))
    for training in (0, 1):
        for gamma, beta in [(True, True), (False, True), (True, False), (False, False)]:
            def bn(r, gamma=gamma, beta=beta):
                return [r.standard_normal((3, 2, 2, 3)) * 2 + 0.5], [
                    r.standard_normal(3) if gamma else None, r.standard_normal(3) if beta else None,
                    r.standard_normal(3), r.random(3) + 0.5]
            cases.append((f"batchnorm-train{training}-g{int(gamma)}b{int(beta)}", "batchnorm", bn,
                          dict(training=training)))
    pools = [(4, 4, (2, 2), None, "valid"), (5, 7, (2, 2), None, "valid"), (5, 6, (3, 3), (1, 1), "valid"),
             (6, 5, (3, 2), (2, 3), "valid"), (5, 5, (2, 2), (2, 2), "same"), (5, 6, (3, 3), (2, 1), "same"),
             (3, 3, (4, 4), (1, 1), "same"), (2, 3, (2, 3), None, "valid")]
    for H, W, pool, strides, padding in pools:
        attrs = dict(pool_size=pool, strides=pool if strides is None else strides, padding=padding)
        pid = f"{H}x{W}-p{pool[0]}{pool[1]}-s{attrs['strides'][0]}{attrs['strides'][1]}-{padding}"
        cases.append((f"maxpool-{pid}", "maxpool2d", lambda r, H=H, W=W: ([_distinct(r, (2, H, W, 2))], []), attrs))
        cases.append((f"avgpool-{pid}", "avgpool2d", lambda r, H=H, W=W: ([r.standard_normal((2, H, W, 2))], []),
                      attrs))
    for keepdims in (0, 1):
        cases.append((f"global_max-k{keepdims}", "global_maxpool2d",
                      lambda r: ([_distinct(r, (2, 3, 4, 5))], []), dict(keepdims=keepdims)))
        cases.append((f"global_avg-k{keepdims}", "global_avgpool2d",
                      lambda r: ([r.standard_normal((2, 3, 4, 5))], []), dict(keepdims=keepdims)))
    for shape in [(5,), (3, 4), (2, 3, 4)]:
        cases.append((f"activation-{len(shape)}d", "activation",
                      lambda r, s=shape: ([r.uniform(-3, 3, (2,) + s)], []), {}))
    cases += [
        ("leaky_relu-default", "leaky_relu", lambda r: ([r.standard_normal((2, 3, 3, 2))], []), {}),
        ("leaky_relu-1.5", "leaky_relu", lambda r: ([r.standard_normal((2, 5))], []), dict(negative_slope=1.5)),
        ("add-3", "add", lambda r: ([r.standard_normal((2, 3, 4)) for _ in range(3)], []), {}),
        ("multiply-3", "multiply", lambda r: ([r.standard_normal((2, 3, 4)) for _ in range(3)], []), {}),
        ("flatten", "flatten", lambda r: ([r.standard_normal((2, 3, 2, 2))], []), {}),
        ("identity", "identity", lambda r: ([r.standard_normal((2, 3, 2))], []), {}),
        ("reshape", "reshape", lambda r: ([r.standard_normal((2, 3, 2, 2))], []), dict(target_shape=(-1, 3))),
        ("zero_padding2d", "zero_padding2d", lambda r: ([r.standard_normal((2, 3, 4, 2))], []),
         dict(padding=(1, 2, 0, 1))),
        ("cropping2d", "cropping2d", lambda r: ([r.standard_normal((2, 3, 4, 2))], []), dict(cropping=(1, 0, 1, 2))),
        ("rescaling-per-channel", "rescaling", lambda r: ([r.standard_normal((2, 3, 2, 3))], []),
         dict(scale=(0.5, -2.0, 3.0), offset=(1.0, 0.0, -1.0))),
        ("rescaling-scalar", "rescaling", lambda r: ([r.standard_normal((2, 4))], []), dict(scale=3.0, offset=1.0)),
    ]
    for axis in (0, 1, 2):
        def cat(r, axis=axis):
            shapes = [[2, 3, 2, 2] for _ in range(3)]
            for j, s in enumerate(shapes):
                s[axis + 1] = j + 1
            return [r.standard_normal(s) for s in shapes], []
        cases.append((f"concatenate-axis{axis}", "concatenate", cat, dict(axis=axis)))
    for shape in [(2, 3, 2, 1), (1, 4, 5, 3), (1, 2, 6, 2)]:
        cases.append((f"sobel-{'x'.join(map(str, shape))}", "sobel_edges",
                      lambda r, s=shape: ([r.standard_normal(s)], []), {}))
        for axis in (0, 1):
            cases.append((f"image_gradient{axis}-{'x'.join(map(str, shape))}", "image_gradient",
                          lambda r, s=shape: ([r.standard_normal(s)], []), dict(axis=axis)))
    return cases


FD_CASES = _fd_cases()
WITH_ACTIVATION = ("conv2d", "depthwise_conv2d", "separable_conv2d", "dense", "batchnorm", "activation")


def _expand(cases):
    out = []
    for cid, kind, draw, attrs in cases:
        if kind in WITH_ACTIVATION:
            for act in ref.ACTIVATIONS:
                out.append(pytest.param(kind, draw, dict(attrs, activation=act), id=f"{cid}-{act}"))
        else:
            out.append(pytest.param(kind, draw, attrs, id=cid))
    return out


@pytest.mark.parametrize("kind,draw,attrs", _expand(FD_CASES))
def test_backward_matches_finite_differences(kind, draw, attrs, rng):
    if kind in ("activation", "leaky_relu"):  # element-wise: keep |x| >= 1e-3 away from the kink by hand
        inputs, params = draw(rng)
        inputs = [np.where(np.abs(x) < 1e-3, 0.5, x) for x in inputs]
    else:
        inputs, params = away_from_kinks(rng, draw, kind, attrs)
    out = ref.forward(kind, inputs, params, attrs)
    G = rng.standard_normal(out.shape)
    dinputs, dparams = ref.backward(kind, G, inputs, params, attrs)
    state = ref.OPS[kind].state
    arrays, grads, names = list(inputs), list(dinputs), [f"dinputs[{j}]" for j in range(len(inputs))]
    for name, p, g in zip(ref.OPS[kind].params, params, dparams):
        if p is None or name in state:
            assert g is None, name
            continue
        arrays.append(p)
        grads.append(g)
        names.append(f"d{name}")
    fd_check(lambda: float(np.sum(ref.forward(kind, inputs, params, attrs) * G)), arrays, grads, names)


def test_batchnorm_training_uses_the_batch_moments_and_commit_moves_towards_them(rng):
    x = rng.standard_normal((4, 3, 2, 5)) * 3 + 1
    mean, var = ref.batch_moments(x)
    np.testing.assert_allclose(mean, x.reshape(-1, 5).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, x.reshape(-1, 5).var(axis=0), rtol=1e-12)  # biased, as Keras
    out = ref.batchnorm_forward(x, None, None, np.zeros(5), np.ones(5), 1e-3, training=1)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(ref.moving_average([1.0, 2.0], [3.0, 6.0], 0.75), [1.5, 3.0])


@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_softmax_crossentropy_backward_finite_differences(scale, rng):
    N, K = 5, 4
    z = rng.standard_normal((N, K)) * 2
    labels = rng.integers(0, K, N)
    # the gradient is of scale * sum-loss; scale=None means the mean loss
    factor = 1.0 if scale is None else scale * N

    def loss():
        return factor * ref.softmax_crossentropy_forward(z, labels)[0]

    _, probs = ref.softmax_crossentropy_forward(z, labels)
    fd_check(loss, [z], [ref.softmax_crossentropy_backward(probs, labels, scale)], ["dlogits"])


def test_softmax_crossentropy_value(rng):
    z = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    loss, probs = ref.softmax_crossentropy_forward(z, labels)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(4), labels])), rel=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise"):
        y = ref.activate([-1000.0, 0.0, 1000.0], "sigmoid")
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


def test_activation_gradients_agree_from_the_input_and_from_the_output(rng):
    z = rng.uniform(-3, 3, (4, 5))
    G = rng.standard_normal(z.shape)
    for name in set(ref.ELEMENTWISE) - {"gelu", "gelu_approximate"}:
        np.testing.assert_allclose(ref.activation_backward(G, z, name),
                                   G * ref.activation_grad(ref.activate(z, name), name), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ref.activation_backward(G, z, "softmax"),
                               ref.softmax_backward(G, ref.softmax_forward(z)), rtol=1e-12)
    np.testing.assert_array_equal(ref.activate([-2.0, 0.0, 3.0], "leaky_relu"), [-0.4, 0.0, 3.0])


def test_gelu_values_by_hand():
    # Phi(1) = 0.8413447460685429, Phi(-1) = 1 - Phi(1); the tanh form agrees to ~1e-3
    np.testing.assert_allclose(ref.activate([-1.0, 0.0, 1.0], "gelu"),
                               [-0.15865525393145707, 0.0, 0.8413447460685429], rtol=1e-14)
    np.testing.assert_allclose(ref.activate([-1.0, 1.0, 3.0], "gelu_approximate"),
                               ref.activate([-1.0, 1.0, 3.0], "gelu"), atol=1e-3)
    np.testing.assert_allclose(ref.activate([1.0], "gelu_approximate"),
                               [0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * 1.044715))], rtol=1e-14)


def test_numerical_gradient_on_a_known_function():
    x = np.array([0.5, -1.0, 2.0])
    g = ref.numerical_gradient(lambda: np.sum(x ** 3), x, eps=1e-6)
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, [0.5, -1.0, 2.0])  # restored
    g2 = ref.numerical_gradient(lambda: np.sum(x ** 3), x, eps=1e-6, indices=[(2,), (0,)])
    np.testing.assert_allclose(g2, [12.0, 0.75], rtol=1e-8)


def test_updates_by_hand():
    # Adam's first step from zero moments: m = (1 - b1) g, v = (1 - b2) g^2
    w, m, v = ref.adam_update([1.0, -2.0], [0.0, 0.0], [0.0, 0.0], [0.5, -4.0], 0.1, 0.9, 0.999, 1e-7)
    np.testing.assert_allclose(m, [0.05, -0.4])
    np.testing.assert_allclose(v, [0.00025, 0.016])
    np.testing.assert_allclose(w, [1.0 - 0.1 * 0.05 / (np.sqrt(0.00025) + 1e-7),
                                   -2.0 + 0.1 * 0.4 / (np.sqrt(0.016) + 1e-7)])
    np.testing.assert_allclose(ref.sgd_update([1.0], [0.0], [2.0], 0.1, 0.0, False)[0], [0.8])
    w, vel = ref.sgd_update([1.0], [0.5], [2.0], 0.1, 0.9, False)  # v = 0.45 - 0.2; w += v
    np.testing.assert_allclose((w, vel), ([1.25], [0.25]))
    w, vel = ref.sgd_update([1.0], [0.5], [2.0], 0.1, 0.9, True)   # w += 0.9 v - 0.2
    np.testing.assert_allclose((w, vel), ([1.025], [0.25]))


# ----------------------------------------------------------------------------- the lecture's walk-throughs

LECTURE_X = np.array([[1, 5, 3, 7], [7, 3, 9, 2], [3, 5, 8, 4], [8, 7, 3, 5]], dtype=np.float64).reshape(1, 4, 4, 1)


def test_lecture_max_pooling_walkthrough():
    out = ref.maxpool2d_forward(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[7, 9], [8, 8]])
    assert np.mean((out - 1) ** 2) == 49.5
    dout = 2 * (out - 1) / out.size
    dx = ref.maxpool2d_backward(dout, LECTURE_X, 2, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 3.5, 0], [3.5, 0, 0, 0]])


def test_lecture_average_pooling_walkthrough():
    out = ref.avgpool2d_forward(LECTURE_X, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[4, 5.25], [5.75, 5]])
    assert np.mean((out - 1) ** 2) == 16.40625
    dx = ref.avgpool2d_backward(2 * (out - 1) / out.size, LECTURE_X.shape, 2, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.375, 0.375, 0.53125, 0.53125], [0.375, 0.375, 0.53125, 0.53125],
                                                   [0.59375, 0.59375, 0.5, 0.5], [0.59375, 0.59375, 0.5, 0.5]])


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (2, 3, 2, 1), (1, 4, 5, 3), (1, 2, 6, 2)])
def test_sobel_edges_reference(shape):
    rng = np.random.default_rng(30)
    x = rng.standard_normal(shape)
    out = ref.sobel_edges_forward(x)
    # direct definition at one interior-or-edge pixel with explicit reflection
    N, H, W, C = shape
    r = lambda i, n: -i if i < 0 else (2 * n - 2 - i if i >= n else i)  # noqa: E731
    for (n, y, xx, c) in [(0, 0, 0, 0), (0, H - 1, W - 1, C - 1), (N - 1, H // 2, W // 2, 0)]:
        dy = sum(ref.SOBEL_DY[a, b] * x[n, r(y + a - 1, H), r(xx + b - 1, W), c] for a in range(3) for b in range(3))
        dx = sum(ref.SOBEL_DX[a, b] * x[n, r(y + a - 1, H), r(xx + b - 1, W), c] for a in range(3) for b in range(3))
        np.testing.assert_allclose(out[n, y, xx, c], [dy, dx], rtol=1e-12, atol=1e-12)
    if H == 2 and W == 2:  # rows y - 1 and y + 1 (and columns) reflect onto each other: the map is zero
        np.testing.assert_allclose(out, 0.0, atol=1e-12)
        np.testing.assert_allclose(ref.sobel_edges_backward(rng.standard_normal(out.shape)), 0.0, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 2), (1, 2, 5, 1)])
def test_image_gradient_reference(axis, shape):
    rng = np.random.default_rng(31)
    x = rng.standard_normal(shape)
    out = ref.image_gradient_forward(x, axis)
    if axis == 0:
        assert np.all(out[:, -1] == 0)
        np.testing.assert_array_equal(out[:, :-1], x[:, 1:] - x[:, :-1])
    else:
        assert np.all(out[:, :, -1] == 0)
        np.testing.assert_array_equal(out[:, :, :-1], x[:, :, 1:] - x[:, :, :-1])
    G = rng.standard_normal(out.shape)
    fd_check(lambda: float(np.sum(ref.image_gradient_forward(x, axis) * G)), [x],
             [ref.image_gradient_backward(G, axis)], ["x"])
