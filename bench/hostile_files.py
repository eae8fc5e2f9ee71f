"""Hostile model files: what loading each costs (peak memory, time) and what it answers.

    python bench/hostile_files.py [--quick]

The families of the 2026-12-04 hostile-file report (``.npz``) and the same families for
``.keras`` and legacy ``.h5`` files, each built from a small trained model and then tampered
with (the cases of tests/test_hostile_files.py, which checks the messages). Every file is
loaded with ``pycnn.models.load_model`` in a fresh subprocess; the table gives the outcome
(the start of the ValueError, or "loaded" where the hostile part is something pycnn never
reads), the wall time of the load, and the process's peak RSS during the load above its RSS
after importing pycnn and h5py (Linux: the peak is reset after the imports through
/proc/self/clear_refs, then read as VmHWM; ru_maxrss would carry the parent's peak across exec). ``--quick`` makes the zip bombs 256 MiB instead of 1 and
3 GiB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import pycnn  # noqa: E402
from pycnn import layers as L  # noqa: E402

GIB = 2**30

RUNNER = r"""
import json, sys, time
import pycnn, h5py

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS: the peak of the import is not the load's
base = status("VmRSS")
t = time.perf_counter()
try:
    if sys.argv[1] == "chain_in_code":
        x = inp = pycnn.Input((4,))
        for _ in range(1100):
            x = pycnn.layers.Activation("relu")(x)
        pycnn.Model(inp, x).predict(__import__("numpy").ones((2, 4)), verbose=0)
    else:
        pycnn.models.load_model(sys.argv[1])
    outcome = "loaded"
except ValueError as exc:
    outcome = "ValueError: " + str(exc).replace(sys.argv[1], "<file>")
except BaseException as exc:  # what must not happen
    outcome = f"{type(exc).__name__}: {exc}"
