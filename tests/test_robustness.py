"""Reproducers of what the hostile-input attack found (kept so they stay fixed), non-finite
losses in long runs, damaged and hostile files, interrupted and resumed runs."""
from __future__ import annotations

import weakref

import numpy as np
import pytest

from pycnn import ops


def _dense_net(w, b, weights=(0, 1)):
    """A one-node network x (N, 3) -> dense -> (N, 2), both parameters trained."""
    return ops.Network([(3,)], [("dense", None, [0], [w, b], {}, list(weights))], [1])


def test_the_network_keeps_every_array_alive_while_it_converts_the_others():
    # Converting a later argument runs __array__, which drops the caller's only references to
    # the first input; the binding must still hold it (else: use after free).
    net = ops.Network([(3,), (3,)], [("add", None, [0, 1], [], {}, [])], [2])
    first = [np.full((1 << 14, 3), 2.0, np.float32)]
    ref = weakref.ref(first[0])
    seen = {}

    class DropsTheOthers:
        def __array__(self, dtype=None, copy=None):
            first[0] = None
            seen["alive"] = ref() is not None
            return np.ones((1 << 14, 3), np.float32)

    (out,) = net.predict([first[0], DropsTheOthers()])
    assert seen["alive"], "the binding let go of an array whose pointer it kept"
    assert ref() is None  # and released it after the call
    np.testing.assert_array_equal(out, 3.0)


@pytest.mark.parametrize("which", ["weights", "m", "v"])
def test_big_endian_buffers_written_in_place_are_refused(which):
    arrays = {k: np.ones(4, np.float32) if k == "weights" else np.zeros(4, np.float32) for k in ("weights", "m", "v")}
    arrays[which] = arrays[which].astype(">f4")
    name = {"weights": r"weights\[0\]", "m": r"slots\[0\]\[0\]", "v": r"slots\[0\]\[1\]"}[which]
    with pytest.raises(TypeError, match=rf"apply_update\(\) expected {name} to be float32 in native byte order.*>f4"):
        ops.apply_update("adam", [0.01, 0.9, 0.999, 1e-7], [arrays["weights"]], [np.ones(4, np.float32)],
                         [[arrays["m"], arrays["v"]]])


