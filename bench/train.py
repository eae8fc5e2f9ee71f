"""Training benchmark: whole networks, pycnn (train_on_batch) vs PyTorch (the usual loop).

    python bench/train.py [--quick] [--threads N] [--models tiny,lenet,heavy,strided,lenet_bn,heavy_bn]
                          [--batches 32,64,128,256] [--time-to-accuracy] [--omp-wait-policy P]
                          [--device cpu|cuda|cuda-emulated]

--device cuda trains pycnn with compile(device="cuda") (the CUDA executor, weights resident on
the GPU: the timed step is the model's training step, as fit runs it, without the per-call
weight copies train_on_batch makes) against PyTorch with the model and batch on the same GPU
(loss.item() each step in both: one host sync per step; FP32 in both: PyTorch's TF32 is
turned off, as pycnn's GEMMs are cuBLAS SGEMM); the CPU-only tables (inference,
thread scaling, load) are skipped. cuda-emulated runs pycnn's CUDA executor on the host
emulation (a correctness check of the benchmark's path, not a speed measurement).

Networks, built with pycnn.models and mirrored layer by layer in torch.nn.Sequential: tiny
(Conv2D(4, 3, relu) on 8x8x1, Flatten, Dense(10, softmax), batch 8: a few microseconds of
arithmetic, so its step time is the fixed cost of one train_on_batch call), LeNet on 32x32x3 (batches 32, 64, 128, 256), the lecture's heavy Fashion-MNIST model (four
7x7 'valid' relu convs 32-64-128-256, dense 10 softmax; batches 32 and 128) and its strided
model (3x3 relu convs 32..512 with strides 1,2,1,2,1; batch 64); lenet_bn and heavy_bn are
LeNet and the heavy model with a BatchNormalization after every convolution (conv without
bias -> BN -> relu; torch.nn.BatchNorm2d with momentum 1 - Keras's). One training step is
forward, loss (sparse categorical cross-entropy), backward and an Adam step (lr 1e-3,
epsilon 1e-7 in both: Keras's value, which pycnn uses).

How it measures:
- Each framework runs in its own worker subprocess (this script with --worker), started
  fresh for every configuration, with the thread environment the user started with: pycnn
  as shipped (its import sets OMP_WAIT_POLICY=PASSIVE unless the user set it) and torch as
  shipped (libgomp's default policy). In one process they would share libgomp and thus one
  wait policy, which would slow one of them down (--omp-wait-policy forces one for both).
- Both workers get the same initial weights (pycnn's, converted: conv (KH,KW,C,F) ->
  (F,C,KH,KW), dense (in,out) -> (out,in), the first dense after Flatten permuted from
  NHWC to NCHW flatten order) and the same batch (torch's converted to NCHW once). Before
  timing, the losses on that batch must agree, before and after one Adam step.
- Timed rounds alternate between the workers (pycnn, torch, pycnn, torch, ...); each round
  is a few steps timed with time.perf_counter inside the worker; images/s comes from the
  median round. Peak memory is the worker's peak RSS at the end (VmHWM; ru_maxrss where
  /proc is missing, see _peak_rss_bytes), shown as the increase over the RSS after import +
  model build, and in absolute.
- Also: LeNet inference (predict, batch 256), thread scaling of LeNet training (1 vs 2
  threads), and LeNet training at 2 threads while a busy-loop process occupies one core.
- --time-to-accuracy (not with --quick): LeNet on the real CIFAR-10 (PYCNN_DATA_DIR), Adam
  1e-3, batch 64, inputs / 255, test accuracy after each epoch; wall time to 60 % (cap 15
  epochs), pycnn with model.fit, torch with a plain loop, one after the other.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import _common as C  # first: it configures OpenBLAS before NumPy is loaded

import numpy as np

# model key -> (pycnn.models builder, input shape, default batches); "tiny" is built here: a
# network whose arithmetic is a few microseconds, so its step time is the fixed per-step cost.
MODELS = {
    "tiny": ("tiny", (8, 8, 1), [8]),
    "lenet": ("lenet", (32, 32, 3), [32, 64, 128, 256]),
    "heavy": ("fashion_mnist_cnn", (28, 28, 1), [32, 128]),
    "strided": ("strided_cnn", (28, 28, 1), [64]),
    "lenet_bn": ("lenet_bn", (32, 32, 3), [64, 256]),
    "heavy_bn": ("fashion_mnist_cnn_bn", (28, 28, 1), [32, 128]),
    # The speed-run network (pycnn.models.speedrun_cifar10: GELU, BN without scale, logits x 1/9);
    # torch runs it channels_last, its fastest CPU layout for these convolutions.
    "speedrun": ("speedrun_cifar10", (32, 32, 3), [256]),
}
CHANNELS_LAST = {"speedrun_cifar10"}
LR, EPS, BETA_2 = 1e-3, 1e-7, 0.999
# pycnn's Adam (Keras form) adds epsilon to sqrt(v) before bias correction, torch after it.
# Step t then matches with torch eps = EPS / sqrt(1 - BETA_2**t); it is exact for the first
# step, which the loss check compares, and off by under 3e-6 in epsilon afterwards.
TORCH_EPS = EPS / (1.0 - BETA_2) ** 0.5
MIB = 1024.0 * 1024.0


# ============================================================================ model description

def build_pycnn(builder: str, input_shape, device: str = "cpu"):
    """The pycnn model, compiled for training (Adam 1e-3, sparse categorical cross-entropy)."""
    from pycnn import layers, models, optimizers
    if builder == "tiny":  # Conv2D(4, 3, relu) -> Flatten -> Dense(10, softmax)
        model = models.Sequential([layers.Input(tuple(input_shape)), layers.Conv2D(4, 3, activation="relu"),
                                   layers.Flatten(), layers.Dense(10, activation="softmax")])
    else:
        model = getattr(models, builder)(input_shape=tuple(input_shape))
    from pycnn import losses
    logits = getattr(model.layers[-1], "activation", None) != "softmax"  # the speed-run network ends in logits
    model.compile(optimizer=optimizers.Adam(learning_rate=LR, epsilon=EPS),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=logits), device=device)
    return model


def describe(model) -> list:
    """Layer list that the torch worker mirrors: dicts with the layer kind and hyper-parameters."""
    spec = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "Convolution2D"):
            spec.append(dict(kind="conv", filters=layer.filters, kernel=list(layer.kernel_size),
                             strides=list(layer.strides), padding=layer.padding, activation=layer.activation,
                             use_bias=layer.use_bias))
        elif kind in ("MaxPooling2D", "MaxPool2D"):
            spec.append(dict(kind="maxpool", pool=list(layer.pool_size), strides=list(layer.strides),
                             padding=layer.padding))
        elif kind == "Flatten":
            spec.append(dict(kind="flatten"))
        elif kind == "BatchNormalization":
            spec.append(dict(kind="batchnorm", momentum=layer.momentum, epsilon=layer.epsilon,
                             center=layer.center, scale=layer.scale))
        elif kind == "Activation":
            spec.append(dict(kind="activation", activation=layer.activation))
        elif kind == "Rescaling":
            spec.append(dict(kind="rescaling", scale=float(layer.scale), offset=float(layer.offset)))
        elif kind == "Dense":
            spec.append(dict(kind="dense", units=layer.units, activation=layer.activation,
                             use_bias=layer.use_bias))
        elif kind in ("InputLayer",):
            continue
        else:
            raise SystemExit(f"train.py cannot mirror layer {layer.name!r} of type {kind} in torch.")
        spec[-1]["output_shape"] = list(layer.output_shape[1:])
    return spec


def build_torch(torch, spec, input_shape, weights):
    """nn.Sequential mirroring ``spec`` (NCHW), initialised from pycnn's Keras-order weights.

    The last softmax is left out: F.cross_entropy takes logits (pycnn fuses softmax and the
    loss the same way). Returns (model, ends_with_softmax).
    """
    nn = torch.nn
    mods, shape, it = [], tuple(input_shape), iter(weights)
    flat_from = None
    softmax_last = False
    for i, layer in enumerate(spec):
        last = i == len(spec) - 1
        if layer["kind"] == "conv":
            H, W, Cin = shape
            (KH, KW), (SH, SW) = layer["kernel"], layer["strides"]
            OH, OW, PT, PB, PL, PR = C.geometry(H, W, KH, KW, SH, SW, layer["padding"])
            if (PT, PL) != (PB, PR):
                mods.append(nn.ZeroPad2d((PL, PR, PT, PB)))
                PT = PL = 0
            conv = nn.Conv2d(Cin, layer["filters"], (KH, KW), stride=(SH, SW), padding=(PT, PL),
                             bias=layer["use_bias"])
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(next(it).transpose(3, 2, 0, 1))))
                if layer["use_bias"]:
                    conv.bias.copy_(torch.from_numpy(next(it)))
            mods.append(conv)
            act = layer["activation"]
        elif layer["kind"] == "maxpool":
            H, W, Cin = shape
            if layer["padding"] != "valid":
                raise SystemExit("train.py mirrors only 'valid' max pooling in torch.")
            mods.append(nn.MaxPool2d(tuple(layer["pool"]), stride=tuple(layer["strides"])))
            act = "linear"
        elif layer["kind"] == "flatten":
            flat_from = shape
            mods.append(nn.Flatten())
            act = "linear"
        elif layer["kind"] == "batchnorm":
            # Keras's momentum m is torch's 1 - m; weights gamma, beta, moving mean, moving variance.
            if not layer["center"]:
                raise SystemExit("train.py mirrors BatchNormalization with center only.")
            bn_cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            bn = bn_cls(shape[-1], eps=layer["epsilon"], momentum=1.0 - layer["momentum"])
            targets = (bn.weight, bn.bias, bn.running_mean, bn.running_var) if layer["scale"] else \
                (bn.bias, bn.running_mean, bn.running_var)
            if not layer["scale"]:  # scale=False: gamma is 1, not trained
                bn.weight.requires_grad_(False)
            with torch.no_grad():
                for target in targets:
                    target.copy_(torch.from_numpy(next(it)))
            mods.append(bn)
            act = "linear"
        elif layer["kind"] == "activation":
            act = layer["activation"]
        elif layer["kind"] == "rescaling":
            mods.append(_Affine(layer["scale"], layer["offset"]))
            act = "linear"
        else:  # dense
            fan_in = int(np.prod(shape))
            kernel = next(it)
            if flat_from is not None:  # pycnn flattened (H, W, C); torch flattens (C, H, W)
                H, W, Cin = flat_from
                kernel = kernel.reshape(H, W, Cin, -1).transpose(2, 0, 1, 3).reshape(fan_in, -1)
                flat_from = None
            lin = nn.Linear(fan_in, layer["units"], bias=layer["use_bias"])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
                if layer["use_bias"]:
                    lin.bias.copy_(torch.from_numpy(next(it)))
            mods.append(lin)
            act = layer["activation"]
        if act == "softmax":
            if not last:
                raise SystemExit("train.py mirrors softmax only on the last layer.")
            softmax_last = True
        elif act != "linear":
            mods.append({"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}[act]())
        shape = tuple(layer["output_shape"])
    return nn.Sequential(*mods), softmax_last


def _Affine(scale: float, offset: float):
    """x * scale + offset as a torch module (Keras's Rescaling)."""
    import torch

    class Affine(torch.nn.Module):
        def forward(self, x):
            return x * scale + offset

    return Affine()


def make_batch(batch: int, input_shape, seed: int):
    """The synthetic batch both workers train on: uniform [0, 1) images, labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + tuple(input_shape), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    return x, y


# ============================================================================ worker side

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM where /proc has it, else ru_maxrss.

    On Linux ru_maxrss keeps the high-water mark of the address space the process had before
    exec, i.e. the parent's RSS at fork (about 226 MiB here once the parent imported torch),
    which hid the pycnn worker's own ~55 MiB peak. VmHWM covers only the worker's own memory.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _send(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker(cfg: dict) -> None:
    """Serve commands (JSON lines on stdin) for one framework and one configuration."""
    framework, threads = cfg["framework"], cfg["threads"]
    policy = cfg.get("policy")
    x, y = make_batch(cfg["batch"], cfg["input_shape"], cfg["seed"])
    weights_npz = np.load(cfg["weights"])
    weights = [weights_npz[f"w{i}"] for i in range(len(weights_npz.files))]
    if C.threadpool_limits is not None:
        C.threadpool_limits(limits=threads, user_api="blas")

    if framework == "pycnn":
        pycnn = C.init(policy)
        pycnn.set_num_threads(threads)
        device = cfg.get("device", "cpu")
        model = build_pycnn(cfg["builder"], cfg["input_shape"], device)
        model.set_weights(weights)
        labels = y.reshape(-1, 1).astype(np.int64)

        def step() -> float:
            if device == "cpu":
                return float(model.train_on_batch(x, y))
            return float(model._step.train([x], labels, None)[0])  # as fit: the weights stay on the device

        def loss_now() -> float:
            model._step.device_sync()
            return float(model.test_on_batch(x, y))

        def predict():
            return model.predict(x, batch_size=x.shape[0], verbose=0)
    else:
        if policy in ("passive", "active"):
            os.environ["OMP_WAIT_POLICY"] = policy.upper()
        import torch
        torch.set_num_threads(threads)
        F = torch.nn.functional
        model, _ = build_torch(torch, cfg["spec"], cfg["input_shape"], weights)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y)
        if cfg.get("device") == "cuda":
            # FP32 as pycnn computes (cuBLAS SGEMM): no TF32 in cuDNN's convolutions or the GEMMs.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            model, xt, yt = model.cuda(), xt.cuda(), yt.cuda()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR, eps=TORCH_EPS)
        if cfg["builder"] in CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
            xt = xt.contiguous(memory_format=torch.channels_last)

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xt), yt)
            loss.backward()
            opt.step()
            return loss.item()

        # Inference mode for both, as pycnn's test_on_batch / predict: BatchNorm's running statistics.
        def loss_now() -> float:
            model.eval()
            with torch.no_grad():
                loss = float(F.cross_entropy(model(xt), yt))
            model.train()
            return loss

        def predict():
            model.eval()
            with torch.inference_mode():
                out = torch.softmax(model(xt), dim=1).cpu().numpy()
            model.train()
            return out

    _send({"ready": True, "rss_build": _rss_bytes(), "maxrss_build": _peak_rss_bytes()})
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["cmd"]
        if op == "check":
            loss0 = step()
            _send({"loss0": loss0, "loss1": loss_now()})
        elif op == "run":
            fn = predict if cmd.get("predict") else step
            t0 = time.perf_counter()
            for _ in range(cmd["steps"]):
                fn()
            _send({"seconds": time.perf_counter() - t0})
        elif op == "predict_out":
            np.save(cmd["path"], predict())
            _send({"ok": True})
        elif op == "quit":
            _send({"maxrss": _peak_rss_bytes()})
            return


# ============================================================================ parent side

class Worker:
    """One framework's worker subprocess and its JSON-lines pipe."""

    def __init__(self, cfg: dict, env: dict, cpus=None):
        self.name = cfg["framework"]
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=pin(cpus))
        self.ready = self._recv()

    def _recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"{self.name} worker exited with status {self.proc.returncode} (see stderr above)")
        return json.loads(line)

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._recv()

    def close(self) -> dict:
        out = self.call(cmd="quit")
        self.proc.stdin.close()
        self.proc.wait()
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def pin(cpus):
    """preexec_fn restricting a child to ``cpus`` (None: no restriction)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def worker_env() -> dict:
    """The environment the user started with (undoing pycnn's import-time setdefault here)."""
    env = dict(os.environ)
    for k, v in C._ENV_AT_START.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class Bench:
    def __init__(self, args, have_torch: bool, tmp: str):
        self.args, self.have_torch, self.tmp = args, have_torch, tmp
        self.quick = args.quick
        self.policy = args.omp_wait_policy
        self.env = worker_env()
        self.cache = {}
        self.models = {}

    def model_files(self, key: str):
        """(spec, weights path) of a model key: pycnn's initial weights with seed 0."""
        if key not in self.models:
            builder, input_shape, _ = MODELS[key]
            from pycnn import utils
            utils.set_random_seed(0)
            model = build_pycnn(builder, input_shape)
            path = os.path.join(self.tmp, f"{key}.npz")
            np.savez(path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
            self.models[key] = (describe(model), path, model.count_params())
        return self.models[key]

    def run(self, key: str, batch: int, threads: int, predict: bool = False, neighbour: bool = False) -> dict:
        """Check, then time one configuration; returns per-framework results (cached)."""
        ck = (key, batch, threads, predict, neighbour)
        if ck in self.cache:
            return self.cache[ck]
        builder, input_shape, _ = MODELS[key]
        spec, wpath, _ = self.model_files(key)
        base = dict(builder=builder, input_shape=list(input_shape), batch=batch, threads=threads, seed=1,
                    weights=wpath, spec=spec, policy=self.policy, device=self.args.device)
        names = ["pycnn"] + (["torch"] if self.have_torch else [])
        workers, busy = {}, None
        # With a neighbour, workers and neighbour share two cores however many the machine has,
        # so the row means the same everywhere: 2 threads, one of the 2 cores taken.
        cpus = sorted(os.sched_getaffinity(0))[:2] if neighbour and hasattr(os, "sched_getaffinity") else None
        try:
            for n in names:
                workers[n] = Worker(dict(base, framework=n), self.env, cpus)
            res = {n: {"rss_build": workers[n].ready["rss_build"]} for n in names}
            label = f"{key} batch {batch}, {threads} thread{'s' if threads > 1 else ''}" + \
                (", predict" if predict else "") + (", busy neighbour" if neighbour else "")
            self.check(label, workers, predict)
            pids = [w.proc.pid for w in workers.values()]
            if neighbour:
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin(cpus[-1:] if cpus else None))
                pids.append(busy.pid)  # our own, deliberate load: not "other processes"
            per_step, other = self.time(workers, predict, pids)
            res["other"] = other
            for n in names:
                res[n]["step_ms"] = per_step[n]
                res[n]["ips"] = batch / (per_step[n].median_ms / 1e3)
            if busy is not None:
                busy.kill()
                busy.wait()
                busy = None
            for n in names:
                res[n]["maxrss"] = workers[n].close()["maxrss"]
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
            for w in workers.values():
                w.kill()
        self.cache[ck] = res
        return res

    def check(self, label: str, workers: dict, predict: bool) -> None:
        if predict:
            outs = {}
            for n, w in workers.items():
                path = os.path.join(self.tmp, f"pred_{n}.npy")
                w.call(cmd="predict_out", path=path)
                outs[n] = np.load(path)
            msg = f"checked {label}: pycnn predict output shape {outs['pycnn'].shape}"
            if "torch" in outs:
                diff = C.assert_close(f"{label} predict vs torch", outs["pycnn"], outs["torch"],
                                      rtol=1e-4, atol_frac=1e-5)
                msg += f", max|pycnn - torch| {diff:.1e}"
            print(msg, flush=True)
            return
        r = {n: w.call(cmd="check") for n, w in workers.items()}
        msg = f"checked {label}: loss pycnn {r['pycnn']['loss0']:.6f}"
        if "torch" in r:
            msg += f" torch {r['torch']['loss0']:.6f}"
        msg += f"; after one Adam step pycnn {r['pycnn']['loss1']:.6f}"
        if "torch" in r:
            msg += f" torch {r['torch']['loss1']:.6f}"
            C.assert_close(f"{label} loss", r["pycnn"]["loss0"], r["torch"]["loss0"], rtol=1e-4, atol_frac=0)
            # On a GPU both sum in other orders than on the CPU, and Adam's first step (about
            # lr * sign(g)) turns those differences in near-zero gradients into whole steps.
            C.assert_close(f"{label} loss after one Adam step", r["pycnn"]["loss1"], r["torch"]["loss1"],
                           rtol=1e-4 if self.args.device == "cpu" else 1e-3, atol_frac=0)
        if not np.isfinite(r["pycnn"]["loss1"]):
            raise AssertionError(f"{label}: pycnn's loss is not finite after one Adam step: {r['pycnn']}")
        print(msg, flush=True)

    def time(self, workers: dict, predict: bool, pids) -> tuple:
        """Interleaved rounds A B A B ...; returns ({framework: per-step C.Timing}, other processes' cores).

        Repeated (up to 3 times, not with --quick) when other processes were busy meanwhile."""
        target = 0.15 if self.quick else 0.5            # seconds per round per framework
        rounds = 3 if self.quick else 7
        est = {}
        for n, w in workers.items():                    # warm-up, also gives a step-time estimate
            w.call(cmd="run", steps=1, predict=predict)
            est[n] = w.call(cmd="run", steps=2, predict=predict)["seconds"] / 2
        steps = max(1, round(target / max(min(est.values()), 1e-6)))

        def measure():
            samples = {n: [] for n in workers}
            for _ in range(rounds):
                for n, w in workers.items():
                    samples[n].append(w.call(cmd="run", steps=steps, predict=predict)["seconds"] / steps * 1e3)
            return {n: C.Timing(statistics.median(v), min(v), len(v) * steps) for n, v in samples.items()}

        return C.undisturbed(measure, pids, tries=1 if self.quick else 3)


def flag(r: dict) -> str:
    """' (*x)' when other processes kept x cores busy during the timed rounds, even after retries."""
    return f" (*{r['other']:.1f})" if r["other"] > C.DISTURBED_CORES else ""


def mib(b: float) -> str:
    return f"{b / MIB:.0f}"


def fmt_ips(v: float) -> str:
    return f"{v:,.0f}"


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="LeNet batch 64 only, short rounds (~30 s)")
    ap.add_argument("--threads", default=None, help="thread count(s) for the main table (default: all cores)")
    ap.add_argument("--models", default=None,
                    help="comma-separated subset of tiny,lenet,heavy,strided,lenet_bn,heavy_bn,speedrun")
    ap.add_argument("--batches", default=None, help="batch sizes for every model (default: per model)")
    ap.add_argument("--time-to-accuracy", action="store_true",
                    help="also train LeNet on CIFAR-10 to 60%% test accuracy with both (minutes)")
    ap.add_argument("--omp-wait-policy", choices=C.WAIT_POLICIES, default=None,
                    help="force one OpenMP wait policy on both workers (default: each framework as shipped)")
    ap.add_argument("--device", choices=("cpu", "cuda", "cuda-emulated"), default="cpu",
                    help="where pycnn (compile(device=...)) and PyTorch train (default: cpu)")
    args = ap.parse_args()
    if args.quick and args.time_to_accuracy:
        raise SystemExit("--time-to-accuracy takes minutes; run it without --quick.")
    threads = C.parse_threads(args.threads)
    model_keys = (args.models or ("tiny,lenet" if args.quick else "tiny,lenet,heavy,strided")).split(",")
    for k in model_keys:
        if k not in MODELS:
            raise SystemExit(f"--models expected names from {', '.join(MODELS)}. Received: {k!r}.")
    batches = C.parse_ints(args.batches, "--batches") if args.batches else None

    C.init(None)
    torch = C.import_torch()  # prints a note when missing; the parent only reads its version
    have_torch = torch is not None
    torch_ver = torch.__version__ if have_torch else None
    user_policy = C._ENV_AT_START["OMP_WAIT_POLICY"]
    if args.omp_wait_policy is not None:
        policy = f"--omp-wait-policy {args.omp_wait_policy} in both workers"
    elif user_policy is not None:
        policy = f"OMP_WAIT_POLICY={user_policy} from the environment, in both workers"
    else:
        policy = ("each framework as shipped: pycnn worker OMP_WAIT_POLICY=PASSIVE (pycnn's import-time "
                  "default), torch worker libgomp's default")
    extra = [f"workers: one subprocess per framework and configuration; wait policy: {policy}"]
    if args.device != "cpu":
        import pycnn
        gpu = pycnn.cuda.device_name() if pycnn.cuda.is_available() else pycnn.cuda.why_unavailable()
        torch_gpu = torch.cuda.get_device_name(0) if have_torch and torch.cuda.is_available() else "no CUDA"
        extra.append(f"device: pycnn {args.device} ({gpu}; {pycnn.cuda.build_info()}), PyTorch "
                     f"{'cuda' if args.device == 'cuda' else 'cpu'} ({torch_gpu})")
    C.print_header("pycnn training benchmark: pycnn vs PyTorch, whole networks", torch_ver, extra=extra)
    t_start = time.perf_counter()
    load = C.OtherLoad()

    with tempfile.TemporaryDirectory(prefix="pycnn-bench-") as tmp:
        bench = Bench(args, have_torch, tmp)
        # ---------------------------------------------------------------- training throughput
        rows = []
        for key in model_keys:
            for batch in (batches or ([64] if args.quick and key == "lenet" else MODELS[key][2])):
                for n in threads:
                    r = bench.run(key, batch, n)
                    rows.append(train_row(key, batch, n, r, bench.models[key][2], have_torch))
        print()
        print("### Training throughput (forward + loss + backward + Adam step)")
        print()
        print(C.markdown_table(["model", "params", "batch", "threads", "pycnn img/s", "PyTorch img/s",
                                "pycnn/torch speed", "pycnn step ms", "PyTorch step ms",
                                "pycnn peak RSS +MiB (abs)", "PyTorch peak RSS +MiB (abs)"], rows))
        print()
        print("Step ms: median (min) over rounds. pycnn/torch speed = pycnn img/s / PyTorch img/s "
              "(> 1 means pycnn is faster). Peak RSS: the worker's peak RSS (VmHWM) at the end minus "
              "its RSS after import + model build (absolute peak in MiB). tiny = Conv2D(4, 3, relu) on 8x8x1 "
              "-> Flatten -> Dense(10, softmax): its step time is the fixed cost of a train_on_batch call.")
        print()

        if args.device != "cpu":  # the rest measures CPU concerns (threads, load) and the CPU predict
            print(f"Total wall time {time.perf_counter() - t_start:.0f} s; {load.report()}.")
            return
        # ---------------------------------------------------------------- inference
        nmax = max(threads)
        r = bench.run("lenet", 256, nmax, predict=True)
        rows = [["lenet", f"256{flag(r)}", nmax, fmt_ips(r["pycnn"]["ips"]), fmt_ips(r["torch"]["ips"]) if have_torch else "-",
                 f"{r['pycnn']['ips'] / r['torch']['ips']:.2f}" if have_torch else "-",
                 str(r["pycnn"]["step_ms"]), str(r["torch"]["step_ms"]) if have_torch else "-"]]
        print("### Inference (pycnn model.predict vs torch.inference_mode + softmax)")
        print()
        print(C.markdown_table(["model", "batch", "threads", "pycnn img/s", "PyTorch img/s", "pycnn/torch speed",
                                "pycnn ms/batch", "PyTorch ms/batch"], rows))
        print()

        # ---------------------------------------------------------------- thread scaling + load
        cores = C.usable_cores()
        counts = [1, 2] if cores >= 2 else [1]
        scale = {n: bench.run("lenet", 64, n) for n in counts}
        fws = ["pycnn"] + (["torch"] if have_torch else [])
        rows = []
        for fw in fws:
            row = [fw] + [fmt_ips(scale[n][fw]["ips"]) + flag(scale[n]) for n in counts]
            if len(counts) == 2:
                row.append(f"{scale[2][fw]['ips'] / scale[1][fw]['ips']:.2f}")
            rows.append(row)
        print("### Thread scaling, LeNet training, batch 64")
        print()
        print(C.markdown_table(["framework"] + [f"img/s @{n} thread{'s' if n > 1 else ''}" for n in counts]
                               + (["speedup 2 vs 1"] if len(counts) == 2 else []), rows))
        print()
        nload = min(2, cores)
        loaded = bench.run("lenet", 64, nload, neighbour=True)
        idle = bench.run("lenet", 64, nload)
        rows = [[fw, nload, fmt_ips(idle[fw]["ips"]) + flag(idle), fmt_ips(loaded[fw]["ips"]) + flag(loaded),
                 f"{loaded[fw]['ips'] / idle[fw]['ips']:.2f}", str(loaded[fw]["step_ms"])] for fw in fws]
        print("### Under load: LeNet training, batch 64, while `python -c \"while True: pass\"` occupies one of "
              "the two cores the workers run on")
        print()
        print(C.markdown_table(["framework", "threads", "img/s idle", "img/s under load", "loaded/idle",
                                "step ms under load"], rows))
        if have_torch:
            print()
            print(f"Under load, pycnn/torch speed: {loaded['pycnn']['ips'] / loaded['torch']['ips']:.2f}")
        print()

        if args.time_to_accuracy:
            time_to_accuracy(bench, threads[0], have_torch, tmp)
    print(f"(*x) marks a measurement during which other processes kept x cores busy on average (more than "
          f"{C.DISTURBED_CORES}) even after retries.")
    print(f"Total wall time {time.perf_counter() - t_start:.0f} s; {load.report()}.")