seconds = time.perf_counter() - t
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_kib": status("VmHWM"), "base_kib": base}))
"""


def small_model():
    pycnn.utils.clear_session()
    pycnn.set_random_seed(0)
    model = pycnn.Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                              L.Dense(4, activation="softmax")], name="small")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.random((8, 6, 6, 2), dtype=np.float32), rng.integers(0, 4, 8), epochs=1, verbose=0)
    return model


def bomb(path, name, size):
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as f:
            block = bytes(1 << 24)
            for _ in range(size // len(block)):
                f.write(block)
    return path


def npz_case(tmp, name, edit=None, raw=None, extra=None, arrays_edit=None):
    src = os.path.join(tmp, "src.npz")
    small_model().save(src)
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads(str(arrays.pop("__pycnn_manifest__")))
    if edit:
        edit(manifest)
    if arrays_edit:
        arrays_edit(manifest, arrays)
    path = os.path.join(tmp, name + ".npz")
    np.savez(path, __pycnn_manifest__=np.array(raw(manifest) if raw else json.dumps(manifest)), **arrays)
    if extra:
        extra(path)
    return path


def fake_header(path, manifest_key):
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}).encode()
    header += b" " * (64 - (11 + len(header)) % 64) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(64)
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members[manifest_key] = data
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)


def layer(manifest, cls):
    return next(e for e in manifest["config"]["layers"] if e["class_name"] == cls)["config"]


def keras_case(tmp, name, config_edit=None, weights_edit=None, extra=None, raw_config=None):
    import h5py

    src = os.path.join(tmp, "src.keras")
    small_model().save(src)
    with zipfile.ZipFile(src) as zf:
        parts = {i.filename: zf.read(i) for i in zf.infolist()}
    if config_edit or raw_config:
        config = json.loads(parts["config.json"])
        if config_edit:
            config_edit(config)
        parts["config.json"] = raw_config.encode() if raw_config else json.dumps(config).encode()
    if weights_edit:
        h5 = os.path.join(tmp, "w.h5")
        with open(h5, "wb") as f:
            f.write(parts["model.weights.h5"])
        with h5py.File(h5, "a") as f:
            weights_edit(f, h5py)
        with open(h5, "rb") as f:
            parts["model.weights.h5"] = f.read()
    path = os.path.join(tmp, name + ".keras")
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in parts.items():
            if not (extra and n == "config.json" and extra == "config_bomb"):
                zf.writestr(n, d)
    if extra == "config_bomb":
        bomb(path, "config.json", GIB)
    elif extra:
        extra(path)
    return path


def legacy_case(tmp, name, attrs=None, edit=None):
    import h5py

    model = small_model()
    path = os.path.join(tmp, name + ".h5")
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 2], "name": "in"}},
        {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu"}},
        {"class_name": "Flatten", "config": {"name": "flatten"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "softmax"}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"conv2d", b"flatten", b"dense"]
        g.create_group("flatten").attrs["weight_names"] = []
        for lname in ("conv2d", "dense"):
            lg = g.create_group(lname)
            lg.attrs["weight_names"] = [f"{lname}/kernel:0".encode(), f"{lname}/bias:0".encode()]
            for wname, w in zip(("kernel:0", "bias:0"), model.get_layer(lname).weights):
                lg.create_dataset(f"{lname}/{wname}", data=w)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        if edit:
            edit(f, h5py)
    return path


def cases(tmp, big):
    def chain(m):  # 3,000 Activation layers between the Conv2D and the Flatten
        entries = m["config"]["layers"]
        entries[2:2] = [{"class_name": "Activation", "config": {"name": f"a{i}", "activation": "relu"}}
                        for i in range(3000)]

    def deep(m):
        return json.dumps(m)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"

    def keras_chain(c):
        c["config"]["layers"][3:3] = [{"class_name": "Activation", "config": {"name": f"a{i}",
                                                                               "activation": "relu"}}
                                      for i in range(3000)]

    def huge_dataset(f, h5py):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(2**20, 2**20), dtype="f4", chunks=(64, 64))

    def external_link(f, h5py):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"]["0"] = h5py.ExternalLink("/etc/passwd", "/x")

    def soft_link(f, h5py):
        del f["layers/dense"]
        f["layers"]["dense"] = h5py.SoftLink("/layers/conv2d")

    def external_storage(f, h5py):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars"].create_dataset("1", shape=(4,), dtype="f4", external=[("/etc/hostname", 0, 16)])

    def nan_weights(f, h5py):
        f["layers/dense/vars/0"][...] = np.nan

    def negative_velocity(f, h5py):
        f["layers/dense/vars"]  # noqa: B018
        f["optimizer/vars/3"][...] = -1.0

    def legacy_link(f, h5py):
        del f["model_weights/dense/dense/kernel:0"]
        f["model_weights/dense/dense"]["kernel:0"] = h5py.ExternalLink("/tmp/x.h5", "/k")

    def legacy_huge(f, h5py):
        del f["model_weights/dense/dense/kernel:0"]
        f["model_weights/dense/dense"].create_dataset("kernel:0", shape=(10**6, 10**6), dtype="f4", chunks=(16, 16))

    slots = lambda m: m["optimizer_state"]["slots"]
    one = GIB // 4 if not big else GIB
    three = GIB // 4 if not big else 3 * GIB
    yield "npz", f"extra {one // 2**20} MiB member", npz_case(tmp, "extra1", extra=lambda p: bomb(p, "junk.npy", one))
    yield "npz", f"extra {three // 2**20} MiB member", npz_case(tmp, "extra3",
                                                               extra=lambda p: bomb(p, "junk.npy", three))
    yield "npz", "fake .npy header, 10^12 values", npz_case(tmp, "header", extra=lambda p: fake_header(
        p, "layer_02_dense/kernel.npy"))
    yield "npz", "Dense(units=3_000_000)", npz_case(tmp, "units3m", lambda m: layer(m, "Dense").update(units=3_000_000))
    yield "npz", "Dense(units=10**9)", npz_case(tmp, "units1e9", lambda m: layer(m, "Dense").update(units=10**9))
    yield "npz", "Conv2D(filters=10**12)", npz_case(tmp, "filters", lambda m: layer(m, "Conv2D").update(
        filters=10**12))
    yield "npz", "3000x3000 input shape", npz_case(tmp, "input3000", lambda m: layer(m, "InputLayer").update(
        shape=[3000, 3000, 2]))
    yield "npz", "ZeroPadding2D(10**5)", npz_case(tmp, "pad", lambda m: m["config"]["layers"].insert(
        1, {"class_name": "ZeroPadding2D", "config": {"name": "pad", "padding": 10**5}}))
    yield "npz", "input shape 2^70", npz_case(tmp, "shape70", lambda m: layer(m, "InputLayer").update(
        shape=[2**70, 6, 2]))
    yield "npz", "NaN Adam slots", npz_case(tmp, "nan", arrays_edit=lambda m, a: a[slots(m)[0][0]].fill(np.nan))
    yield "npz", "negative Adam velocity", npz_case(tmp, "neg", arrays_edit=lambda m, a: a[slots(m)[0][1]].fill(-1))
    yield "npz", "Adam with one slot per weight", npz_case(tmp, "oneslot", lambda m: m["optimizer_state"].update(
        slots=[k[:1] for k in slots(m)]))
    yield "npz", "iterations -1", npz_case(tmp, "iter", lambda m: m["optimizer_state"].update(iterations=-1))
    yield "npz", "RNG state out of range", npz_case(tmp, "rng", lambda m: m["training_state"]["rng"]["state"].update(
        state=2**200))
    yield "npz", "config as a list", npz_case(tmp, "cfglist", lambda m: m.update(config=[1, 2]))
    yield "npz", "config as a string", npz_case(tmp, "cfgstr", lambda m: m.update(config="Dense"))
    yield "npz", "config as an int", npz_case(tmp, "cfgint", lambda m: m.update(config=3))
    yield "npz", "100k nested JSON lists", npz_case(tmp, "deep", raw=deep)
    yield "npz", "config naming os.system", npz_case(tmp, "ossystem", lambda m: m["config"]["layers"].insert(
        1, {"class_name": "os.system", "config": {"name": "rm -rf"}}))
    yield "npz", "3,000-node chain (legitimate)", npz_case(tmp, "chain", chain)
    yield "code", "Model over 1,100 Activation layers", "chain_in_code"
    yield "keras", f"extra {one // 2**20} MiB member", keras_case(tmp, "k_extra", extra=lambda p: bomb(p, "junk", one))
    yield "keras", "config.json of 1 GiB (declared)", keras_case(tmp, "k_cfgbomb", extra="config_bomb")
    yield "keras", "Dense(units=3_000_000)", keras_case(tmp, "k_units", lambda c: c["config"]["layers"][3][
        "config"].update(units=3_000_000))
    yield "keras", "HDF5 dataset of 2^40 values", keras_case(tmp, "k_huge", weights_edit=huge_dataset)
    yield "keras", "HDF5 external link", keras_case(tmp, "k_extlink", weights_edit=external_link)
    yield "keras", "HDF5 soft link", keras_case(tmp, "k_softlink", weights_edit=soft_link)
    yield "keras", "HDF5 external storage", keras_case(tmp, "k_extstore", weights_edit=external_storage)
    yield "keras", "NaN weights", keras_case(tmp, "k_nan", weights_edit=nan_weights)
    yield "keras", "negative Adam velocity", keras_case(tmp, "k_neg", weights_edit=negative_velocity)
    yield "keras", "config naming os.system", keras_case(tmp, "k_os", lambda c: c["config"]["layers"].insert(
        1, {"module": "os", "class_name": "system", "config": {"name": "rm"}}))
    yield "keras", "Lambda layer (code)", keras_case(tmp, "k_lambda", lambda c: c["config"]["layers"].insert(
        1, {"class_name": "Lambda", "config": {"name": "code", "function": "..."}}))
    yield "keras", "config as a list", keras_case(tmp, "k_list", raw_config="[1, 2]")
    yield "keras", "100k nested JSON lists", keras_case(tmp, "k_deep", raw_config="[" * 100_000 + "]" * 100_000)
    yield "keras", "3,000-layer chain (legitimate)", keras_case(tmp, "k_chain", keras_chain)
    yield "h5", "100k nested model_config", legacy_case(tmp, "h_deep", attrs={"model_config": "[" * 100_000})
    yield "h5", "HDF5 external link", legacy_case(tmp, "h_link", edit=legacy_link)
    yield "h5", "HDF5 dataset of 10^12 values", legacy_case(tmp, "h_huge", edit=legacy_huge)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 MiB bombs instead of 1 and 3 GiB")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT] + sys.path))
    print("## Hostile model files: pycnn.models.load_model in a fresh process each\n")
    print(f"- pycnn {pycnn.__version__}, NumPy {np.__version__}, Python {sys.version.split()[0]}; peak RSS is "
          "VmHWM during the load (reset after `import pycnn, h5py`) minus VmRSS after the imports\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, case, path in cases(tmp, big=not args.quick):
            size = os.path.getsize(path) if os.path.exists(path) else 0
            proc = subprocess.run([sys.executable, "-c", RUNNER, path], capture_output=True, text=True, env=env,
                                  timeout=600)
            try:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                r = {"outcome": f"crashed (exit {proc.returncode}): {proc.stderr[-200:]}", "seconds": float("nan"),
                     "peak_kib": 0, "base_kib": 0}
            outcome = r["outcome"]
            short = outcome if len(outcome) <= 110 else outcome[:107] + "..."
            rows.append([fmt, case, f"{size / 2**20:.2f}", short.replace("|", "\\|"), f"{r['seconds']:.2f}",
                         f"{(r['peak_kib'] - r['base_kib']) / 1024:.1f}", f"{r['peak_kib'] / 1024:.0f}"])
            if os.path.exists(path):
                os.unlink(path)
    headers = ["format", "case", "file MiB", "outcome", "load s", "peak RSS during load, above import MiB",
               "peak RSS MiB"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
