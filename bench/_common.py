"""Helpers shared by the benchmark scripts in bench/ (not part of the pycnn package).

- import of pycnn from an install or from the source checkout, and of torch when present,
  with a chosen OpenMP wait policy (init): pycnn and torch share one libgomp, whose wait
  policy is read once at load time, and the policy changes both sides' speed a lot;
- the machine header line (build_info, CPU, cores, versions, thread environment);
- thread pinning: pycnn, torch and NumPy's BLAS (threadpoolctl) at the same count;
- timing: warm-up, then interleaved rounds timed with time.perf_counter (median and min);
- the float64 NumPy oracle of the tests (tests/oracle, imported here as ``oracle``): the
  scripts check pycnn's outputs and gradients against it (and against torch) before timing
  anything, and time it as the plain-NumPy peer (a float64 tap loop, not a tuned float32
  implementation: it is there to show what the native kernels buy over obvious NumPy).

Layout as everywhere in pycnn: activations (N, H, W, C), conv kernels (KH, KW, C, F),
dense kernels (in, out).
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

#: Thread-related environment variables that change which code pycnn and the peers run.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
              "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND", "OPENBLAS_THREAD_TIMEOUT")
# Captured before pycnn is imported: pycnn sets OMP_WAIT_POLICY=PASSIVE when the user has not.
_ENV_AT_START = {k: os.environ.get(k) for k in THREAD_ENV}

# OpenBLAS's idle worker threads keep spinning for about 2^28 cycles (~0.1 s) after each
# NumPy matmul; in an interleaved benchmark they steal a core from the pycnn or torch call
# timed next (2-thread medians came out 2-5x above their minimums). 2^4 cycles lets them
# sleep at once. OpenBLAS reads this when NumPy is first imported, so the scripts import
# this module before NumPy. A value set by the user wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402 (after the OpenBLAS setting above)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: --omp-wait-policy choices. pycnn and torch load the same libgomp here, so inside one
#: process they always share one policy, read once when libgomp is loaded.
WAIT_POLICIES = ("default", "passive", "active")

pycnn = None   # set by init()
_core = None
_POLICY_NOTE = ""

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_info = threadpool_limits = None


def init(wait_policy: Optional[str] = None):
    """Configure the OpenMP wait policy, then import pycnn; returns the pycnn module.

    wait_policy:
      None       keep the environment as it is (pycnn's import sets OMP_WAIT_POLICY=PASSIVE
                 when the user has not set it: pycnn as shipped);
      'default'  libgomp's own default (spin ~3 ms, then sleep; what a PyTorch user gets):
                 libgomp is loaded before pycnn's import sets PASSIVE, since libgomp reads
                 the variable only when it is loaded. A user-set OMP_WAIT_POLICY wins;
      'passive' / 'active'  set OMP_WAIT_POLICY to that value for the whole process.
    """
    global pycnn, _core, _POLICY_NOTE
    if wait_policy is not None and wait_policy not in WAIT_POLICIES:
        raise SystemExit(f"--omp-wait-policy expected one of {WAIT_POLICIES}. Received: {wait_policy!r}.")
    user = _ENV_AT_START["OMP_WAIT_POLICY"]
    if wait_policy in ("passive", "active"):
        os.environ["OMP_WAIT_POLICY"] = wait_policy.upper()
        _POLICY_NOTE = f"OMP_WAIT_POLICY={wait_policy.upper()} (set by --omp-wait-policy)"
    elif wait_policy == "default" and user is None:
        import ctypes
        try:
            ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)
            _POLICY_NOTE = ("libgomp default wait policy (libgomp loaded before pycnn's import-time "
                            "OMP_WAIT_POLICY=PASSIVE default, so that default does not apply)")
        except OSError:
            _POLICY_NOTE = "libgomp not found by name; pycnn's import-time default applies"
    elif user is not None:
        _POLICY_NOTE = f"OMP_WAIT_POLICY={user} (from the environment)"
    else:
        _POLICY_NOTE = "OMP_WAIT_POLICY=PASSIVE (pycnn's import-time default, pycnn as shipped)"
    try:
        import pycnn as mod
    except ImportError:  # running `python bench/x.py` from a source checkout without an install
        sys.path.insert(0, REPO_ROOT)
        import pycnn as mod
    pycnn = mod
    _core = mod._core
    return mod


def openmp_runtimes() -> str:
    """The OpenMP runtimes loaded in this process (one shared libgomp means one shared policy)."""
    if threadpool_info is None:
        return "?"
    libs = [os.path.basename(lib["filepath"]) for lib in threadpool_info() if lib.get("user_api") == "openmp"]
    return ", ".join(libs) or "none"


# ----------------------------------------------------------------------------- peers

def import_torch(quiet: bool = False):
    """torch, or None after printing a note (torch is only a benchmark peer, never a dependency)."""
    try:
        import torch
    except ImportError as err:
        if not quiet:
            print(f"note: PyTorch is not importable ({err}); PyTorch columns are skipped. "
                  "Install torch (CPU build) to compare against it.")
        return None
    return torch


# ----------------------------------------------------------------------------- machine header

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The SIMD levels /proc/cpuinfo reports (the ones that decide pycnn's and torch's kernels)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return ",".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                                    if x in flags)
    except OSError:
        pass
    return "?"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def source_info() -> str:
    """Which pycnn was measured: the module's path and build time, and the checkout's commit."""
    import datetime
    import subprocess
    core = getattr(_core, "__file__", "?")
    try:
        built = datetime.datetime.fromtimestamp(os.path.getmtime(core)).isoformat(timespec="seconds")
    except OSError:
        built = "?"
    src = os.path.dirname(os.path.dirname(os.path.abspath(pycnn.__file__)))
    try:
        sha = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit = f"git {sha}{' + uncommitted changes' if dirty else ''}" if sha else "not a git checkout"
    except (OSError, subprocess.SubprocessError):
        commit = "git unavailable"
    return f"pycnn from {os.path.dirname(core)} ({commit}), _core built {built}"


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


class OtherLoad:
    """How many cores other processes kept busy since this object was made.

    Machine-wide busy time from /proc/stat minus the CPU time of this process, its
    waited-for children (os.times) and the live processes in ``pids`` (our worker
    subprocesses), divided by the wall time. The benchmark machine may be shared; a value
    well above 0 means the timings were disturbed.
    """

    def __init__(self, pids: Sequence[int] = ()):
        self.pids = list(pids)
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> Optional[float]:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal ...
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")

    def _own(self) -> float:
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total

    def cores(self) -> Optional[float]:
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        return max(0.0, (busy - self.busy0) - (self._own() - self.own0)) / max(wall, 1e-9)

    def report(self) -> str:
        c = self.cores()
        if c is None:
            return "CPU use of other processes: unknown (no /proc/stat)"
        return f"other processes kept {c:.2f} of {usable_cores()} cores busy on average during this run"


#: A measurement during which other processes used more cores than this is repeated.
DISTURBED_CORES = 0.2


def undisturbed(measure: Callable[[], object], pids: Sequence[int] = (), tries: int = 3, pause_s: float = 2.0):
    """Run ``measure()`` until other processes stayed (nearly) idle during it.

    Up to ``tries`` attempts, pausing between them; returns (result, other cores) of the
    least disturbed attempt, so a caller can flag a result that never ran undisturbed.
    """
    best = None
    for attempt in range(tries):
        mon = OtherLoad(pids)
        result = measure()
        other = mon.cores() or 0.0
        if best is None or other < best[1]:
            best = (result, other)
        if other <= DISTURBED_CORES:
            break
        time.sleep(pause_s)
    return best


def blas_info() -> str:
    if threadpool_info is None:
        return "threadpoolctl missing (NumPy BLAS threads not pinned)"
    parts = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            parts.append(f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture', '?')})")
    return ", ".join(parts) or "none found"


def header_lines(torch_ver: Optional[str] = None) -> list:
    """Lines describing the machine and configuration; print them above every table."""
    info = pycnn.build_info()
    keys = ("version", "compiler", "build_type", "openmp", "openmp_version", "cuda", "native_arch",
            "isa_detected", "isa_active", "isa_compiled", "num_threads")
    build = ", ".join(f"{k}={info[k]}" for k in keys if k in info)
    env = [f"{k}={'unset' if _ENV_AT_START[k] is None else _ENV_AT_START[k]}" for k in THREAD_ENV]
    if _ENV_AT_START["OPENBLAS_THREAD_TIMEOUT"] is None:
        env[-1] += " (set to 4 in this process by bench/_common.py: idle OpenBLAS threads sleep at once)"
    return [
        f"pycnn build_info: {build}",
        source_info(),
        f"CPU: {cpu_model()} [{cpu_flags()}], usable cores: {usable_cores()} (os.cpu_count={os.cpu_count()}), "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}, NumPy {np.__version__} (BLAS: {blas_info()}), "
        f"PyTorch {torch_ver or 'not installed'}",
        "env at start: " + ", ".join(env),
        f"OpenMP wait policy in this process: {_POLICY_NOTE}; OpenMP runtimes loaded: {openmp_runtimes()}",
        f"load average at start (1, 5, 15 min): {load_average()} (other processes compete for the cores)",
    ]


def print_header(title: str, torch_ver: Optional[str] = None, extra: Sequence[str] = ()) -> None:
    print(f"## {title}")
    print()
    for line in header_lines(torch_ver) + list(extra):
        print(f"- {line}")
    print()


# ----------------------------------------------------------------------------- threads

class Threads:
    """Pins pycnn, torch and NumPy's BLAS to ``n`` threads for the duration of a ``with`` block."""

    def __init__(self, n: int, torch=None):
        self.n, self.torch = n, torch

    def __enter__(self):
        self._old = (pycnn.get_num_threads(), self.torch.get_num_threads() if self.torch else None)
        pycnn.set_num_threads(self.n)
        if self.torch is not None:
            self.torch.set_num_threads(self.n)
        # Only the BLAS pool: pycnn and torch share libgomp here, and each sets its own count.
        self._blas = threadpool_limits(limits=self.n, user_api="blas") if threadpool_limits else None
        return self

    def __exit__(self, *exc):
        if self._blas is not None:
            self._blas.restore_original_limits()
        pycnn.set_num_threads(self._old[0])
        if self.torch is not None:
            self.torch.set_num_threads(self._old[1])