def test_big_endian_gradient_buffer_of_the_network_step_is_refused():
    w, b = np.zeros((3, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(TypeError, match=r"train_step\(\) expected grads\[0\] to be float32 in native byte order"):
        _dense_net(w, b).train_step(np.zeros((2, 3), np.float32), np.array([0, 1]), "sparse_softmax_crossentropy",
                                    [np.zeros((3, 2), ">f4"), np.zeros(2, np.float32)])
    with pytest.raises(TypeError, match=r"parameter 0 to be float32 in native byte order"):
        _dense_net(w.astype(">f4"), b)


def test_big_endian_read_only_inputs_are_converted_not_misread():
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(ops.run("image_gradient", [x.astype(">f4")], attrs={"axis": 1}),
                                  ops.run("image_gradient", [x], attrs={"axis": 1}))


def test_one_adam_step_on_native_order_weights_is_right():
    w = np.ones(4, np.float32)
    ops.apply_update("adam", [0.032, 0.9, 0.999, 1e-7], [w], [np.ones(4, np.float32)],
                     [[np.zeros(4, np.float32), np.zeros(4, np.float32)]])
    # alpha is the caller's bias-corrected step size: m = 0.1, v = 0.001 after the first step.
    np.testing.assert_allclose(w, 1 - 0.032 * 0.1 / (np.sqrt(0.001) + 1e-7), rtol=1e-5)


HUGE = 2**63 - 1


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_huge_pool_strides_and_sizes_name_the_argument(padding):
    x = np.ones((1, 5, 5, 1), np.float32)
    kernel = np.ones((2, 2, 1, 1), np.float32)
    for kind, params, attrs, arg in [
            ("maxpool2d", [], {"pool_size": (2, 2), "strides": (HUGE, HUGE)}, "strides"),
            ("avgpool2d", [], {"pool_size": (2, 2), "strides": (1, HUGE)}, "strides"),
            ("maxpool2d", [], {"pool_size": (HUGE, 2), "strides": (1, 1)}, "pool_size"),
            ("conv2d", [kernel, None], {"strides": (HUGE, 1)}, "strides"),
            ("conv2d", [kernel, None], {"dilation_rate": (1, HUGE)}, "dilation_rate"),
            ("depthwise_conv2d", [kernel, None], {"dilation_rate": (HUGE, HUGE)}, "dilation_rate")]:
        with pytest.raises(ValueError, match=rf"expected {arg} of 2 integers in \[1, 2147483647\]"):
            ops.run(kind, [x], params, {**attrs, "padding": padding})
    with pytest.raises(ValueError, match=r"expected padding sizes in \[0, 2147483647\]"):
        ops.run("zero_padding2d", [x], attrs={"padding": (0, HUGE, 0, 0)})
    with pytest.raises(ValueError, match=r"cannot reshape input of shape \(None, 5, 5, 1\)"):
        ops.run("reshape", [x], attrs={"target_shape": (HUGE, HUGE, -1)})


def test_bool_and_non_integer_window_arguments_are_refused():
    x = np.ones((1, 5, 5, 1), np.float32)
    for bad in [(True, True), True, np.bool_(True), (2, 2.0), "2", 2]:
        with pytest.raises(TypeError, match="expected attribute 'pool_size' to be a tuple of integers"):
            ops.run("maxpool2d", [x], attrs={"pool_size": bad})
    for bad in [(2,), (2, 2, 2), (0, 1), (1, -1)]:
        with pytest.raises(ValueError, match=r"expected pool_size of 2 integers"):
            ops.run("maxpool2d", [x], attrs={"pool_size": bad})


def test_numpy_integers_and_the_largest_stride_still_work():
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    out = ops.run("maxpool2d", [x], attrs={"pool_size": (np.int64(2), np.int32(2)), "strides": (2**31 - 1,) * 2,
                                           "padding": "same"})
    assert out.shape == (1, 1, 1, 1) and out[0, 0, 0, 0] == 6.0  # one window: rows/cols 0-1 ('same' pads 0 before)


def test_max_pooling_propagates_nan_like_numpy():
    import oracle as ref

    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    x[0, 1, 1, 0] = np.nan           # inside a window, not its first element
    x[1, 0, 0, 2] = np.nan           # a window's first element
    x[1, 2, 3, 1] = x[1, 3, 2, 1] = np.nan  # two NaNs in one window: the first wins
    call = ops.OpCall(ops.OpSpec("maxpool2d", {}), [x.shape[1:]])
    out, tape = call.forward([x])
    want = ref.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    assert np.isnan(out).sum() == 3
    np.testing.assert_array_equal(out[~np.isnan(out)], want[~np.isnan(want)])
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    (dinp,), _ = call.backward(tape, dout)  # routed to the winner the reference chose, NaN or not
    np.testing.assert_array_equal(dinp, ref.maxpool2d_backward(dout, x, 2).astype(np.float32))


@pytest.mark.parametrize("where", ["activation", "dense"])
def test_relu_backward_passes_nan_gradients_where_the_unit_is_active(where):
    # A NaN or inf gradient reaches the input where relu is active; where it is not, the
    # gradient is 0, as PyTorch's threshold_backward does (TF's dy * (y > 0) would give NaN
    # there, at a 10-15% cost on a LeNet step, measured: not taken).
    x = np.array([[1.0, -1.0, 0.0, 2.0]], np.float32)
    dout = np.array([[np.nan, np.nan, np.inf, 1.0]], np.float32)
    if where == "activation":
        call = ops.OpCall(ops.OpSpec("activation", {"activation": "relu"}), [(4,)])
        _, tape = call.forward([x])
        (d,), _ = call.backward(tape, dout)
    else:  # the fused activation inside dense's backward: the bias gradient is dz summed over the batch
        call = ops.OpCall(ops.OpSpec("dense", {"activation": "relu"}, (np.eye(4, dtype=np.float32),
                                                                     np.zeros(4, np.float32))), [(4,)])
        _, tape = call.forward([x])
        _, (_, dbias) = call.backward(tape, dout)
        d = dbias[None]
    assert np.isnan(d[0, 0]) and d[0, 1] == 0.0 and d[0, 2] == 0.0 and d[0, 3] == 1.0


def test_the_native_step_reports_a_nan_loss_for_a_nan_input():
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    x[2, 3, 3, 0] = np.nan
    w1, b1 = np.full((3, 3, 1, 2), 0.1, np.float32), np.zeros(2, np.float32)
    w2, b2 = np.full((18, 3), 0.1, np.float32), np.zeros(3, np.float32)
    nodes = [("conv2d", None, [0], [w1, b1], {"activation": "relu"}, [0, 1]),
             ("maxpool2d", None, [1], [], {}, []), ("flatten", None, [2], [], {}, []),
             ("dense", None, [3], [w2, b2], {}, [2, 3])]
    grads = [np.zeros_like(a) for a in (w1, b1, w2, b2)]
    loss, _ = ops.Network([(8, 8, 1)], nodes, [4]).train_step(x, np.array([0, 1, 2, 0]),
                                                              "sparse_softmax_crossentropy", grads)
    assert np.isnan(loss)
    assert np.isnan(grads[0]).any()


def test_unvalidated_scalar_arguments_are_refused():
    one = lambda: [np.ones(2, np.float32)]  # noqa: E731
    for hyper, name in [([-1.0, 0.9, 0.999, 1e-7], "alpha"), ([0.01, 2.0**200, 0.999, 1e-7], "beta_1"),
                        ([0.01, 0.9, 1.0, 1e-7], "beta_2"), ([0.01, 0.9, 0.999, -1.0], "epsilon")]:
        with pytest.raises(ValueError, match=rf"apply_update\(\) update 'adam' expected {name} "):
            ops.apply_update("adam", hyper, one(), one(), [one() + one()])
    for hyper in ([float("nan"), 0.9, 0.999, 1e-7], [float("inf"), 0.9, 0.999, 1e-7]):
        with pytest.raises(ValueError, match=r"expected finite hyper-parameters"):
            ops.apply_update("adam", hyper, one(), one(), [one() + one()])
    for hyper, name in [([-0.1, 0.9, 0.0], "learning_rate"), ([0.1, 1.5, 0.0], "momentum"), ([0.1, 0.9, 0.5], "nesterov")]:
        with pytest.raises(ValueError, match=rf"update 'sgd' expected {name} "):
            ops.apply_update("sgd", hyper, one(), one(), [one()])
    with pytest.raises(ValueError, match=r"set_num_threads\(\) supports at most 256 threads. Received: n=1000000"):
        ops.set_num_threads(10**6)
    with pytest.raises(ValueError, match="at most 256"):
        import pycnn
        pycnn.set_num_threads(257)


def test_the_native_step_checks_its_update_hyper_parameters():
    w, b = np.zeros((3, 2), np.float32), np.zeros(2, np.float32)
    slots = [[np.zeros_like(w), np.zeros_like(w)], [np.zeros_like(b), np.zeros_like(b)]]
    with pytest.raises(ValueError, match=r"train_step\(\) update 'adam' expected beta_1 in \[0, 1\)"):
        _dense_net(w, b).train_step(np.zeros((2, 3), np.float32), np.array([0, 1]), "sparse_softmax_crossentropy",
                                    [np.zeros_like(w), np.zeros_like(b)],
                                    update=("adam", [0.01, 1.5, 0.999, 1e-7], [w, b], slots))
    assert not w.any(), "nothing may be written when the arguments are refused"


# ----------------------------------------------------------------------------- long runs: non-finite losses

def _nan_batch_data():
    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 6, 2), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    x[21] = np.nan  # batch 3 (1-based) of 8-sample batches
    return x, y


def _small_model(conv: bool, optimizer):
    import pycnn
    from pycnn import layers

    stack = [layers.Input((6, 6, 2))]
    if conv:
        stack += [layers.Conv2D(3, 3, activation="relu"), layers.MaxPooling2D(2)]
    model = pycnn.Sequential(stack + [layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("native", ["1", "0"])
def test_fit_stops_at_the_first_nan_loss_with_the_last_finite_weights(optimizer, native, monkeypatch):
    import pycnn

    monkeypatch.setenv("PYCNN_NATIVE_STEP", native)
    x, y = _nan_batch_data()
    pycnn.set_random_seed(1)
    model = _small_model(True, optimizer)
    reference = _small_model(True, optimizer)
    reference.set_weights(model.get_weights())
    reference.fit(x[:16], y[:16], batch_size=8, epochs=1, shuffle=False, verbose=0)  # the two finite steps
    with pytest.raises(pycnn.NonFiniteLossError, match=r"epoch 1, step 3 is nan\. The model keeps the weights") as err:
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert (err.value.epoch, err.value.step) == (0, 3)
    assert model.optimizer.iterations == 2
    for a, b in zip(model.get_weights(), reference.get_weights()):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fit_can_ignore_nan_batches_and_terminate_on_nan_still_stops_quietly(capsys):
    import pycnn

    x, y = _nan_batch_data()
    model = _small_model(False, "adam")
    with pytest.warns(RuntimeWarning, match="skipped 1 of 5 batches"):
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, nonfinite_loss="ignore")
    assert len(history.epoch) == 2 and model.optimizer.iterations == 8  # 10 batches, the two NaN ones skipped
    assert all(np.isfinite(w).all() for w in model.get_weights())
    model = _small_model(False, "adam")
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                        callbacks=[pycnn.callbacks.TerminateOnNaN()])
    assert history.epoch == [0] and "Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"'nonfinite_loss' of fit\(\): expected one of \('raise', 'ignore'\)"):
        model.fit(x, y, nonfinite_loss="skip", verbose=0)


def test_ignored_nan_batches_are_left_out_of_the_epoch_averages_and_counted():
    import pycnn

    x, y = _nan_batch_data()  # 5 batches of 8 per epoch; the third has a NaN input
    model = _small_model(True, "adam")
    twin = _small_model(True, "adam")
    twin.set_weights(model.get_weights())
    with pytest.warns(RuntimeWarning) as record:
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, nonfinite_loss="ignore")
    messages = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(messages) == 2 and messages[0].startswith("fit(): skipped 1 of 5 batches of epoch 1 whose loss was NaN")
    assert history.history["skipped_batches"] == [1, 1]
    # The same steps one batch at a time, leaving out the NaN batch: the epoch's loss and
    # accuracy are the means of the four applied batches (equal sizes).
    for epoch in range(2):
        results = [twin.train_on_batch(x[i:i + 8], y[i:i + 8]) for i in (0, 8, 24, 32)]
        loss, acc = np.mean(results, axis=0)
        assert history.history["loss"][epoch] == pytest.approx(loss, rel=1e-6)
        assert history.history["accuracy"][epoch] == pytest.approx(acc, rel=1e-6)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Without 'ignore' there is nothing to count, and the key is absent; TerminateOnNaN still
    # sees an ignored batch's loss and stops.
    clean = _small_model(False, "adam").fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0)
    assert "skipped_batches" not in clean.history
    with pytest.warns(RuntimeWarning, match="skipped 1 of 3 batches"):
        history = _small_model(False, "adam").fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                                                  nonfinite_loss="ignore",
                                                  callbacks=[pycnn.callbacks.TerminateOnNaN()])
    assert history.epoch == [0] and history.history["skipped_batches"] == [1]
    assert np.isfinite(history.history["loss"][0])


