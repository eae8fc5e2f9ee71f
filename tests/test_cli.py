"""The command line (python -m pycnn): argument errors, info, summary, and tiny training
runs whose saved weights, curves and history are checked (evaluate must reproduce the
test scores train printed)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False

from dataset_fixtures import write_cifar_bin, write_idx_dataset

import pycnn
import pycnn.cli
from pycnn.__main__ import main

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = os.environ.get("PYCNN_DATA_DIR")
LENET_CIFAR_PARAMS = "83,126"   # 456 + 2416 + 69240 + 10164 + 850
LENET_MNIST_PARAMS = "61,706"   # 156 + 2416 + 48120 + 10164 + 850 (d2l.ai's LeNet count)
TEST_LINE = re.compile(r"^Test loss: (\d+\.\d{4}) - test accuracy: (\d\.\d{4})", re.M)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("PYCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PYCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("PYCNN_DATASETS_URL", "http://127.0.0.1:9")  # discard port: no network
    threads = pycnn.get_num_threads()
    yield
    pycnn.set_num_threads(threads)  # --threads changes a process-wide setting


@pytest.fixture
def cifar_dir(tmp_path):
    """A CIFAR-10 binary fixture: 5 x 120 training and 120 test images."""
    write_cifar_bin(tmp_path / "data" / "cifar-10-batches-bin", np.random.default_rng(5), n=120)
    return tmp_path / "data"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], r"argument --epochs: expected a positive integer\. Received: 0"),
    (["train", "--batch-size", "ten"], r"argument --batch-size: expected a positive integer\. Received: 'ten'"),
    (["train", "--dataset", "svhn"], r"argument --dataset: expected one of cifar10, fashion_mnist, mnist\. Received: 'svhn'"),
    (["train", "--learning-rate", "-0.1"], r"argument --learning-rate: expected a positive number\. Received: -0\.1"),
    (["train", "--optimizer", "adagrad"], r"argument --optimizer: invalid choice: 'adagrad'"),
    (["train", "--verbose", "3"], r"argument --verbose: invalid choice: 3"),
    (["train", "--seed", "-1"], r"argument --seed: expected a non-negative integer\. Received: -1"),
    (["evaluate"], r"the following arguments are required: --weights"),
    (["summary", "--input-shape", "32,32"], r"argument --input-shape: expected height,width,channels"),
    ([], r"the following arguments are required"),
])
def test_argument_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_info(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert re.match(r"pycnn \d+\.\d+\.\d+ \| .* \| SIMD \w+ .*\| threads \d+", out)
    for key in ("compiler:", "openmp:", "isa_active:", "num_threads:", "numpy:"):
        assert key in out


@pytest.mark.parametrize("argv, params, last_shape", [
    (["--model", "lenet"], LENET_CIFAR_PARAMS, "(None, 10)"),
    (["--input-shape", "28,28,1"], LENET_MNIST_PARAMS, "(None, 10)"),
    (["--dataset", "fashion-mnist", "--num-classes", "7"], "61,451", "(None, 7)"),
])
def test_summary(capsys, argv, params, last_shape):
    code, out, _ = run(capsys, "summary", *argv)
    assert code == 0
    assert f"Total params: {params}" in out
    assert last_shape in out


# ----------------------------------------------------------------------------- train / evaluate

def test_train_saves_weights_curves_history_and_evaluate_reproduces(capsys, tmp_path, cifar_dir):
    weights, curves, history = tmp_path / "lenet.npz", tmp_path / "curves.png", tmp_path / "h.json"
    code, out, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--epochs", "2",
                         "--limit-train", "512", "--limit-test", "100", "--batch-size", "64",
                         "--seed", "3", "--threads", "1", "--verbose", "2", "--save", str(weights),
                         "--history", str(history), *(["--plot", str(curves)] if HAVE_MATPLOTLIB else []))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("pycnn ") and "threads 1" in lines[0]
    assert "Dataset cifar10: 512 of 600 training and 100 of 120 test images, shape (32, 32, 3), 10 classes" in out
    assert f"Total params: {LENET_CIFAR_PARAMS}" in out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "val_accuracy" in out
    test_loss, test_acc = map(float, TEST_LINE.search(out).groups())
    assert re.search(r"^Seconds per epoch: \d+\.\d\d \(mean of 2;", out, re.M)
    assert f"Saved the model (architecture, weights, optimizer state) to {weights}" in out
    assert weights.stat().st_size > 3 * 83126 * 4  # weights and Adam's two slots per weight
    if HAVE_MATPLOTLIB:  # the plot itself is tested only where the optional extra is installed
        assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(history.read_text())
    assert len(record["history"]["loss"]) == 2 and len(record["history"]["val_accuracy"]) == 2
    assert len(record["seconds_per_epoch"]) == 2
    assert record["history"]["val_accuracy"][-1] == pytest.approx(test_acc, abs=1e-4)
    assert record["test_loss"] == pytest.approx(test_loss, abs=1e-4)

    code, out, err = run(capsys, "evaluate", "--data-dir", str(cifar_dir), "--weights", str(weights),
                         "--limit-test", "100", "--verbose", "0")
    assert code == 0, err
    assert "Dataset cifar10: 100 of 120 test images" in out
    assert TEST_LINE.search(out).groups() == (f"{test_loss:.4f}", f"{test_acc:.4f}")


def _train(capsys, cifar_dir, *extra):
    code, out, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--limit-train", "256", "--limit-test",
                         "64", "--batch-size", "32", "--threads", "1", "--verbose", "0", *extra)
    assert code == 0, err
    return out


def test_train_resume_continues_exactly_like_an_uninterrupted_run(capsys, monkeypatch, tmp_path, cifar_dir):
    # LeNet with BN, augmentation, a cosine schedule and Adam: everything that keeps state across
    # epochs (optimizer slots and step count, the schedule, the random generator the shuffles,
    # crops and flips draw from, BN's moving statistics) must come back from the file.
    setup = ["--model", "lenet_bn", "--augment", "--lr-schedule", "cosine", "--seed", "4", "--epochs", "2"]
    straight, first, resumed = tmp_path / "straight.npz", tmp_path / "first.npz", tmp_path / "resumed.npz"
    out = _train(capsys, cifar_dir, *setup, "--save", str(straight))
    straight_scores = TEST_LINE.search(out).groups()

    def interrupt(self, epoch, logs=None):  # Ctrl-C as the second epoch begins
        if epoch == 1:
            raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(pycnn.cli._EpochTimer, "on_epoch_begin", interrupt)
        code, _, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--limit-train", "256", "--limit-test",
                           "64", "--batch-size", "32", "--threads", "1", "--verbose", "0", *setup, "--save", str(first))
    assert code == 130 and "pycnn: interrupted" in err
    out = _train(capsys, cifar_dir, "--resume", str(first), "--epochs", "2", "--save", str(resumed))
    assert f"Resuming from {first}: 1 epochs done, training epochs 2-2" in out
    assert TEST_LINE.search(out).groups() == straight_scores
    a, b = pycnn.models.load_model(straight), pycnn.models.load_model(resumed)
    assert a.optimizer.iterations == b.optimizer.iterations == 16
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    for sa, sb in zip(a.optimizer.get_slots(a.weights), b.optimizer.get_slots(b.weights)):
        for x, y in zip(sa, sb):
            np.testing.assert_array_equal(x, y)


def test_train_save_writes_a_full_model_and_weights_only_the_weights(capsys, tmp_path, cifar_dir):
    full, weights = tmp_path / "full.npz", tmp_path / "weights.npz"
    _train(capsys, cifar_dir, "--epochs", "1", "--seed", "2", "--save", str(full))
    model = pycnn.models.load_model(full)
    assert model.compiled and model.optimizer.iterations == 8 and model.name == "lenet"
    out = _train(capsys, cifar_dir, "--epochs", "1", "--seed", "2", "--save", str(weights), "--weights-only")
    assert f"Saved weights to {weights}" in out
    with pytest.raises(ValueError, match="holds weights only"):
        pycnn.models.load_model(weights)
    fresh = pycnn.models.lenet((32, 32, 3), 10)
    fresh.load_weights(weights)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    # evaluate reads either file.
    for path in (full, weights):
        code, out, err = run(capsys, "evaluate", "--data-dir", str(cifar_dir), "--weights", str(path),
                             "--limit-test", "64", "--verbose", "0")
        assert code == 0, err


@pytest.mark.parametrize("argv, message", [
    (["--weights-only"], r"--weights-only says what --save writes"),
    (["--resume", "missing.npz"], r"train --resume expected a file written by `train --save`\. "
                                  r"Received: --resume missing\.npz, which does not exist"),
])
def test_save_and_resume_argument_errors(capsys, cifar_dir, argv, message):
    code, out, err = run(capsys, "train", "--data-dir", str(cifar_dir), *argv)
    assert code == 1 and re.search(message, err) and "Epoch" not in out


def test_resume_refuses_weights_files_finished_runs_and_other_datasets(capsys, tmp_path, cifar_dir):
    full, weights = tmp_path / "full.npz", tmp_path / "weights.npz"
    _train(capsys, cifar_dir, "--epochs", "1", "--save", str(full))
    _train(capsys, cifar_dir, "--epochs", "1", "--save", str(weights), "--weights-only")
    code, _, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--resume", str(weights))
    assert code == 1 and "train --resume expected a full model" in err and "holds weights only" in err
    code, _, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--resume", str(full), "--epochs", "1")
    assert code == 1 and "has already trained 1 epochs" in err and "Pass a larger --epochs" in err
    write_idx_dataset(tmp_path / "mnist", np.random.default_rng(2), n_train=64, n_test=32)
    code, _, err = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--resume", str(full),
                       "--epochs", "2")
    assert code == 1 and "takes inputs (32, 32, 3)" in err and "(28, 28, 1)" in err


def test_train_with_augmentation_runs_every_epoch(capsys, tmp_path, cifar_dir):
    history = tmp_path / "h.json"
    code, out, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--epochs", "2", "--augment",
                         "--limit-train", "256", "--limit-test", "64", "--seed", "1", "--verbose", "2",
                         "--optimizer", "sgd", "--learning-rate", "0.05", "--history", str(history))
    assert code == 0, err
    assert "Augmentation: random crops with 4-pixel zero padding and horizontal flips" in out
    # One fit() per epoch (fresh crops each time) must still count epochs as 1/2, 2/2.
    assert re.findall(r"^Epoch \d+/\d+$", out, re.M) == ["Epoch 1/2", "Epoch 2/2"]
    assert re.search(r"^Seconds per epoch: .*\(mean of 2;", out, re.M)
    record = json.loads(history.read_text())
    assert len(record["history"]["loss"]) == 2 and len(record["history"]["val_loss"]) == 2
    assert record["args"]["optimizer"] == "sgd" and record["args"]["learning_rate"] == 0.05
    assert all(np.isfinite(record["history"]["loss"]))


def test_train_mnist_family_adds_channel_axis(capsys, tmp_path):
    write_idx_dataset(tmp_path / "fashion-mnist", np.random.default_rng(2), n_train=96, n_test=32)
    code, out, err = run(capsys, "train", "--dataset", "fashion_mnist", "--data-dir", str(tmp_path),
                         "--epochs", "1", "--batch-size", "32", "--verbose", "0")
    assert code == 0, err
    assert "Dataset fashion_mnist: 96 of 96 training and 32 of 32 test images, shape (28, 28, 1)" in out
    assert f"Total params: {LENET_MNIST_PARAMS}" in out
    assert TEST_LINE.search(out)


def test_same_seed_same_result(capsys, cifar_dir):
    outs = []
    for _ in range(2):
        code, out, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--epochs", "1",
                             "--limit-train", "128", "--limit-test", "64", "--seed", "11", "--verbose", "0",
                             "--augment")
        assert code == 0, err
        outs.append(TEST_LINE.search(out).groups())
    assert outs[0] == outs[1]


def test_missing_data_and_weights_are_clear_errors(capsys, tmp_path, cifar_dir):
    code, out, err = run(capsys, "train", "--data-dir", str(tmp_path / "empty"), "--epochs", "1")
    assert code == 1
    assert re.search(r"pycnn: error: load_data\(\) expected the CIFAR-10 dataset at path=.*empty", err)
    assert "Epoch" not in out
    code, _, err = run(capsys, "evaluate", "--data-dir", str(cifar_dir), "--weights", str(tmp_path / "no.npz"))
    assert code == 1
    assert "evaluate expected a weights file. Received: --weights" in err and "--save FILE" in err


def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch, cifar_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run(capsys, "train", "--data-dir", str(cifar_dir), "--epochs", "1",
                         "--plot", str(tmp_path / "c.png"))
    assert code == 1
    assert "needs matplotlib" in err and "pip install matplotlib" in err
    assert "Epoch" not in out and not (tmp_path / "c.png").exists()


def test_python_dash_m_entry_point(tmp_path, cifar_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "pycnn", "train", "--data-dir", str(cifar_dir),
                           "--epochs", "1", "--limit-train", "128", "--limit-test", "64",
                           "--verbose", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout  # the progress bar writes no carriage returns into a pipe
    assert TEST_LINE.search(proc.stdout)
    proc = subprocess.run([sys.executable, "-m", "pycnn", "summary", "--model", "resnet50"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Unknown model: expected one of lenet" in proc.stderr


@pytest.mark.skipif(not REAL_DATA or not Path(REAL_DATA).is_dir(),
                    reason="PYCNN_DATA_DIR is unset or missing (set PYCNN_DATA_DIR=../shared/data)")
def test_train_on_real_cifar_slice(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--model", "lenet", "--dataset", "cifar10", "--data-dir",
                         REAL_DATA, "--limit-train", "2048", "--limit-test", "512", "--epochs", "3",
                         "--seed", "0", "--verbose", "2")
    assert code == 0, err
    assert "Dataset cifar10: 2048 of 50000 training and 512 of 10000 test images" in out
    loss, acc = map(float, TEST_LINE.search(out).groups())
    # Seed 0 reached 30% here (chance: 10%); the loss falls from ln(10) = 2.30 at the start.
    assert acc > 0.2 and loss < 2.15


def test_plot_history_direct(tmp_path):
    pytest.importorskip("matplotlib")
    from pycnn.plotting import plot_history

    out = plot_history({"loss": [2.0, 1.5], "val_loss": [1.9, 1.7]}, tmp_path / "loss.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"expected a history with at least one 'loss' value\. "
                                         r"Received: keys=\['accuracy'\]"):
        plot_history({"accuracy": [0.5]}, tmp_path / "x.png")
    with pytest.raises(TypeError, match=r"expected a History object or a dict"):
        plot_history([1.0], tmp_path / "x.png")


# ----------------------------------------------------------------------------- the case study

CASE_LINE = re.compile(r"^\s*(classic features|4-filter CNN): test accuracy (\d\.\d{4}) \(best \d\.\d{4}\), "
                       r"(\d+\.\d{2}) s per epoch$", re.M)


def _casestudy(capsys, data_dir, tmp_path, *extra):
    plot = str(tmp_path / "case.png") if HAVE_MATPLOTLIB else ""
    return run(capsys, "casestudy", "--data-dir", str(data_dir), "--epochs", "2", "--batch-size", "64",
               "--seed", "0", "--verbose", "0", "--plot", plot, "--history", str(tmp_path / "case.json"), *extra)


def test_casestudy_on_a_fixture(capsys, cifar_dir, tmp_path):
    code, out, err = _casestudy(capsys, cifar_dir, tmp_path)
    assert code == 0, err
    assert 'Model: "classic_features"' in out and 'Model: "four_filter_cnn"' in out
    assert "Connected to" in out and "concatenate (Concatenate)" in out
    found = CASE_LINE.findall(out)
    assert [f[0] for f in found] == ["classic features", "4-filter CNN"]
    record = json.loads((tmp_path / "case.json").read_text())
    assert set(record) == {"classic features", "4-filter CNN"}
    assert all(len(r["history"]["val_accuracy"]) == 2 and len(r["seconds_per_epoch"]) == 2 for r in record.values())
    if HAVE_MATPLOTLIB:
        assert (tmp_path / "case.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not REAL_DATA or not Path(REAL_DATA).is_dir(),
                    reason="PYCNN_DATA_DIR is unset or missing (set PYCNN_DATA_DIR=../shared/data)")
def test_casestudy_on_a_real_cifar_slice(capsys, tmp_path):
    code, out, err = _casestudy(capsys, REAL_DATA, tmp_path, "--limit-train", "2048", "--limit-test", "512")
    assert code == 0, err
    assert "Dataset cifar10: 2048 of 50000 training and 512 of 10000 test images" in out
    accs = {name: float(acc) for name, acc, _ in CASE_LINE.findall(out)}
    assert set(accs) == {"classic features", "4-filter CNN"}
    assert all(acc > 0.15 for acc in accs.values()), accs  # well above chance (0.10) after 2 epochs
