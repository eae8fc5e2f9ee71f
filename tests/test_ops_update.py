"""The update components (pycnn.ops.apply_update: 'adam', 'sgd') against the float64 oracle:
in place on every weight and its slots, several steps, sizes that reach the vector loops'
tails. Their errors are in test_ops_errors.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from op_harness import f32
from pycnn import ops

SIZES = [1, 7, 16, 33, 1000]


def test_registered_updates_describe_their_hyper_parameters_and_slots():
    updates = ops.updates()
    assert updates["adam"]["hyper"] == ["alpha", "beta_1", "beta_2", "epsilon"] and updates["adam"]["slots"] == 2
    assert updates["sgd"]["hyper"] == ["learning_rate", "momentum", "nesterov"] and updates["sgd"]["slots"] == 1


def test_adam_matches_the_oracle_over_several_steps(rng):
    weights = [f32(rng.standard_normal(n)) for n in SIZES]
    slots = [[np.zeros(n, np.float32), np.zeros(n, np.float32)] for n in SIZES]
    want = [(w.astype(np.float64), np.zeros(n), np.zeros(n)) for w, n in zip(weights, SIZES)]
    live = [w for w in weights]
    for step in range(1, 4):
        grads = [f32(rng.standard_normal(n)) for n in SIZES]
        alpha = 0.01 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        ops.apply_update("adam", [alpha, 0.9, 0.999, 1e-7], weights, grads, slots)
        want = [oracle.adam_update(w, m, v, g, alpha, 0.9, 0.999, 1e-7) for (w, m, v), g in zip(want, grads)]
    # 1 - beta_2 is computed in float32 (as Keras's float32 variables do): 1 - 0.999f is
    # 1.00005e-3, a 5e-5 relative difference in v that the oracle's float64 does not have.
    for w, l, (m, v), (rw, rm, rv) in zip(weights, live, slots, want):
        assert w is l and w.dtype == np.float32  # in place
        np.testing.assert_allclose(m, rm, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(v, rv, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum,nesterov", [(0.0, 0), (0.9, 0), (0.9, 1), (0.5, 1)])
def test_sgd_matches_the_oracle_over_several_steps(momentum, nesterov, rng):
    weights = [f32(rng.standard_normal(n)) for n in SIZES]
    velocity = [f32(rng.standard_normal(n) * 0.1) for n in SIZES]
    want = [(w.astype(np.float64), v.astype(np.float64)) for w, v in zip(weights, velocity)]
    for _ in range(3):
        grads = [f32(rng.standard_normal(n)) for n in SIZES]
        ops.apply_update("sgd", [0.05, momentum, nesterov], weights, grads, [[v] for v in velocity])
        want = [oracle.sgd_update(w, v, g, 0.05, momentum, nesterov) for (w, v), g in zip(want, grads)]
    for w, v, (rw, rv) in zip(weights, velocity, want):
        np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, rv, rtol=1e-5, atol=1e-6)  # momentum 0: the velocity is left alone


def test_updates_accept_array_like_gradients(rng):
    w = f32(rng.standard_normal(5))
    w2 = w.copy()
    g = rng.standard_normal(5)
    ops.apply_update("sgd", [0.1, 0.0, 0], [w], [g.tolist()], [[np.zeros(5, np.float32)]])
    ops.apply_update("sgd", [0.1, 0.0, 0], [w2], [f32(g)], [[np.zeros(5, np.float32)]])
    np.testing.assert_array_equal(w, w2)


def test_no_weights_is_a_no_op():
    ops.apply_update("adam", [0.1, 0.9, 0.999, 1e-7], [], [], [])