def test_an_exploding_loss_draws_one_warning():
    import pycnn

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, 64)
    model = _small_model(False, pycnn.optimizers.Adam(1e6))
    with pytest.warns(RuntimeWarning, match="training is diverging") as record:
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, nonfinite_loss="ignore")
    assert sum("diverging" in str(w.message) for w in record) == 1


# ----------------------------------------------------------------------------- files

def test_a_gzip_bomb_is_refused_without_decompressing_it(tmp_path):
    import gzip
    import tracemalloc

    from pycnn.datasets._files import CorruptDatasetError, read_idx

    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    header = (0x0801).to_bytes(4, "big") + (10).to_bytes(4, "big")
    with gzip.open(path, "wb", compresslevel=9) as f:  # declares 10 labels, holds 10 + 200 MB
        f.write(header + bytes(10))
        zeros = bytes(1 << 20)
        for _ in range(200):
            f.write(zeros)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(CorruptDatasetError, match=r"with dimensions \(10,\) expected 18 bytes\. Received: 19 bytes"):
        read_idx(path, 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, f"decompressed {peak} bytes for an 18-byte file"


def test_an_idx_header_declaring_too_much_is_refused_before_reading(tmp_path):
    from pycnn.datasets._files import CorruptDatasetError, read_idx

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes((0x0803).to_bytes(4, "big") + (1 << 20).to_bytes(4, "big") * 3 + bytes(100))
    with pytest.raises(CorruptDatasetError, match=r"declares dimensions \(1048576, 1048576, 1048576\)"):
        read_idx(path, 3)


def test_a_well_formed_idx_file_still_reads(tmp_path):
    import gzip

    from pycnn.datasets._files import read_idx

    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes()
    (tmp_path / "a").write_bytes(data)
    with gzip.open(tmp_path / "a.gz", "wb") as f:
        f.write(data)
    np.testing.assert_array_equal(read_idx(tmp_path / "a", 3), x)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", 3), x)


_SAVER = r"""
import sys, numpy as np, pycnn
from pycnn import layers
model = pycnn.Sequential([layers.Input((64,)), layers.Dense(2048), layers.Dense(2048), layers.Dense(10)])
print("ready", flush=True)
while True:
    model.save_weights(sys.argv[1])
"""


def kill_during_saves(path, trials: int, rng) -> None:
    """Start a process that saves ``path`` (about 17 MB) in a loop and kill -9 it mid-way, ``trials`` times."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    for _ in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.3 * rng.random())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_kill_9_during_save_keeps_the_last_file_and_no_temporary_files_pile_up(tmp_path, rng):
    import pycnn
    from pycnn import layers

    path = tmp_path / "w.npz"
    kill_during_saves(path, 3, rng)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "w.npz"]
    model = pycnn.Sequential([layers.Input((64,)), layers.Dense(2048), layers.Dense(2048), layers.Dense(10)])
    if path.exists():
        model.load_weights(path)  # whatever the last complete save was, it loads
    model.save_weights(path)      # the next save removes what the killed writers left
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"], f"left behind: {leftovers}"
    model.load_weights(path)


def test_temporary_files_of_live_writers_are_left_alone(tmp_path):
    import os

    from pycnn import _tempfiles

    dest = tmp_path / "w.npz"
    fd, mine = _tempfiles.make_temp(dest, ".tmp")
    os.close(fd)
    parent = tmp_path / f".w.npz.{_tempfiles._host()}.{os.getppid()}.abc123.tmp"  # a live process's
    other_host = tmp_path / f".w.npz.elsewhere.1.abc123.tmp"
    dead = tmp_path / f".w.npz.{_tempfiles._host()}.{2**22 + 12345}.abc123.tmp"  # above pid_max: never alive
    for p in (parent, other_host, dead):
        p.write_bytes(b"x")
    assert _tempfiles.remove_orphans(dest, ".tmp") == 1
    assert not dead.exists() and parent.exists() and other_host.exists() and os.path.exists(mine)


def _tampered(tmp_path, edit_manifest=None, edit_arrays=None):
    import json

    import pycnn
    from pycnn import layers

    model = pycnn.Sequential([layers.Input((4,)), layers.Dense(3)])
    src = tmp_path / "good.npz"
    model.save_weights(src)
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(str(arrays.pop("__pycnn_manifest__")))
    if edit_manifest:
        edit_manifest(manifest)
    if edit_arrays:
        edit_arrays(arrays)
    out = tmp_path / "tampered.npz"
    np.savez(out, __pycnn_manifest__=np.array(json.dumps(manifest)), **arrays)
    return model, out


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(layers=5), r"'layers' should be a list, not int"),
    (lambda m: m.update(layers=[{}]), r"layers\[0\] has no string 'name'"),
    (lambda m: m["layers"][-1].update(weights=None), r"has no 'weights' list"),
    (lambda m: m["layers"][-1]["weights"].__setitem__(0, 7), r"weights\[0\] should be an object"),
])
def test_tampered_manifests_give_a_value_error_that_says_where(tmp_path, edit, match):
    from pycnn.saving import MANIFEST_KEY

    assert MANIFEST_KEY == "__pycnn_manifest__"
    model, path = _tampered(tmp_path, edit_manifest=edit)
    with pytest.raises(ValueError, match=match):
        model.load_weights(path)


def _first_array_key(arrays):
    return sorted(arrays)[0]


@pytest.mark.parametrize("poison, match", [
    (lambda a: a.__setitem__(_first_array_key(a), a[_first_array_key(a)].astype(np.int8)), "has dtype int8"),
    (lambda a: a[_first_array_key(a)].flat.__setitem__(0, np.nan), "holds 1 NaN or infinite values"),
])
def test_non_float_or_non_finite_weights_are_refused_and_nothing_changes(tmp_path, poison, match):
    model, path = _tampered(tmp_path, edit_arrays=poison)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=match):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- resume, Ctrl-C

_RESUME = r"""
import sys, numpy as np, pycnn
from pycnn import layers, callbacks
mode, ck_dir = sys.argv[1], sys.argv[2]
pycnn.set_random_seed(5)
rng = np.random.default_rng(0)
x, y = rng.random((96, 8, 8, 2), dtype=np.float32), rng.integers(0, 4, 96)
if mode == "full":
    model = pycnn.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(4, 3, activation="relu"),
                              layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.3),
                              layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, shuffle=True,
              callbacks=[callbacks.ModelCheckpoint(ck_dir + "/ck_{epoch:02d}.npz", save_weights_only=False)])