def parse_threads(text: Optional[str]) -> list:
    """'1,2' / 'all' / None -> list of positive ints (None means all usable cores)."""
    if text is None or text == "all":
        return [usable_cores()]
    out = []
    for part in text.split(","):
        part = part.strip()
        n = usable_cores() if part == "all" else int(part)
        if n < 1:
            raise SystemExit(f"--threads expected positive integers or 'all'. Received: {text!r}.")
        out.append(n)
    return out


def parse_ints(text: str, arg: str) -> list:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise SystemExit(f"{arg} expected comma-separated positive integers. Received: {text!r}.")
    return values


# ----------------------------------------------------------------------------- timing

@dataclass
class Timing:
    median_ms: float
    min_ms: float
    reps: int

    def __str__(self) -> str:
        return f"{fmt_ms(self.median_ms)} ({fmt_ms(self.min_ms)})"


def fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def interleaved(fns: Dict[str, Callable[[], object]], budget_s: float, min_reps: int = 3,
                max_reps: int = 200, warmup: int = 2) -> Dict[str, Timing]:
    """Time several callables in rounds (A B C A B C ...) so drifting load hits all alike.

    Each callable is warmed up ``warmup`` times, then every round calls each once; rounds
    continue until ``budget_s`` seconds have been spent (at least ``min_reps`` rounds, at
    most ``max_reps``). Returns median and min per name, in milliseconds.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, list] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_reps and (rounds < min_reps or time.perf_counter() - start < budget_s):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
        rounds += 1
    return {k: Timing(statistics.median(v), min(v), len(v)) for k, v in samples.items()}


def ratio(peer: Optional[Timing], mine: Optional[Timing]) -> str:
    """peer_ms / pycnn_ms of the medians (>1 means pycnn is faster)."""
    if peer is None or mine is None:
        return "-"
    return f"{peer.median_ms / mine.median_ms:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- checks

def assert_close(name: str, got, want, rtol: float = 1e-3, atol_frac: float = 1e-4) -> float:
    """Float32 agreement check: |got - want| <= atol + rtol |want| with atol = atol_frac * max|want|.

    The absolute part scales with the array's magnitude so that long float32 sums (a conv
    weight gradient sums N*OH*OW products) compare fairly. Returns the max abs difference.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != {want.shape}")
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_frac * max(scale, 1e-6), err_msg=name)
    return float(np.max(np.abs(got - want))) if want.size else 0.0


# ----------------------------------------------------------------------------- the NumPy oracle

# The tests' float64 oracle (tests/oracle): every op's forward and backward in plain NumPy.
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
import oracle  # noqa: E402

#: (OH, OW, PT, PB, PL, PR) of a window op, TensorFlow's 'same' arithmetic (odd pixel bottom/right).
geometry = oracle.geometry
