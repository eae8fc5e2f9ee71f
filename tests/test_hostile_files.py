"""Damaged and hostile model files (pycnn/interop/untrusted.py): for .npz, .keras and .h5,
every case is a ValueError naming the file and what is wrong (or loads, when the hostile part
is something pycnn never reads), without decompressing or allocating what the file merely
declares. The cases of the 2026-12-04 hostile-file report, and the same families for the Keras
formats. bench/hostile_files.py prints the table with each family's peak memory."""
from __future__ import annotations

import json
import re
import tracemalloc
import zipfile

import numpy as np
import pytest

import pycnn
from pycnn import layers as L
from pycnn import models, utils
from pycnn.interop import untrusted

GIB = 2**30


# ----------------------------------------------------------------------------- building blocks

def _model(compiled=True):
    utils.clear_session()
    pycnn.set_random_seed(0)
    model = pycnn.Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                              L.Dense(4, activation="softmax")], name="small")
    if compiled:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        rng = np.random.default_rng(0)
        model.fit(rng.random((8, 6, 6, 2), dtype=np.float32), rng.integers(0, 4, 8), epochs=1, verbose=0)
    return model


def _npz_parts(tmp_path):
    """A trained model's .npz as (manifest, arrays), to tamper with."""
    src = tmp_path / "src.npz"
    _model().save(src)
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("__pycnn_manifest__"))), arrays


def _write_npz(path, manifest, arrays, raw_manifest=None):
    text = raw_manifest if raw_manifest is not None else json.dumps(manifest)
    np.savez(path, __pycnn_manifest__=np.array(text), **arrays)
    return path