else:
    model = pycnn.models.load_model(ck_dir + "/ck_02.npz")
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, shuffle=True, initial_epoch=2)
np.savez(ck_dir + "/" + mode + ".npz", iterations=model.optimizer.iterations, *model.get_weights())
"""


def _python(script, *args):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True, env=env, timeout=300)


def test_a_run_resumed_in_a_new_process_matches_the_uninterrupted_one_exactly(tmp_path):
    _python(_RESUME, "full", tmp_path)
    _python(_RESUME, "resumed", tmp_path)
    with np.load(tmp_path / "full.npz") as full, np.load(tmp_path / "resumed.npz") as resumed:
        assert int(full["iterations"]) == int(resumed["iterations"]) == 24
        names = [k for k in full.files if k.startswith("arr_")]
        assert names
        diff = max(float(np.max(np.abs(full[k] - resumed[k]))) for k in names)
    assert diff == 0.0, f"max |dw| = {diff}"


def test_rng_state_round_trip_and_bad_state():
    from pycnn import utils

    utils.set_random_seed(3)
    state = utils.get_rng_state()
    a = utils.get_rng().random(5)
    utils.set_rng_state(state)
    np.testing.assert_array_equal(utils.get_rng().random(5), a)
    with pytest.raises(ValueError, match="expected a NumPy bit generator state"):
        utils.set_rng_state({"bit_generator": "os"})


_INTERRUPTED = r"""
import signal, sys, numpy as np, pycnn
# A shell without job control starts background commands with SIGINT ignored, and Python then
# installs no KeyboardInterrupt handler: Ctrl-C as a terminal delivers it is the default one.
signal.signal(signal.SIGINT, signal.default_int_handler)
from pycnn import layers, executor
applied = [0]
real = executor.CompiledGraph.fused_step
def counting(*a, **k):
    out = real(*a, **k)
    applied[0] += 1
    if applied[0] == 1:  # the parent interrupts only a run that is training
        print("ready", flush=True)
    return out
