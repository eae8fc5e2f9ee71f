"""Data-parallel training on MPI: 2 ranks on this machine against one process.

The jobs run tests/mpi_job.py under ``mpirun -np 2`` (127.0.0.1 only). Skipped, with the
reason, where mpirun or mpi4py is missing (``pip install ".[mpi]"`` installs both).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pycnn

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "mpi_job.py")

pytestmark = [
    pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed (pip install '.[mpi]')"),
]


@pytest.fixture(scope="module", autouse=True)
def _mpi4py():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[mpi]')")


def _mpirun(*args, timeout=180):
    cmd = ["mpirun", "-np", "2", "-host", "127.0.0.1", sys.executable, JOB, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def _single(tmp_path):
    out = str(tmp_path / "single.npz")
    subprocess.run([sys.executable, JOB, "train", out], check=True, timeout=180, env=os.environ.copy())
    return np.load(out)


def test_two_ranks_train_as_one_process(tmp_path):
    out = str(tmp_path / "two.npz")
    run = _mpirun("train", out)
    assert run.returncode == 0, run.stderr
    two, one = np.load(out), _single(tmp_path)
    assert int(two["world"]) == 2 and int(one["world"]) == 1
    h2, h1 = json.loads(str(two["history"])), json.loads(str(one["history"]))
    assert sorted(h2) == sorted(h1)
    for key in h1:
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(two["evaluate"], one["evaluate"], rtol=1e-5)
    rank0, rank1 = np.load(out + ".rank0.npz"), np.load(out + ".rank1.npz")
    for key in one.files:
        if key.startswith("w") and key[1:].isdigit():
            np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)
            # the ranks built different weights (seeds 100, 101): the broadcast made them one
            np.testing.assert_array_equal(rank0[key], rank1[key])


def test_two_ranks_on_the_emulated_cuda_executor_train_as_one_process(tmp_path):
    # The device step with MPI: gradients and states to the host for the reducer, the update on
    # the device (compile(device="cuda-emulated"), the CUDA executor's host emulation).
    out = str(tmp_path / "two.npz")
    run = _mpirun("device", out)
    assert run.returncode == 0, run.stderr
    single = str(tmp_path / "single.npz")
    subprocess.run([sys.executable, JOB, "device", single], check=True, timeout=180, env=os.environ.copy())
    two, one = np.load(out), np.load(single)
    h2, h1 = json.loads(str(two["history"])), json.loads(str(one["history"]))
    for key in h1:
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-5, err_msg=key)
    for key in one.files:
        if key.startswith("w") and key[1:].isdigit():
            np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_a_failing_rank_stops_the_job_and_names_itself():
    start = time.perf_counter()
    run = _mpirun("raise", "unused", timeout=120)
    elapsed = time.perf_counter() - start
    assert run.returncode != 0
    assert "rank 1 of 2 failed with RuntimeError: rank 1 fails on purpose" in run.stderr
    assert "aborting the whole job because rank 1 failed" in run.stderr
    assert elapsed < 60


def test_only_rank_0_writes_and_its_checkpoint_resumes_in_one_process(tmp_path):
    run = _mpirun("checkpoint", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path / "rank0")) == ["ckpt.npz", "log.csv"]
    assert os.listdir(tmp_path / "rank1") == []
    # Resume the 2-rank checkpoint (after 2 epochs) for a third epoch in one process: the
    # same weights as an uninterrupted single-process run of 3 epochs.
    sys.path.insert(0, HERE)
    try:
        import mpi_job
    finally:
        sys.path.remove(HERE)
    resumed = pycnn.models.load_model(str(tmp_path / "rank0" / "ckpt.npz"))
    mpi_job.fit(resumed, 3, initial_epoch=2)
    one = _single(tmp_path)
    for i, w in enumerate(resumed.get_weights()):
        np.testing.assert_allclose(w, one[f"w{i}"], rtol=1e-4, atol=1e-6)


def test_early_stopping_stops_every_rank_after_the_same_epoch(tmp_path):
    out = str(tmp_path / "early")
    run = _mpirun("early", out, timeout=120)  # a rank that went on alone would hang in the next Allreduce
    assert run.returncode == 0, run.stderr
    histories = [json.load(open(f"{out}.rank{r}.json")) for r in (0, 1)]
    assert len(histories[0]["loss"]) == len(histories[1]["loss"]) == 2
    assert histories[0] == histories[1]