def _append_bomb(path, name="junk.npy", size=GIB):
    """A member of ``size`` zero bytes, deflated (1 GiB is about 4.5 MB on disk)."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as f:
            block = bytes(1 << 24)
            for _ in range(size // len(block)):
                f.write(block)
    return path


def _replace_member(path, name, data):
    """Rewrite the zip with member ``name`` holding ``data`` (bytes)."""
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    return path


def _npy_header(shape, dtype="<f4"):
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


def _config_layer(manifest, class_name):
    return next(e for e in manifest["config"]["layers"] if e["class_name"] == class_name)


def _refused(path, match, loader=models.load_model, memory_mib=None):
    """``loader(path)`` raises ValueError naming the file and matching ``match``; with
    ``memory_mib``, Python and NumPy allocate at most that much while it runs."""
    if memory_mib is not None:
        tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            loader(path)
    finally:
        if memory_mib is not None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < memory_mib * 2**20, f"peak {peak / 2**20:.0f} MiB"
    message = str(info.value)
    assert str(path) in message, message
    assert re.search(match, message), message
    return message


# ----------------------------------------------------------------------------- .npz

def test_an_extra_gibibyte_member_is_never_read(tmp_path):
    manifest, arrays = _npz_parts(tmp_path)
    path = _append_bomb(_write_npz(tmp_path / "bomb.npz", manifest, arrays))
    tracemalloc.start()
    try:
        model = models.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20 and model.count_params() == _model(compiled=False).count_params()


def test_a_fake_npy_header_declaring_a_trillion_values_is_refused_before_reading(tmp_path):
    manifest, arrays = _npz_parts(tmp_path)
    path = _write_npz(tmp_path / "fake_header.npz", manifest, arrays)
    key = manifest["layers"][0]["weights"][0]["key"] + ".npy"
    _replace_member(path, key, _npy_header((10**6, 10**6)) + bytes(64))
    _refused(path, r"header declares shape \(1000000, 1000000\)", memory_mib=8)


@pytest.mark.parametrize("layer, arg, value", [("Dense", "units", 3_000_000), ("Dense", "units", 10**9),
                                               ("Conv2D", "filters", 10**12), ("Conv2D", "kernel_size", [2**40, 3])])
def test_huge_layer_arguments_are_refused_before_building(tmp_path, layer, arg, value):
    manifest, arrays = _npz_parts(tmp_path)
    _config_layer(manifest, layer)["config"][arg] = value
    _refused(_write_npz(tmp_path / "huge.npz", manifest, arrays), rf"argument '{arg}'.*sizes up to",
             memory_mib=8)


@pytest.mark.parametrize("edit", [
    lambda m: _config_layer(m, "Dense")["config"].update(units=500_000),           # 500k x 48 kernel
    lambda m: m["config"]["layers"][0]["config"].update(shape=[3000, 3000, 2]),    # Flatten -> Dense on 9 M values
])
def test_architectures_larger_than_the_stored_weights_are_refused_before_allocating(tmp_path, edit):
    manifest, arrays = _npz_parts(tmp_path)
    edit(manifest)
    _refused(_write_npz(tmp_path / "big.npz", manifest, arrays), r"more weights than the file stores",
             memory_mib=8)


def test_a_padding_no_input_could_pass_through_is_refused(tmp_path):
    manifest, arrays = _npz_parts(tmp_path)
    manifest["config"]["layers"].insert(1, {"class_name": "ZeroPadding2D",
                                            "config": {"name": "pad", "padding": 10**5}})
    _config_layer(manifest, "Flatten")["class_name"] = "GlobalAveragePooling2D"  # the Dense stays small
    _refused(_write_npz(tmp_path / "pad.npz", manifest, arrays), r"'pad' \(ZeroPadding2D\) produces tensors of "
             r"shape \(None, 200006, 200006, 2\)", memory_mib=8)


@pytest.mark.parametrize("shape, match", [([2**70, 6, 2], r"every dimension must be a positive integer"),
                                          ([-1, 6, 2], r"every dimension must be a positive integer"),
                                          ("abc", r"should be a list")])
def test_input_shapes_out_of_range_are_refused(tmp_path, shape, match):
    manifest, arrays = _npz_parts(tmp_path)
    manifest["config"]["layers"][0]["config"]["shape"] = shape
    _refused(_write_npz(tmp_path / "shape.npz", manifest, arrays), match)


@pytest.mark.parametrize("poison, match", [
    (lambda a: a.fill(np.nan), r"holding \d+ NaN or infinite values"),
    (lambda a: a.fill(-1.0), r"\(velocity, a second moment\) holding \d+ negative values"),
])
def test_non_finite_or_negative_optimizer_slots_are_refused(tmp_path, poison, match):
    manifest, arrays = _npz_parts(tmp_path)
    poison(arrays[manifest["optimizer_state"]["slots"][0][1]])  # Adam's velocity of the first weight
    _refused(_write_npz(tmp_path / "slots.npz", manifest, arrays), match)


def test_adam_state_with_one_slot_per_weight_is_refused(tmp_path):
    manifest, arrays = _npz_parts(tmp_path)
    manifest["optimizer_state"]["slots"] = [keys[:1] for keys in manifest["optimizer_state"]["slots"]]
    _refused(_write_npz(tmp_path / "one_slot.npz", manifest, arrays),
             r"1 slots for weight 0, but Adam keeps 3 per weight \(momentum, velocity, scratch\)")


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["optimizer_state"].update(iterations=-1), r"optimizer step count .*Received: -1"),
    (lambda m: m["optimizer_state"].update(iterations=2**64), r"optimizer step count"),
    (lambda m: m["training_state"].update(epochs_done=-1), r"epochs_done"),
    (lambda m: m["training_state"]["rng"]["state"].update(state=2**200), r"damaged training state"),
    (lambda m: m["training_state"]["rng"].update(bit_generator="system"), r"damaged training state"),
    (lambda m: m["training_state"].update(rng=[1, 2]), r"damaged training state"),
    (lambda m: m["compile"]["optimizer"].update(class_name="Optimizer"), r"unknown optimizer class 'Optimizer'"),
    (lambda m: m["compile"]["optimizer"].update(class_name="__class__"), r"unknown optimizer class"),
    (lambda m: m["compile"]["loss"].update(class_name="os.system"), r"unknown loss class"),
    (lambda m: m["compile"].update(metrics="accuracy"), r"expected a list of metrics"),
])
def test_damaged_training_state_is_refused(tmp_path, edit, match):
    manifest, arrays = _npz_parts(tmp_path)
    edit(manifest)
    _refused(_write_npz(tmp_path / "state.npz", manifest, arrays), match)


@pytest.mark.parametrize("config, match", [
    ([1, 2, 3], r"\(Sequential\) should be an object, not list"),
    ("Dense", r"should be an object, not str"),
    (7, r"should be an object, not int"),
    ({"layers": [{"class_name": "os.system", "config": {}}]}, r"Unknown layer class.*'os.system'"),
    ({"layers": [{"class_name": "__import__", "config": {"name": "os"}}]}, r"Unknown layer class"),
    ({"layers": [[]]}, r"layer 0 of the model should be an object"),
])
def test_configs_of_the_wrong_type_or_naming_python_objects_are_refused(tmp_path, config, match):
    manifest, arrays = _npz_parts(tmp_path)
    manifest["config"] = config
    _refused(_write_npz(tmp_path / "config.npz", manifest, arrays), match)


def test_deeply_nested_json_is_refused_without_recursion(tmp_path):
    manifest, arrays = _npz_parts(tmp_path)
    text = json.dumps(manifest)
    deep = "[" * 100_000 + "]" * 100_000
    raw = text[:-1] + ', "extra": ' + deep + "}"
    _refused(_write_npz(tmp_path / "deep.npz", None, arrays, raw_manifest=raw), r"nested")


def test_a_manifest_member_declaring_256_mib_is_refused_before_reading(tmp_path):
    manifest, arrays = _npz_parts(tmp_path)
    path = _write_npz(tmp_path / "m.npz", manifest, arrays)
    _replace_member(path, "__pycnn_manifest__.npy", b"")
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist() if i.filename != "__pycnn_manifest__.npy"}
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    _append_bomb(path, "__pycnn_manifest__.npy", GIB // 4)
    _refused(path, r"declares a manifest .* of 256\.0 MiB", memory_mib=8)


def test_a_3000_node_chain_and_a_1100_layer_model_load_without_recursion(tmp_path):
    utils.clear_session()
    x = inp = pycnn.Input((4,))
    for _ in range(3000):
        x = L.Activation("relu")(x)
    model = pycnn.Model(inp, x)
    model.save(tmp_path / "chain.npz")
    loaded = models.load_model(tmp_path / "chain.npz")
    assert len(loaded.layers) == 3001
    data = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), np.maximum(data, 0))
    x = inp = pycnn.Input((4,))
    for _ in range(1100):
        x = L.Activation("tanh")(x)
    assert pycnn.Model(inp, x).predict(data, verbose=0).shape == (2, 4)


def test_the_bounds_are_stated():
    assert untrusted.MAX_WEIGHT_VALUES == 2**28 and untrusted.MAX_SAMPLE_VALUES == 2**28
    assert untrusted.MAX_SIZE == 2**20 and untrusted.MAX_JSON_DEPTH == 200


# ----------------------------------------------------------------------------- .keras and .h5

h5py = None  # the module, once the h5 fixture has imported it (the parameter tables name it lazily)


@pytest.fixture
def h5():
    """The Keras-format cases need h5py (pip install 'pycnn[keras]'); the .npz ones above do not."""
    global h5py
    h5py = pytest.importorskip("h5py", reason="the Keras formats need h5py (pip install 'pycnn[keras]')")
    return h5py


def _keras_file(tmp_path, name="m.keras"):
    path = tmp_path / name
    _model().save(path)
    return path


def _keras_parts(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _write_keras(path, parts):
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in parts.items():
            zf.writestr(n, d)
    return path


def _edit_config(tmp_path, edit, name="edited.keras"):
    parts = _keras_parts(_keras_file(tmp_path))
    config = json.loads(parts["config.json"])
    result = edit(config)
    parts["config.json"] = json.dumps(config if result is None else result)
    return _write_keras(tmp_path / name, parts)


def _edit_weights(tmp_path, edit, name="edited.keras"):
    parts = _keras_parts(_keras_file(tmp_path))
    h5 = tmp_path / "w.h5"
    h5.write_bytes(parts["model.weights.h5"])
    with h5py.File(h5, "a") as f:
        edit(f)
    parts["model.weights.h5"] = h5.read_bytes()
    return _write_keras(tmp_path / name, parts)


def test_keras_an_extra_gibibyte_member_is_never_read(tmp_path, h5):
    path = _append_bomb(_keras_file(tmp_path))
    tracemalloc.start()
    try:
        model = models.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20 and model.compiled


def test_keras_a_config_member_declaring_256_mib_is_refused_before_reading(tmp_path, h5):
    parts = _keras_parts(_keras_file(tmp_path))
    del parts["config.json"]
    path = _append_bomb(_write_keras(tmp_path / "bomb.keras", parts), "config.json", GIB // 4)
    _refused(path, r"declares a config \('config.json'\) of 256\.0 MiB", memory_mib=8)


def test_keras_a_weights_member_larger_than_the_bound_is_refused(tmp_path, monkeypatch, h5):
    from pycnn.interop import keras_files

    path = _keras_file(tmp_path)
    monkeypatch.setattr(keras_files, "MAX_WEIGHTS_BYTES", 1000)
    _refused(path, r"declares a weights file \('model.weights.h5'\) of .*pycnn reads at most 1000 bytes")


@pytest.mark.parametrize("edit, match", [
    (lambda c: [c], r"has no Keras model config"),
    (lambda c: "Sequential", r"has no Keras model config"),
    (lambda c: 3, r"has no Keras model config"),
    (lambda c: c["config"].update(layers={"a": 1}), r"no 'layers' list"),
    (lambda c: c["config"]["layers"][3]["config"].update(units=3_000_000), r"argument 'units' holding 3000000"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 2**70, 6, 2]),
     r"every dimension must be a positive integer"),
    (lambda c: c["config"]["layers"].insert(1, {"module": "os", "class_name": "system", "config": {"name": "rm"}}),
     r"Layer 'rm' \(system\).*no layer of class 'system'"),
    (lambda c: c["config"]["layers"].insert(1, {"module": "keras.layers", "class_name": "Lambda",
                                                "config": {"name": "code", "function": {"class_name": "__lambda__",
                                                                                        "config": {"code": "..."}}}}),
     r"no layer of class 'Lambda'. A Lambda layer holds Python code"),
    (lambda c: c.update(class_name="MyModel", module="evil"), r"model of class 'MyModel'"),
    (lambda c: c["compile_config"]["optimizer"].update(class_name="Nadam"), r"optimizer 'Nadam'"),
    (lambda c: c["compile_config"]["optimizer"]["config"].update(amsgrad=True), r"amsgrad=True"),
    (lambda c: c["compile_config"].update(loss="hinge"), r"loss 'hinge'"),
])
def test_keras_configs_that_are_damaged_or_name_foreign_objects_are_refused(tmp_path, edit, match, h5):
    _refused(_edit_config(tmp_path, edit), match)


def test_keras_deeply_nested_config_json_is_refused(tmp_path, h5):
    parts = _keras_parts(_keras_file(tmp_path))
    parts["config.json"] = ("[" * 100_000 + "]" * 100_000).encode()
    _refused(_write_keras(tmp_path / "deep.keras", parts), r"nested")


def test_keras_a_3000_layer_chain_config_loads(tmp_path, h5):
    def chain(c):
        layers = c["config"]["layers"]
        acts = [{"module": "keras.layers", "class_name": "Activation",
                 "config": {"name": f"act_{i}", "trainable": True, "activation": "relu"}} for i in range(3000)]
        layers[3:3] = acts  # between Flatten and Dense: weights paths are unchanged for the rest
    path = _edit_config(tmp_path, chain)
    assert len(models.load_model(path).layers) == 3003


def _huge_dataset(f):
    del f["layers/dense/vars/0"]
    f["layers/dense/vars"].create_dataset("0", shape=(2**20, 2**20), dtype="f4", chunks=(64, 64))


@pytest.mark.parametrize("edit, match", [
    (_huge_dataset, r"declares 4096\.0 GiB of weights in a .* weights file"),
    (lambda f: f["layers/dense/vars/0"].__setitem__(..., np.nan), r"NaN or infinite values in kernel"),
    (lambda f: (f.__delitem__("layers/dense/vars/0"),
                f["layers/dense/vars"].__setitem__("0", h5py.ExternalLink("/etc/passwd", "/x"))),
     r"has an external link at '/layers/dense/vars/0'"),
    (lambda f: (f.__delitem__("layers/dense"), f["layers"].__setitem__("dense", h5py.SoftLink("/layers/conv2d"))),
     r"has a soft link at '/layers/dense'"),
    (lambda f: (f.__delitem__("layers/dense/vars/1"),
                f["layers/dense/vars"].create_dataset("1", shape=(4,), dtype="f4",
                                                      external=[("/etc/hostname", 0, 16)])),
     r"stored in external files"),
    (lambda f: f["layers/dense/vars/1"].attrs.create("x", 1) or (f.__delitem__("layers/dense/vars/1"),
                                                                   f["layers/dense/vars"].create_dataset(
                                                                       "1", data=np.zeros(4, np.int32))),
     r"dtype int32"),
    (lambda f: f["optimizer/vars/3"].__setitem__(..., -1.0), r"negative values in optimizer variable 3"),
    (lambda f: f["optimizer/vars/0"].__setitem__(..., -1), r"optimizer step count of -1"),
    (lambda f: f.__delitem__("optimizer/vars/5"), r"optimizer variables"),
    (lambda f: f.__delitem__("layers/conv2d/vars/1"), r"more weights than the file stores"),
])
def test_keras_weights_files_that_are_damaged_or_point_elsewhere_are_refused(tmp_path, edit, match, h5):
    _refused(_edit_weights(tmp_path, edit), match)


def test_keras_a_compressed_dataset_cannot_expand_past_the_file(tmp_path, h5):
    def compressed(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(4096, 4096), dtype="f4", compression="gzip",
                                              chunks=(256, 256), fillvalue=1.0)
    _refused(_edit_weights(tmp_path, compressed), r"declares 64\.\d MiB of weights in a .* weights file "
             r"\(compressed datasets cannot expand past the file\)", memory_mib=8)


def _legacy_file(tmp_path, edit=None, attrs=None):
    """A legacy .h5 (Keras 2 layout) of the small model, optionally tampered with."""
    model = _model(compiled=False)
    path = tmp_path / "legacy.h5"
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6, 6, 2], "name": "in"}},
        {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 3, "kernel_size": [3, 3],
                                            "activation": "relu"}},
        {"class_name": "Flatten", "config": {"name": "flatten"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "softmax"}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"conv2d", b"flatten", b"dense"]
        g.create_group("flatten").attrs["weight_names"] = []
        for layer in ("conv2d", "dense"):
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = [f"{layer}/kernel:0".encode(), f"{layer}/bias:0".encode()]
            for wname, w in zip(("kernel:0", "bias:0"), model.get_layer(layer).weights):
                lg.create_dataset(f"{layer}/{wname}", data=w)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        if edit:
            edit(f)
    return path, model


def test_legacy_h5_loads_and_its_damaged_variants_are_refused(tmp_path, h5):
    path, model = _legacy_file(tmp_path)
    x = np.random.default_rng(0).random((3, 6, 6, 2), dtype=np.float32)
    np.testing.assert_array_equal(models.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("edit, attrs, match", [
    (None, {"model_config": "[" * 100_000}, r"nested|not valid JSON"),
    (None, {"model_config": json.dumps([1, 2])}, r"has no Keras model config"),
    (lambda f: (f.__delitem__("model_weights/dense/dense/kernel:0"),
                f["model_weights/dense/dense"].__setitem__("kernel:0", h5py.ExternalLink("/tmp/x.h5", "/k"))),
     None, r"has an external link at '/model_weights/dense/dense/kernel:0'"),
    (lambda f: (f.__delitem__("model_weights/dense/dense/kernel:0"),
                f["model_weights/dense/dense"].create_dataset("kernel:0", shape=(10**6, 10**6), dtype="f4",
                                                              chunks=(16, 16))),
     None, r"declares .* of weights in a .* file|more than \d+ weight values"),
    (lambda f: f["model_weights/dense"].attrs.__setitem__("weight_names", [b"dense/missing:0"]), None,
     r"has no HDF5 object"),
])
def test_legacy_h5_damaged_or_hostile_files_are_refused(tmp_path, edit, attrs, match, h5):
    path, _ = _legacy_file(tmp_path, edit, attrs)
    _refused(path, match)


def test_files_that_are_not_model_files(tmp_path, h5):
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    _refused(text, r"is not a readable pycnn model file|not a readable")
    truncated = tmp_path / "cut.keras"
    data = _keras_file(tmp_path).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _refused(truncated, r"not a readable")
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match=r"No model file at"):
        models.load_model(tmp_path / "missing.npz")
    _refused(tmp_path, r"is not a readable pycnn model file \(it is a folder")