executor.CompiledGraph.fused_step = counting
rng = np.random.default_rng(0)
x, y = rng.random((4096, 16, 16, 3), dtype=np.float32), rng.integers(0, 10, 4096)
model = pycnn.Sequential([layers.Input((16, 16, 3)), layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
                          layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
try:
    model.fit(x, y, batch_size=8, epochs=100, verbose=0)
except KeyboardInterrupt:
    print(model.optimizer.iterations, applied[0], flush=True)
"""


def test_after_ctrl_c_the_step_count_equals_the_steps_applied(rng):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 * rng.random())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        words = out.split()
        assert len(words) == 2, f"exit {proc.returncode}, stdout {out!r}, stderr {err.decode()[-2000:]}"
        iterations, applied = map(int, words)
        assert applied > 0 and iterations == applied


def test_layers_refuse_windows_the_kernels_would_refuse_at_construction():
    from pycnn import layers

    with pytest.raises(ValueError, match=r"'strides' argument of Conv2D must be at most 2147483647"):
        layers.Conv2D(2, 3, strides=2**63)
    with pytest.raises(ValueError, match=r"'pool_size' argument of MaxPooling2D must be at most"):
        layers.MaxPooling2D((2, 2**40))
    assert layers.MaxPooling2D(2, strides=2**31 - 1).strides == (2**31 - 1, 2**31 - 1)