def train_row(key, batch, n, r, params, have_torch):
    p, t = r["pycnn"], r.get("torch")
    return [key, f"{params:,}", f"{batch}{flag(r)}", n, fmt_ips(p["ips"]), fmt_ips(t["ips"]) if t else "-",
            f"{p['ips'] / t['ips']:.2f}" if t else "-", str(p["step_ms"]), str(t["step_ms"]) if t else "-",
            f"{mib(p['maxrss'] - p['rss_build'])} ({mib(p['maxrss'])})",
            f"{mib(t['maxrss'] - t['rss_build'])} ({mib(t['maxrss'])})" if t else "-"]


# ============================================================================ time to accuracy

TTA_TARGET, TTA_EPOCHS, TTA_BATCH = 0.60, 15, 64


def tta_worker(cfg: dict) -> None:
    """Train LeNet epoch by epoch on the saved CIFAR-10 arrays; print one JSON line per epoch."""
    framework, threads = cfg["framework"], cfg["threads"]
    d = cfg["data"]
    x_train = np.load(os.path.join(d, "x_train.npy"))
    y_train = np.load(os.path.join(d, "y_train.npy"))
    x_test = np.load(os.path.join(d, "x_test.npy"))
    y_test = np.load(os.path.join(d, "y_test.npy"))
    wz = np.load(cfg["weights"])
    weights = [wz[f"w{i}"] for i in range(len(wz.files))]
    if framework == "pycnn":
        pycnn = C.init(cfg.get("policy"))
        pycnn.set_num_threads(threads)
        from pycnn import utils
        utils.set_random_seed(cfg["seed"])
        model = build_pycnn("lenet", (32, 32, 3))
        model.set_weights(weights)

        def epoch():
            model.fit(x_train, y_train, batch_size=TTA_BATCH, epochs=1, shuffle=True, verbose=0)

        def accuracy() -> float:
            return float(np.mean(model.predict(x_test, batch_size=1000, verbose=0).argmax(axis=1) == y_test))
    else:
        policy = cfg.get("policy")
        if policy in ("passive", "active"):
            os.environ["OMP_WAIT_POLICY"] = policy.upper()
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(cfg["seed"])
        F = torch.nn.functional
        model, _ = build_torch(torch, cfg["spec"], (32, 32, 3), weights)
        opt = torch.optim.Adam(model.parameters(), lr=LR, eps=TORCH_EPS)
        xt = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y_train)
        xv = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
        n = xt.shape[0]

        def epoch():
            model.train()
            order = torch.randperm(n)
            for start in range(0, n, TTA_BATCH):
                idx = order[start:start + TTA_BATCH]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()

        def accuracy() -> float:
            model.eval()
            with torch.inference_mode():
                pred = torch.cat([model(xv[i:i + 1000]).argmax(1) for i in range(0, xv.shape[0], 1000)])
            return float((pred.numpy() == y_test).mean())

    train_s = 0.0
    wall0 = time.perf_counter()
    for e in range(1, TTA_EPOCHS + 1):
        t0 = time.perf_counter()
        epoch()
        train_s += time.perf_counter() - t0
        acc = accuracy()
        _send({"epoch": e, "acc": acc, "train_s": train_s, "wall_s": time.perf_counter() - wall0})
        if acc >= TTA_TARGET:
            break
    _send({"done": True})


