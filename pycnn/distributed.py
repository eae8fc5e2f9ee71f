"""Data-parallel training on MPI (mpi4py), the same result as one process.

Usage, in a script started with ``mpirun -np 4 python train.py`` (or a cluster launcher)::

    import pycnn
    pycnn.distributed.init()          # world size; 1 (a no-op) without MPI or mpi4py
    model.compile(...)
    model.fit(x, y, batch_size=256)   # batch_size stays the global batch

What ``fit`` does when the world has more than one process (pycnn/trainer.py calls the
functions below):

* before the first step, rank 0's weights, optimizer state and random generator are sent
  to every rank, so ranks that built their models with different seeds start equal;
* every epoch rank 0 draws the permutation and broadcasts it; each global batch of B
  samples is split into contiguous shares (rank r takes rows ``B*r//P .. B*(r+1)//P``: when
  B does not divide by P the first ranks take one sample fewer), and each rank computes the
  gradient of its share, scaled by its share of the batch;
* one ``Allreduce`` per step sums those gradients in one flat, preallocated buffer; every
  rank then applies the same update (Adam in one native call), so the weights stay equal;
* the epoch's loss and metrics, and validation computed on shards, are summed over ranks:
  every rank sees the same logs, so callbacks such as EarlyStopping decide the same;
* only rank 0 prints and writes files (``model.save``, ``save_weights``, ModelCheckpoint,
  CSVLogger); checkpoints hold the global state and resume on any number of ranks;
* an exception on any rank aborts the whole job (``MPI_Abort``) after printing which rank
  failed, instead of leaving the others waiting in a collective.

Batch normalization normalizes with each rank's share of the batch (as Keras's default,
non-synchronized BatchNormalization under a distribution strategy), and random layers draw
per rank, so models with those match a single process in distribution, not bit for bit.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Any, List, Optional, Sequence

import numpy as np

_comm: Any = None       # mpi4py's COMM_WORLD once init() found more than one process
_MPI: Any = None


def init() -> int:
    """Join the MPI world when launched under MPI; returns the number of processes.

    Without mpi4py, or in a world of one process, it does nothing and returns 1. Safe to
    call more than once. Installs the abort-on-exception hook (see the module docstring).
    """
    global _comm, _MPI
    if _comm is not None:
        return _comm.Get_size()
    if not _launched_by_mpi():
        return 1
    try:
        from mpi4py import MPI
    except ImportError:
        return 1
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return 1
    _comm, _MPI = comm, MPI
    _install_abort_hook()
    return comm.Get_size()


def _launched_by_mpi() -> bool:
    """Importing mpi4py in a plain process starts a singleton MPI: only do it under a launcher."""
    markers = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD",
               "PYCNN_FORCE_MPI")
    return any(k in os.environ for k in markers)


def rank() -> int:
    """This process's rank (0 without MPI)."""
    return 0 if _comm is None else _comm.Get_rank()


def size() -> int:
    """The number of processes (1 without MPI)."""
    return 1 if _comm is None else _comm.Get_size()


def is_primary() -> bool:
    """True on rank 0, the process that prints and writes files."""
    return rank() == 0


def active() -> bool:
    """True when training is distributed (init() found more than one process)."""
    return _comm is not None


