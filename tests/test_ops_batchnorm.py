"""The batchnorm op (pycnn.ops) against the float64 oracle (whose training-mode backward is
the textbook chain rule through the batch mean and variance, checked by finite differences
in test_oracle.py): both modes, with and without gamma / beta, every activation, and the
moving statistics a committed training step writes. The batch mean and variance are not
returned: they show through commit with momentum 0 (the moving statistics become them) and
through the normalised output. Layer and model behaviour are in test_batchnorm.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import check_backward, check_forward, check_spot_fd, f32, make_call
from pycnn import ops

pytestmark = pytest.mark.usefixtures("isa")

# The training-mode output divides by sqrt(var + eps) computed in float32 from float32 sums
# over the batch: a few ulps more than a plain matmul, hence 2e-4 (and 2e-5 absolute).
TOL = dict(rtol=2e-4, atol=2e-5)
GRAD_TOL = dict(rtol=2e-4, atol=2e-4, scale_atol=True)


def _data(rng, shape, loc=0.0, scale=1.0):
    return f32(rng.standard_normal(shape) * scale + loc)


def _params(rng, C, gamma=True, beta=True):
    return [_data(rng, C) if gamma else None, _data(rng, C) if beta else None, _data(rng, C),
            f32(rng.random(C) + 0.2)]


SHAPES = [(5, 1), (7, 3), (2, 4, 4, 6), (3, 5, 5, 7), (2, 3, 3, 64), (2, 2, 3, 65), (1, 1, 1, 130),
          (64, 9, 9, 6), (1, 4), (4, 3, 5)]
AFFINE = [(True, True), (False, True), (True, False), (False, False)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("affine", AFFINE, ids=lambda a: f"gamma{int(a[0])}-beta{int(a[1])}")
@pytest.mark.parametrize("training", [1, 0])
def test_batchnorm_matches_the_oracle(shape, affine, training, rng):
    x = _data(rng, shape, loc=0.7, scale=1.5)
    params = _params(rng, shape[-1], *affine)
    attrs = {"training": training, "epsilon": 1e-3}
    check_forward("batchnorm", [x], params, attrs, tol=TOL)
    check_backward("batchnorm", [x], params, attrs, rng, input_tol=GRAD_TOL, param_tol=GRAD_TOL)


@pytest.mark.parametrize("activation", oracle.ACTIVATIONS)
@pytest.mark.parametrize("training", [1, 0])
def test_batchnorm_activation(activation, training, rng):
    x = _data(rng, (6, 3, 3, 5), loc=0.5)
    params = _params(rng, 5)
    attrs = {"training": training, "activation": activation}
    check_forward("batchnorm", [x], params, attrs, tol=TOL)
    check_backward("batchnorm", [x], params, attrs, rng, input_tol=GRAD_TOL, param_tol=GRAD_TOL)


@pytest.mark.parametrize("trained,input_grads", [([False, False, False, False], True),
                                                 ([True, False, False, False], False),
                                                 ([False, True, False, False], True)])
@pytest.mark.parametrize("training", [1, 0])
def test_batchnorm_backward_of_a_subset(trained, input_grads, training, rng):
    x = _data(rng, (4, 3, 3, 6))
    check_backward("batchnorm", [x], _params(rng, 6), {"training": training}, rng, trained=trained,
                   input_grads=input_grads, input_tol=GRAD_TOL, param_tol=GRAD_TOL)


def _commit(x, params, attrs):
    call = make_call("batchnorm", [x], params, attrs)
    out, tape = call.forward([x])
    call.commit(tape)
    return out


@pytest.mark.parametrize("shape", [(6, 3, 3, 2), (33, 7, 7, 5), (2, 130)], ids=str)
def test_commit_with_momentum_zero_writes_the_batch_moments(shape, rng):
    x = _data(rng, shape, loc=2.0, scale=3.0)
    params = _params(rng, shape[-1])
    _commit(x, params, {"training": 1, "momentum": 0.0})
    mean, var = oracle.batch_moments(x)
    oracle.assert_close(params[2], mean, name="moving_mean", **TOL)
    oracle.assert_close(params[3], var, name="moving_variance", **TOL)


@pytest.mark.parametrize("momentum", [0.9, 0.99, 1.0])
def test_commit_moves_the_statistics_as_keras(momentum, rng):
    x = _data(rng, (6, 3, 3, 4), loc=-1.0, scale=2.0)
    params = _params(rng, 4)
    before = [p.copy() for p in params]
    _commit(x, params, {"training": 1, "momentum": momentum})
    mean, var = oracle.batch_moments(x)
    oracle.assert_close(params[2], oracle.moving_average(before[2], mean, momentum), **TOL)
    oracle.assert_close(params[3], oracle.moving_average(before[3], var, momentum), **TOL)
    for k in (0, 1):  # gamma and beta are read, never written
        np.testing.assert_array_equal(params[k], before[k])


def test_forward_alone_and_inference_leave_the_statistics_alone(rng):
    x = _data(rng, (5, 4, 4, 3), loc=1.0)
    params = _params(rng, 3)
    before = [p.copy() for p in params]
    call = make_call("batchnorm", [x], params, {"training": 1})
    call.forward([x])                     # no commit: nothing written
    _commit(x, params, {"training": 0})   # inference: commit writes nothing
    ops.run("batchnorm", [x], params, {"training": 1})
    for a, b in zip(before, params):
        np.testing.assert_array_equal(a, b)


def test_training_output_is_normalised_by_the_batch_moments(rng):
    x = _data(rng, (16, 5, 5, 3), loc=4.0, scale=0.5)
    out = ops.run("batchnorm", [x], [None, None, np.zeros(3, np.float32), np.ones(3, np.float32)],
                  {"training": 1, "epsilon": 1e-3})
    rows = out.reshape(-1, 3).astype(np.float64)
    _, var = oracle.batch_moments(x)
    np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(rows.var(axis=0), var / (var + 1e-3), rtol=1e-4)


def test_variance_of_data_far_from_zero_is_exact(rng):
    # A one-pass E[x^2] - E[x]^2 in float32 would return garbage (or a negative variance) here.
    x = _data(rng, (256, 4, 4, 3), loc=1000.0, scale=0.01)
    params = [None, None, np.zeros(3, np.float32), np.ones(3, np.float32)]
    _commit(x, params, {"training": 1, "momentum": 0.0})
    mean, var = oracle.batch_moments(x)
    oracle.assert_close(params[3], var, rtol=1e-3, atol=0.0)
    oracle.assert_close(params[2], mean, rtol=1e-6, atol=0.0)


def test_results_do_not_depend_on_the_thread_count(rng):
    """The batch moments are summed across threads: 1, 2 and 3 threads agree, outputs,
    gradients and the committed statistics."""
    x, dout = _data(rng, (33, 7, 7, 5)), _data(rng, (33, 7, 7, 5))
    before = ops.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            ops.set_num_threads(threads)
            params = [_data(np.random.default_rng(1), 5), None, np.zeros(5, np.float32), np.ones(5, np.float32)]
            call = make_call("batchnorm", [x], params, {"training": 1, "momentum": 0.5})
            out, tape = call.forward([x])
            (dinp,), (dgamma, _, _, _) = call.backward(tape, dout)
            call.commit(tape)
            results.append((out, dinp, dgamma, params[2].copy(), params[3].copy()))
    finally:
        ops.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [1, 0])
@pytest.mark.parametrize("activation", ["linear", "tanh", "softmax"])
def test_float32_finite_difference_spot_check(training, activation, rng):
    x = _data(rng, (4, 3, 3, 3), loc=0.5)
    check_spot_fd("batchnorm", [x], _params(rng, 3), {"training": training, "activation": activation}, rng)