def time_to_accuracy(bench: Bench, threads: int, have_torch: bool, tmp: str) -> None:
    from pycnn.datasets import cifar10
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    data = os.path.join(tmp, "cifar")
    os.makedirs(data, exist_ok=True)
    np.save(os.path.join(data, "x_train.npy"), x_train.astype(np.float32) / np.float32(255))
    np.save(os.path.join(data, "y_train.npy"), y_train.reshape(-1).astype(np.int64))
    np.save(os.path.join(data, "x_test.npy"), x_test.astype(np.float32) / np.float32(255))
    np.save(os.path.join(data, "y_test.npy"), y_test.reshape(-1).astype(np.int64))
    del x_train, x_test
    spec, wpath, _ = bench.model_files("lenet")
    results = {}
    for fw in ["pycnn"] + (["torch"] if have_torch else []):
        cfg = dict(framework=fw, threads=threads, data=data, weights=wpath, spec=spec, seed=2,
                   policy=bench.policy)
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--tta-worker", json.dumps(cfg)],
                                stdout=subprocess.PIPE, text=True, env=bench.env)
        epochs = []
        for line in proc.stdout:
            msg = json.loads(line)
            if msg.get("done"):
                break
            epochs.append(msg)
            print(f"time-to-accuracy {fw}: epoch {msg['epoch']} test accuracy {msg['acc']:.4f}, "
                  f"training time {msg['train_s']:.1f} s", flush=True)
        proc.wait()
        if proc.returncode:
            raise RuntimeError(f"{fw} time-to-accuracy worker failed with status {proc.returncode}")
        results[fw] = epochs
    rows = []
    for fw, epochs in results.items():
        hit = next((e for e in epochs if e["acc"] >= TTA_TARGET), None)
        best = max(e["acc"] for e in epochs)
        rows.append([fw, threads, hit["epoch"] if hit else f"not reached in {len(epochs)}",
                     f"{hit['train_s']:.1f}" if hit else "-", f"{hit['wall_s']:.1f}" if hit else "-",
                     f"{best:.4f}", f"{epochs[-1]['train_s'] / len(epochs):.1f}"])
    print()
    print(f"### Time to {TTA_TARGET:.0%} test accuracy, LeNet on CIFAR-10 (Adam 1e-3, batch {TTA_BATCH}, "
          f"x/255, same initial weights, cap {TTA_EPOCHS} epochs)")
    print()
    print(C.markdown_table(["framework", "threads", "epochs", "training s", "wall s (incl. test evals)",
                            "best test acc", "s/epoch"], rows))
    print()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--tta-worker":
        tta_worker(json.loads(sys.argv[2]))
    else:
        main()