def _install_abort_hook() -> None:
    previous = sys.excepthook

    def abort(kind, value, tb) -> None:
        sys.stderr.write(f"pycnn.distributed: rank {rank()} of {size()} failed with {kind.__name__}: {value}\n")
        sys.stderr.write("".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.write(f"pycnn.distributed: aborting the whole job because rank {rank()} failed.\n")
        sys.stderr.flush()
        try:
            _comm.Abort(1)
        finally:
            previous(kind, value, tb)

    sys.excepthook = abort


# ----------------------------------------------------------------------------- collectives


def share(n: int, r: Optional[int] = None, p: Optional[int] = None) -> slice:
    """Rows of rank ``r`` in a batch of ``n``: a contiguous share, sizes differing by at most one."""
    r = rank() if r is None else r
    p = size() if p is None else p
    return slice(n * r // p, n * (r + 1) // p)


def allreduce_(buffer: np.ndarray) -> np.ndarray:
    """Sum ``buffer`` over the ranks, in place (one MPI call)."""
    if _comm is not None:
        _comm.Allreduce(_MPI.IN_PLACE, buffer, op=_MPI.SUM)
    return buffer


def sum_values(values: Sequence[float]) -> List[float]:
    """Sum a few numbers over the ranks (float64, one call)."""
    arr = np.asarray(values, dtype=np.float64).copy()
    allreduce_(arr)
    return [float(v) for v in arr]


def broadcast_arrays_(arrays: Sequence[np.ndarray]) -> None:
    """Overwrite every rank's ``arrays`` with rank 0's, in place."""
    if _comm is None:
        return
    for a in arrays:
        if a.size:
            _comm.Bcast(a, root=0)


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled: small objects only)."""
    return obj if _comm is None else _comm.bcast(obj, root=0)


# ----------------------------------------------------------------------------- what fit needs


def sync_training_state(model: Any) -> None:
    """Rank 0's weights, optimizer state and random generator on every rank."""
    if _comm is None:
        return
    from . import utils

    broadcast_arrays_(model.weights)
    optimizer = model.optimizer
    trainable = [w for layer in model.layers for w in layer.trainable_weights]
    slots = optimizer.get_slots(trainable)
    counts = broadcast([len(s) for s in slots])
    iterations = broadcast(int(optimizer.iterations))
    if any(counts):
        full = [s if len(s) == c else [np.zeros_like(w) for _ in range(c)] for s, c, w in zip(slots, counts, trainable)]
        broadcast_arrays_([a for s in full for a in s])
        optimizer.set_slots(trainable, full, iterations)
    optimizer.iterations = iterations
    utils.set_rng_state(broadcast(utils.get_rng_state()))


def epoch_order(n: int, shuffle: bool) -> Optional[np.ndarray]:
    """The epoch's permutation, drawn on rank 0 and the same on every rank."""
    from . import utils

    if not shuffle:
        return None
    order = utils.get_rng().permutation(n) if is_primary() or _comm is None else np.empty(n, np.int64)
    if _comm is not None:
        order = np.ascontiguousarray(order, dtype=np.int64)
        _comm.Bcast(order, root=0)
    return order


class GradientExchange:
    """One step's reduction: every trained weight's gradient, then the non-trainable
    weights (BatchNormalization's moving statistics, averaged so they stay equal), then the
    loss and the accuracy hits, packed into one preallocated float32 buffer and summed over
    the ranks with a single Allreduce. Each rank's values are scaled by its share of the
    global batch first, so the sums are the global batch's mean gradient and loss."""

    def __init__(self) -> None:
        self._flat: Optional[np.ndarray] = None

    def reduce(self, grads: List[np.ndarray], states: List[np.ndarray], loss: float, hits: float,
               fraction: float) -> tuple:
        """Sums over the ranks in place (grads and states are overwritten); returns
        ``(global loss, global hits)``. The scaled state is averaged over the ranks."""
        sizes = [g.size for g in grads] + [s.size for s in states]
        total = sum(sizes) + 2
        if self._flat is None or self._flat.size != total:
            self._flat = np.empty(total, np.float32)
        flat = self._flat
        offset = 0
        for a in list(grads) + list(states):
            flat[offset:offset + a.size] = a.reshape(-1)
            offset += a.size
        flat[:offset] *= np.float32(fraction)
        flat[offset] = loss * fraction
        flat[offset + 1] = hits
        allreduce_(flat)
        offset = 0
        for a in list(grads) + list(states):
            np.copyto(a, flat[offset:offset + a.size].reshape(a.shape))
            offset += a.size
        return float(flat[offset]), float(flat[offset + 1])
