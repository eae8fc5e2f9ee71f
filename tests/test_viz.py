"""pycnn.viz and `python -m pycnn show`: every picture is written, opened again and checked
(its size in pixels, that it is not blank, that its grid has the expected number of
panels), plus what the pictures are drawn from (feature maps, the confusion matrix). The
first-hour fixes of issue 10 live here too: the version, the progress bar on a narrow
terminal, an unknown --model refused early, no open handle after a damaged weights file."""
from __future__ import annotations

import io
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

from dataset_fixtures import write_cifar_bin

import pycnn
from pycnn import applications, layers, viz
from pycnn.__main__ import main
from pycnn.progress import Progbar

REPO = Path(__file__).resolve().parents[1]
needs_matplotlib = pytest.mark.skipif(not HAVE_MATPLOTLIB,
                                      reason="matplotlib is not installed (pip install \".[plot]\")")


# ----------------------------------------------------------------------------- helpers

def check_png(path: Path, fig=None, panels: int | None = None) -> np.ndarray:
    """Open the PNG at ``path``: it has the figure's size in pixels, is not blank, and the
    figure has ``panels`` axes. Returns the pixels (H, W, 3|4) in [0, 1]."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, pixels.shape
    if fig is not None:
        w, h = fig.get_size_inches() * fig.dpi
        # Within a pixel: matplotlib before 3.10 truncates a size like 7.2 * 100 = 719.99... to 719.
        assert abs(pixels.shape[0] - h) < 1.01 and abs(pixels.shape[1] - w) < 1.01, (pixels.shape, (h, w))
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05, "the picture is (nearly) one colour"
    assert (rgb.min(axis=-1) < 0.9).mean() > 0.01, "the picture is (nearly) all white"
    if panels is not None:
        assert viz.panel_count(fig) == panels
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")], "temporary file left"
    return pixels


def suptitles(fig) -> list[str]:
    return [sub._suptitle.get_text() for sub in fig.subfigs if sub._suptitle is not None]


@pytest.fixture(scope="module")
def lenet():
    pycnn.set_random_seed(0)
    return applications.lenet((32, 32, 3), 10)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)


def small_graph():
    """Two pooling branches of one convolution, concatenated: a graph model."""
    inp = layers.Input((16, 16, 3))
    c = layers.Conv2D(4, 3, padding="same", activation="relu", name="viz_conv")(inp)
    m = layers.MaxPooling2D(2, name="viz_max")(c)
    a = layers.AveragePooling2D(2, name="viz_avg")(c)
    x = layers.Concatenate(name="viz_concat")([m, a])
    out = layers.Dense(3, activation="softmax", name="viz_dense")(layers.Flatten(name="viz_flatten")(x))
    return pycnn.Model(inp, out, name="two_branches")


# ----------------------------------------------------------------------------- what is drawn

def test_import_pycnn_does_not_import_matplotlib():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys, pycnn, pycnn.viz, pycnn.plotting; print('matplotlib' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_feature_maps_are_the_layer_outputs(lenet, image):
    maps = viz.feature_maps(lenet, image)
    assert [layer.name for layer, _ in maps] == [l.name for l in lenet.layers[:4]]
    assert [a.shape for _, a in maps] == [(32, 32, 6), (16, 16, 6), (12, 12, 16), (6, 6, 16)]
    x = image[None]
    for layer, act in maps:
        x = layer(x)
        np.testing.assert_array_equal(act, x[0])
    # uint8 images are scaled as the models were trained; a batch axis of 1 is accepted.
    u8 = (image * 255).astype(np.uint8)
    first = viz.feature_maps(lenet, u8[None], layers=[0])[0][1]
    np.testing.assert_allclose(first, lenet.layers[0](u8[None].astype(np.float32) / 255)[0], rtol=1e-6)


def test_feature_maps_of_a_graph_model():
    model = small_graph()
    x = np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)
    maps = dict((layer.name, a) for layer, a in viz.feature_maps(model, x))
    assert list(maps) == ["viz_conv", "viz_max", "viz_avg", "viz_concat"]
    assert maps["viz_concat"].shape == (8, 8, 8)
    np.testing.assert_array_equal(maps["viz_concat"][..., :4], maps["viz_max"])
    np.testing.assert_array_equal(maps["viz_concat"][..., 4:], maps["viz_avg"])


def test_feature_map_errors(lenet, image):
    with pytest.raises(ValueError, match=r"expected layers whose output is a stack of feature maps .*"
                                         r"Received: layer 'dense\w*' with output shape \(1, 120\)"):
        viz.feature_maps(lenet, image, layers=[lenet.layers[5]])
    with pytest.raises(ValueError, match=r"no layer named 'conv9' in model 'lenet'"):
        viz.feature_maps(lenet, image, layers=["conv9"])
    with pytest.raises(ValueError, match=r"expected one image, e\.g\. x_test\[0\]\. Received: an array of shape \(2, 32, 32, 3\)"):
        viz.feature_maps(lenet, np.stack([image, image]))
    with pytest.raises(ValueError, match=r"expected input of shape \(None, 32, 32, 3\)"):
        viz.feature_maps(lenet, image[:16])


def test_confusion_matrix():
    m = viz.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    with pytest.raises(ValueError, match=r"expected labels in \[0, 3\)"):
        viz.confusion_matrix([0, 3], [0, 1], 3)


def test_without_matplotlib_the_error_says_how_to_install(monkeypatch, lenet):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"show_filters\(\) needs matplotlib.*pip install matplotlib"):
        viz.show_filters(lenet.layers[0])


# ----------------------------------------------------------------------------- the pictures

@needs_matplotlib
def test_plot_history_one_panel_per_metric(tmp_path):
    history = {"loss": [2.0, 1.5, 1.3], "accuracy": [0.2, 0.4, 0.5], "val_loss": [1.9, 1.6, 1.7],
               "val_accuracy": [0.25, 0.38, 0.36], "learning_rate": [1e-3, 5e-4, 2.5e-4]}
    fig = viz.plot_history(history, tmp_path / "curves.png", title="three epochs")
    check_png(tmp_path / "curves.png", fig, panels=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Loss", "Accuracy", "Learning rate"]
    loss_labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert loss_labels == ["training", "validation", "best validation: 1.6 (epoch 2)"]
    fig = viz.plot_history(history, tmp_path / "loss.png", metrics=["loss"])
    check_png(tmp_path / "loss.png", fig, panels=1)
    with pytest.raises(ValueError, match=r"expected metrics among \['loss', 'accuracy', 'learning_rate'\]"):
        viz.plot_history(history, None, metrics=["auc"])
    # The old module still writes the same picture and returns the path.
    from pycnn.plotting import plot_histories
    out = plot_histories({"a": history, "b": history}, tmp_path / "two.png")
    assert out == tmp_path / "two.png"
    check_png(out)


@needs_matplotlib
def test_show_feature_maps_sequential(tmp_path, lenet, image):
    fig = viz.show_feature_maps(lenet, image, path=tmp_path / "maps.png", title="noise")
    check_png(tmp_path / "maps.png", fig, panels=1 + 6 + 6 + 16 + 16)
    heads = suptitles(fig)
    assert heads[0] == "noise: 32 x 32 x 3"
    assert [re.search(r"\d+ x \d+ x \d+", h).group() for h in heads[1:]] == \
        ["32 x 32 x 6", "16 x 16 x 6", "12 x 12 x 16", "6 x 6 x 16"]
    fig = viz.show_feature_maps(lenet, image, layers=["max_pooling2d" if lenet.layers[1].name == "max_pooling2d"
                                                      else lenet.layers[1].name, 2], max_channels=4, columns=2,
                                normalize="layer", path=tmp_path / "some.png")
    check_png(tmp_path / "some.png", fig, panels=1 + 4 + 4)
    assert "(first 4 of 16 channels)" in suptitles(fig)[2]


@needs_matplotlib
def test_show_feature_maps_graph_model(tmp_path):
    model = small_graph()
    x = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
    fig = viz.show_feature_maps(model, x, path=tmp_path / "graph.png")
    check_png(tmp_path / "graph.png", fig, panels=1 + 4 + 4 + 4 + 8)
    assert suptitles(fig)[-1] == "viz_concat (Concatenate): 8 x 8 x 8"


@needs_matplotlib
@pytest.mark.parametrize("cin, filters, panels", [(3, 6, 6), (1, 12, 12), (6, 16, 16 * 6), (40, 3, 3 * 16)])
def test_show_filters(tmp_path, cin, filters, panels):
    conv = layers.Conv2D(filters, 5)
    conv.build((None, 28, 28, cin))
    fig = viz.show_filters(conv, tmp_path / "filters.png")
    check_png(tmp_path / "filters.png", fig, panels=panels)
    head = fig._suptitle.get_text()
    assert f"{filters} filters of 5 x 5 x {cin}" in head
    assert ("RGB" in head) == (cin == 3)
    if cin == 40:
        assert "first 16 of 40 input channels" in head


def test_show_filters_errors():
    with pytest.raises(TypeError, match=r"show_filters\(\) expected a Conv2D layer\. Received: Dense"):
        viz.show_filters(layers.Dense(3))
    with pytest.raises(RuntimeError, match=r"has no weights yet"):
        viz.show_filters(layers.Conv2D(3, 3))


@needs_matplotlib
@pytest.mark.parametrize("shape, steps, panels", [((32, 32, 3), 1, 3), ((28, 28), 2, 6)])
def test_show_pooling(tmp_path, shape, steps, panels):
    img = (np.random.default_rng(4).random(shape) * 255).astype(np.uint8)
    fig = viz.show_pooling(img, 2, tmp_path / "pool.png", steps=steps)
    check_png(tmp_path / "pool.png", fig, panels=panels)
    titles = [ax.get_title() for ax in fig.axes]
    side = shape[0] // 2 ** steps
    assert f"max pooling{' x' + str(steps) if steps > 1 else ''}\n{side} x {side}" in titles
    assert f"average pooling{' x' + str(steps) if steps > 1 else ''}\n{side} x {side}" in titles


def test_show_pooling_errors():
    with pytest.raises(ValueError, match=r"after 2 pooling steps the image is 2 x 2, smaller than pool_size=\(3, 3\)"):
        viz.show_pooling(np.zeros((18, 18)), 3, steps=3)
    with pytest.raises(ValueError, match=r"expected one image of shape \(H, W\), \(H, W, 1\) or \(H, W, 3\)"):
        viz.show_pooling(np.zeros((8, 8, 5)))


@needs_matplotlib
def test_show_predictions_marks_the_wrong_ones(tmp_path, lenet):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 12)
    names = pycnn.datasets.class_names("cifar10")
    fig = viz.show_predictions(lenet, x, y, names, tmp_path / "pred.png", count=12, columns=4)
    check_png(tmp_path / "pred.png", fig, panels=12)
    pred = lenet.predict(x / 255.0, verbose=0).argmax(-1)
    wrong = [ax for ax in fig.axes if ax.title.get_color() == viz.WRONG_COLOUR]
    assert len(wrong) == int((pred != y).sum())
    assert all(ax.spines["left"].get_visible() for ax in wrong)
    assert fig.axes[0].get_title().endswith(f"true: {names[y[0]]}")
    assert f"{int((pred == y).sum())} of 12 right" in fig._suptitle.get_text()


@needs_matplotlib
def test_show_confusion(tmp_path, lenet):
    rng = np.random.default_rng(6)
    x = rng.random((40, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, (40, 1))
    fig = viz.show_confusion(lenet, x, y, pycnn.datasets.class_names("cifar10"), tmp_path / "conf.png")
    check_png(tmp_path / "conf.png", fig, panels=2)  # the matrix and its colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["airplane", "automobile"]
    pred = lenet.predict(x, verbose=0).argmax(-1)
    counts = viz.confusion_matrix(y, pred, 10)
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(int(c) for c in counts[counts > 0])
    assert f"accuracy {100 * (pred == y[:, 0]).mean():.1f}%" in ax.get_title()


# ----------------------------------------------------------------------------- the command line

@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PYCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("PYCNN_DATASETS_URL", "http://127.0.0.1:9")  # discard port: no network
    write_cifar_bin(tmp_path / "data" / "cifar-10-batches-bin", np.random.default_rng(7), n=30)
    return tmp_path / "data"


@needs_matplotlib
def test_cli_show_every_kind(capsys, tmp_path, cifar_dir):
    pycnn.set_random_seed(1)
    weights = tmp_path / "lenet.npz"
    applications.lenet().save_weights(weights)
    common = ["--model", "lenet", "--weights", str(weights), "--dataset", "cifar10", "--data-dir", str(cifar_dir)]
    for kind, extra, said in [("filters", [], "Saved the filters of conv2d"),
                              ("features", ["--index", "3"], "Saved the feature maps"),
                              ("pooling", ["--steps", "2"], "Saved max and average pooling (pool size 2, 2 steps)"),
                              ("predictions", ["--count", "10"], "Saved predictions for the first 10 test images"),
                              ("confusion", [], "Saved the confusion matrix of 30 test images")]:
        out_png = tmp_path / f"{kind}.png"
        assert main(["show", kind, *common, *extra, "--output", str(out_png)]) == 0
        out = capsys.readouterr().out
        assert said in out, out
        if kind == "features":
            assert re.search(r"^Test image 3 \(\w+\)$", out, re.M), out
        check_png(out_png)
    code = main(["show", "filters", "--layer", "nope", *common, "-o", str(tmp_path / "x.png")])
    assert code == 1 and "expected --layer among the Conv2D layers" in capsys.readouterr().err
    code = main(["show", "features", *common, "--index", "30", "-o", str(tmp_path / "x.png")])
    assert code == 1 and "expected --index below the number of test images (30). Received: --index 30" in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1"], ["evaluate", "--weights", "w.npz"], ["show", "features"]])
def test_unknown_model_is_refused_before_the_dataset_loads(capsys, tmp_path, argv):
    code = main([*argv, "--model", "foo", "--data-dir", str(tmp_path / "nothing-here")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Unknown model: expected one of lenet" in err and "Received: --model foo." in err
    assert "load_data" not in err


def test_version(capsys):
    assert re.fullmatch(r"\d+\.\d+\.\d+", pycnn.__version__)
    assert pycnn.build_info()["version"] == pycnn.__version__  # CMake read the same file
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pycnn {pycnn.__version__}"
    try:
        from importlib.metadata import PackageNotFoundError, version
        assert version("pycnn") == pycnn.__version__
    except PackageNotFoundError:
        pass  # running from the source tree, not installed


# ----------------------------------------------------------------------------- first-hour fixes

@pytest.mark.parametrize("columns", [60, 40])
def test_progress_bar_redraws_in_place_on_a_narrow_terminal(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    stream = io.StringIO()
    bar = Progbar(782, stream=stream, interactive=True, interval=0.0)
    values = {"accuracy": 0.41, "loss": 1.62}
    for step in range(1, 783):
        bar.update(step, values, finalize=step == 782)
    redraws = stream.getvalue().split("\r")[1:]
    assert len(redraws) == 782
    # Every line redrawn in place fits in one terminal row (less one column, so the cursor
    # never wraps); the epoch's last line is written whole and ends the row.
    assert max(len(r) for r in redraws[:-1]) == columns - 1
    assert redraws[-1].endswith("\n") and "loss: 1.6200" in redraws[-1]
    assert redraws[0].startswith("  1/782 ─") and redraws[-2].startswith("781/782 ━")


def test_damaged_weights_file_leaves_no_open_handle(tmp_path):
    good = tmp_path / "good.npz"
    pycnn.set_random_seed(0)
    applications.lenet().save_weights(good)
    data = good.read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "header.npz").write_bytes(b"PK\x03\x04" + bytes(200))  # looks like a zip archive
    code = (
        "import gc, sys, pycnn\n"
        "m = pycnn.applications.lenet()\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        m.load_weights(name)\n"
        "    except ValueError as exc:\n"
        "        print('refused:', exc)\n"
        "    gc.collect()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-X", "dev", "-W", "error", "-c", code,
                           str(tmp_path / "half.npz"), str(tmp_path / "header.npz"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" not in proc.stderr and "unclosed file" not in proc.stderr, proc.stderr
    assert proc.stdout.count("refused:") == 3 and "is not a readable pycnn weights file" in proc.stdout
