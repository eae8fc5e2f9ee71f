"""Pictures for learning and teaching: curves, feature maps, filters, pooling, predictions.

Every function draws one matplotlib ``Figure`` (the object API on the Agg canvas: no
pyplot state, no display needed, safe on a headless machine), writes it to ``path`` when
one is given (atomically, like every file pycnn writes; the format follows the extension,
``.png`` recommended) and returns the figure, so a notebook can show it and a script can
keep drawing on it.

==========================  =====================================================
function                    what the picture shows
==========================  =====================================================
:func:`plot_history`        loss and every metric per epoch, training and validation
:func:`plot_histories`      the same for several runs in one figure
:func:`show_feature_maps`   for one image, every channel of each chosen layer's output
:func:`show_filters`        a Conv2D layer's kernels as small images
:func:`show_pooling`        an image, its max pooling and its average pooling
:func:`show_predictions`    test images with predicted and true labels, wrong ones marked
:func:`show_confusion`      the confusion matrix of a model on labelled images
==========================  =====================================================

matplotlib is an optional dependency (``pip install "pycnn[plot]"``); ``import pycnn``
never imports it, and without it these functions raise ImportError with the install
command.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _tempfiles

PathLike = Union[str, "os.PathLike[str]"]

#: Colours of right and wrong predictions (matplotlib's tab: green and red).
RIGHT_COLOUR, WRONG_COLOUR = "#2ca02c", "#d62728"


# ----------------------------------------------------------------------------- figures and files

def require_matplotlib(what: str = "Plotting") -> None:
    """Raise ImportError with an install hint when matplotlib is not importable."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{what} needs matplotlib, which is not installed. Install it with "
            "`pip install matplotlib` (or `pip install \"pycnn[plot]\"`)."
        ) from exc


def _figure(width: float, height: float, dpi: int):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file beside it, fsync, rename), so
    a reader never sees half a picture; the format follows the extension (default png)."""
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    _tempfiles.write_atomically(str(path), lambda f: fig.savefig(f, format=fmt))
    return path


def _finish(fig: Any, path: Optional[PathLike]) -> Any:
    if path is not None:
        save_figure(fig, path)
    return fig


def panel_count(fig: Any) -> int:
    """The number of axes in ``fig`` and its subfigures (the tests count panels with it)."""
    seen = {id(ax) for ax in fig.axes}  # recent matplotlib lists subfigures' axes here too

    def walk(sub: Any) -> None:
        seen.update(id(ax) for ax in sub.axes)
        for child in getattr(sub, "subfigs", ()):
            walk(child)

    walk(fig)
    return len(seen)


def _plain(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _display_image(img: np.ndarray, vmin: Optional[float] = None, vmax: Optional[float] = None
                   ) -> Tuple[np.ndarray, Optional[str]]:
    """``img`` (H, W), (H, W, 1) or (H, W, 3) as something imshow draws faithfully: RGB in
    [0, 1] (uint8 divided by 255, other ranges scaled by ``vmin..vmax``, default the image's
    own), grey as (H, W) with the colour map to use."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError("Expected an image of shape (H, W), (H, W, 1) or (H, W, 3). "
                         f"Received: shape={img.shape}.")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    if img.ndim == 3:
        lo = float(img.min()) if vmin is None else vmin
        hi = float(img.max()) if vmax is None else vmax
        if lo < 0.0 or hi > 1.0 or vmin is not None:
            img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        return np.clip(img, 0.0, 1.0), None
    return img, "gray"


# ----------------------------------------------------------------------------- training curves

def _history_dict(history: Any) -> Mapping[str, Sequence[float]]:
    values = getattr(history, "history", history)
    if not isinstance(values, Mapping):
        raise TypeError("plot_history() expected a History object or a dict of per-epoch lists. "
                        f"Received: {type(history).__name__}.")
    return values


def _metric_names(runs: Mapping[str, Mapping[str, Sequence[float]]]) -> List[str]:
    """Loss first, then accuracy, then every other metric in name order (``val_x`` joins x)."""
    names = set()
    for values in runs.values():
        for key, series in values.items():
            if series is not None and len(series):
                names.add(key[4:] if key.startswith("val_") else key)
    order = {"loss": 0, "accuracy": 1}
    return sorted(names, key=lambda n: (order.get(n, 2), n))


def plot_history(history: Any, path: Optional[PathLike] = None, metrics: Optional[Sequence[str]] = None,
                 title: Optional[str] = None, val_label: str = "validation", dpi: int = 120) -> Any:
    """Curves of the loss and every metric per epoch, training and validation.

    One panel per metric (``loss`` first, then ``accuracy``, then the rest, e.g. a
    schedule's ``learning_rate``); the ``val_`` series share their metric's panel, and the
    best validation epoch is marked (lowest loss, highest of anything else).

    Args:
        history: the ``History`` returned by ``fit`` or its ``.history`` dict: metric name ->
            one value per epoch (any subset with ``loss``).
        path: where to write the picture (``.png``); None draws without writing.
        metrics: the panels to draw, by name (default: every metric the history holds).
        title: figure title.
        val_label: the validation curves' label (the CLI says ``test``: it validates on the
            test set).
        dpi: resolution.

    Returns:
        The matplotlib Figure.

    Raises:
        ImportError: matplotlib is missing.
        TypeError: ``history`` is neither a History nor a dict.
        ValueError: the history has no ``loss`` values, or ``metrics`` names one it lacks.
    """
    return plot_histories({"": history}, path, metrics=metrics, title=title, val_label=val_label, dpi=dpi)


def plot_histories(histories: Mapping[str, Any], path: Optional[PathLike] = None,
                   metrics: Optional[Sequence[str]] = None, title: Optional[str] = None,
                   val_label: str = "validation", dpi: int = 120) -> Any:
    """Like :func:`plot_history` for several runs in one figure, e.g. the case study's two
    models: ``plot_histories({"classic features": h1, "4-filter CNN": h2}, "curves.png")``.
    Each run's name prefixes its curves' labels; a run keeps one colour in every panel."""
    runs = {name: _history_dict(h) for name, h in histories.items()}
    for name, values in runs.items():
        if not values.get("loss"):
            raise ValueError("plot_history() expected a history with at least one 'loss' value. "
                             f"Received{' for ' + repr(name) if name else ''}: keys={sorted(values)}.")
    available = _metric_names(runs)
    if metrics is None:
        metrics = available
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        missing = [m for m in metrics if m not in available]
        if missing or not metrics:
            raise ValueError(f"plot_history() expected metrics among {available}. Received: metrics={metrics!r}.")
    require_matplotlib("Plotting training curves")
    from matplotlib.ticker import MaxNLocator

    cols = min(len(metrics), 3)
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(4.6 * cols + 0.4, 3.6 * rows + (0.4 if title else 0.0), dpi)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = [f"C{i}" for i in range(10)]
    for ax, metric in zip(axes, metrics):
        for r, (run, values) in enumerate(runs.items()):
            colour = colours[r % 10]
            for prefix, kind, style in (("", "training", "-o"), ("val_", val_label, "--s")):
                series = values.get(prefix + metric)
                if series is None or not len(series):
                    continue
                series = [float(v) for v in series]
                # A run resumed with initial_epoch has fewer values than epochs: align the ends.
                epochs = list(range(len(values["loss"]) - len(series) + 1, len(values["loss"]) + 1))
                label = f"{run} {kind}" if run else kind
                ax.plot(epochs, series, style, color=colour, markersize=3,
                        alpha=1.0 if prefix else 0.75, label=label)
                if prefix and len(series) > 1:
                    finite = [v if math.isfinite(v) else math.nan for v in series]
                    best = int(np.nanargmin(finite) if "loss" in metric else np.nanargmax(finite))
                    ax.plot(epochs[best], series[best], "*", color=colour, markersize=12,
                            markeredgecolor="black", markeredgewidth=0.6, zorder=5,
                            label=f"best {label}: {series[best]:.4g} (epoch {epochs[best]})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(metric.replace("_", " ").capitalize())
        if metric == "learning_rate":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if len(ax.get_lines()) > 1:  # a lone curve (a learning rate) needs no legend
            ax.legend(fontsize="small")
    for ax in axes[len(metrics):]:
        ax.remove()
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# ----------------------------------------------------------------------------- feature maps

def _batch_of_one(model: Any, image: Any, who: str) -> np.ndarray:
    """One image (with or without the batch axis, uint8 or float) as the model's (1, ...) input."""
    shapes = model._graph().input_shapes
    if len(shapes) != 1:
        raise ValueError(f"{who} expected a model with one input. Received: model '{model.name}' with "
                         f"{len(shapes)} inputs.")
    x = np.asarray(image)
    if x.ndim == len(shapes[0]) - 1 or (x.ndim == len(shapes[0]) - 2 and shapes[0][-1] == 1):
        x = x[None]
    if x.ndim < 1 or x.shape[0] != 1:
        raise ValueError(f"{who} expected one image, e.g. x_test[0]. Received: an array of shape {x.shape}.")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255.0)  # what the lecture (and the CLI) train on
    return model._prepare_inputs(x, who)[0].astype(np.float32, copy=False)


def _resolve_layers(model: Any, layers: Optional[Sequence[Any]], shapes: Sequence[Tuple], who: str) -> List[int]:
    """Node indices to draw: the first call of each chosen layer, or every node whose output
    is a stack of feature maps (rank 4: N, H, W, C)."""
    nodes = model._graph().nodes
    if layers is None:
        chosen = [i for i, s in enumerate(shapes) if len(s) == 4]
        if not chosen:
            raise ValueError(f"{who}: model '{model.name}' has no layer with feature maps (outputs of shape "
                             "(N, H, W, C)) to show.")
        return chosen
    if isinstance(layers, (str, int)) or hasattr(layers, "weights"):
        layers = [layers]
    model_layers = model.layers
    out = []
    for item in layers:
        if isinstance(item, bool):
            item = str(item)
        if isinstance(item, int):
            if not -len(model_layers) <= item < len(model_layers):
                raise ValueError(f"{who} expected layer indices in [0, {len(model_layers)}). Received: {item}.")
            layer = model_layers[item]
        elif isinstance(item, str):
            matches = [l for l in model_layers if l.name == item]
            if not matches:
                raise ValueError(f"{who}: no layer named {item!r} in model '{model.name}'. Its layers are: "
                                 f"{', '.join(l.name for l in model_layers)}.")
            layer = matches[0]
        else:
            layer = item
        index = next((i for i, n in enumerate(nodes) if n.layer is layer), None)
        if index is None:
            raise ValueError(f"{who}: layer '{getattr(layer, 'name', layer)}' is not called in model "
                             f"'{model.name}' (an Input shows no feature maps; pass a layer after it).")
        if len(shapes[index]) != 4:
            raise ValueError(f"{who} expected layers whose output is a stack of feature maps (N, H, W, C). "
                             f"Received: layer '{layer.name}' with output shape {tuple(shapes[index])}.")
        out.append(index)
    return out


def feature_maps(model: Any, image: Any, layers: Optional[Sequence[Any]] = None) -> List[Tuple[Any, np.ndarray]]:
    """``[(layer, activation (H, W, C)), ...]`` for one image: what :func:`show_feature_maps`
    draws, as arrays. ``layers`` as there."""
    from .graph import Graph, run_forward

    who = "show_feature_maps()"
    x = _batch_of_one(model, image, who)
    graph = model._graph()
    k = graph.num_inputs
    # The same nodes with every value as an output: one eager pass yields every activation.
    every = Graph(graph.input_shapes, graph.nodes, list(range(k, k + len(graph.nodes))))
    values, _ = run_forward(every, [x], training=False, keep_trace=False)
    chosen = _resolve_layers(model, layers, [v.shape for v in values], who)
    return [(graph.nodes[i].layer, values[i][0]) for i in chosen]


def show_feature_maps(model: Any, image: Any, layers: Optional[Sequence[Any]] = None,
                      path: Optional[PathLike] = None, max_channels: int = 32, columns: int = 8,
                      normalize: str = "channel", cmap: str = "viridis", title: Optional[str] = None,
                      dpi: int = 100) -> Any:
    """For one input image, every channel of each chosen layer's output, layer by layer.

    The first row is the input image; then each layer gets a block titled with its name,
    class and output size (``32 x 32 x 6``, then ``16 x 16 x 6`` after pooling, ...), one
    small panel per channel. Works for Sequential and graph models (single input).

    Args:
        model: a built model.
        image: one image, (H, W, C) or (1, H, W, C) (or (H, W) for a one-channel input);
            uint8 images are divided by 255 first, as the models were trained.
        layers: layer names, indices into ``model.layers`` or layer objects (a layer called
            twice shows its first call); default: every layer whose output is (N, H, W, C).
        path: where to write the picture; None draws without writing.
        max_channels: at most this many channels per layer (the first ones); the block's
            title says how many it has.
        columns: panels per row.
        normalize: ``"channel"`` scales each channel to its own min..max (shows every map's
            pattern); ``"layer"`` uses one scale per layer (shows which channels are strong).
            A channel that is constant (a ReLU map that is 0 everywhere) says so.
        cmap: matplotlib colour map of the maps.
        title: the input row's heading (e.g. the image's class), before its size.
        dpi: resolution.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: a layer that is not in the model or does not output feature maps, a
            batch of several images, a model with several inputs.
    """
    if normalize not in ("channel", "layer"):
        raise ValueError(f"show_feature_maps() expected normalize='channel' or 'layer'. Received: "
                         f"normalize={normalize!r}.")
    for name, value in (("max_channels", max_channels), ("columns", columns)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"show_feature_maps() expected a positive integer {name}. Received: {name}={value!r}.")
    maps = feature_maps(model, image, layers)
    require_matplotlib("show_feature_maps()")
    x = _batch_of_one(model, image, "show_feature_maps()")[0]

    shown = [min(act.shape[-1], max_channels) for _, act in maps]
    cols = min(columns, max(shown))
    rows = [math.ceil(c / cols) for c in shown]
    panel = 1.15
    heights = [panel + 0.45] + [r * panel + 0.45 for r in rows]
    fig = _figure(max(cols * panel, 4.0) + 0.3, sum(heights) + 0.5, dpi)
    subs = fig.subfigures(len(heights), 1, height_ratios=heights)
    subs = list(np.atleast_1d(subs))

    img, grey = _display_image(x)
    ax = subs[0].subplots(1, 1)
    ax.imshow(img, cmap=grey, interpolation="nearest")
    _plain(ax)
    subs[0].suptitle(f"{title or 'input image'}: {' x '.join(str(d) for d in x.shape)}", fontsize="medium",
                     fontweight="bold")
    for sub, (layer, act), n, r in zip(subs[1:], maps, shown, rows):
        h, w, c = act.shape
        more = f"  (first {n} of {c} channels)" if n < c else ""
        sub.suptitle(f"{layer.name} ({type(layer).__name__}): {h} x {w} x {c}{more}",
                     fontsize="medium", fontweight="bold")
        axes = sub.subplots(r, cols, squeeze=False).ravel()
        lo_layer, hi_layer = float(act[..., :n].min()), float(act[..., :n].max())
        for ch, ax in enumerate(axes):
            if ch >= n:
                ax.remove()
                continue
            m = act[..., ch]
            lo, hi = (float(m.min()), float(m.max())) if normalize == "channel" else (lo_layer, hi_layer)
            ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1.0, interpolation="nearest")
            _plain(ax)
            constant = float(m.min()) == float(m.max())
            ax.set_title(f"ch {ch}" + (f" (all {float(m.min()):.3g})" if constant else ""), fontsize=7, pad=2)
    scale = "each channel scaled to its own range" if normalize == "channel" else "one scale per layer"
    fig.supxlabel(f"model '{model.name}'; {scale}; bright = strong activation", fontsize="small")
    return _finish(fig, path)


# ----------------------------------------------------------------------------- filters

def show_filters(layer: Any, path: Optional[PathLike] = None, max_filters: int = 64,
                 max_channels: int = 16, dpi: int = 100) -> Any:
    """A Conv2D layer's kernels as small images.

    With 3 input channels (a first layer on RGB images) each filter is one RGB picture,
    scaled to its own min..max; with one input channel each filter is one grey picture;
    otherwise each filter is a row with one panel per input channel, in a diverging colour
    map centred on 0 (red positive, blue negative), scaled per filter.

    Args:
        layer: a built ``Conv2D`` (e.g. ``model.layers[0]`` or ``model.get_layer("conv2d")``).
        path: where to write the picture; None draws without writing.
        max_filters: at most this many filters (the first ones).
        max_channels: at most this many input channels per filter row.
        dpi: resolution.

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: ``layer`` is not a Conv2D.
        RuntimeError: the layer has no weights yet (not built).
    """
    from .layers.conv import Conv2D

    if not isinstance(layer, Conv2D):
        hint = (" Pick one of its layers, e.g. model.get_layer('conv2d')." if hasattr(layer, "layers") else "")
        raise TypeError(f"show_filters() expected a Conv2D layer. Received: {type(layer).__name__}.{hint}")
    if not layer.weights:
        raise RuntimeError(f"show_filters(): layer '{layer.name}' has no weights yet. Build the model first.")
    for name, value in (("max_filters", max_filters), ("max_channels", max_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"show_filters() expected a positive integer {name}. Received: {name}={value!r}.")
    require_matplotlib("show_filters()")
    kernel = np.asarray(layer.kernel, dtype=np.float32)  # (KH, KW, C, F)
    kh, kw, c, f = kernel.shape
    nf = min(f, max_filters)
    head = f"{layer.name}: {f} filters of {kh} x {kw} x {c}" + (f" (first {nf} shown)" if nf < f else "")
    if c in (1, 3):
        cols = min(nf, 8)
        rows = math.ceil(nf / cols)
        panel = 1.2
        fig = _figure(max(cols * panel, 4.5), rows * (panel + 0.25) + 0.9, dpi)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for i, ax in enumerate(axes):
            if i >= nf:
                ax.remove()
                continue
            w = kernel[..., i]
            lo, hi = float(w.min()), float(w.max())
            w = (w - lo) / (hi - lo) if hi > lo else np.full_like(w, 0.5)
            ax.imshow(w if c == 3 else w[..., 0], cmap=None if c == 3 else "gray", vmin=0, vmax=1,
                      interpolation="nearest")
            _plain(ax)
            ax.set_title(f"filter {i}", fontsize=8, pad=2)
        how = "as RGB" if c == 3 else "in grey"
        fig.suptitle(f"{head}\nshown {how}, each scaled to its own min..max", fontsize="medium")
        return _finish(fig, path)
    nc = min(c, max_channels)
    panel = 0.75
    fig = _figure(max(nc * panel + 0.9, 4.5), nf * panel + 1.1, dpi)
    axes = fig.subplots(nf, nc, squeeze=False)
    for i in range(nf):
        w = kernel[:, :, :nc, i]
        scale = float(np.abs(kernel[..., i]).max()) or 1.0
        for j in range(nc):
            ax = axes[i, j]
            ax.imshow(w[:, :, j], cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            _plain(ax)
            if i == 0:
                ax.set_title(f"in {j}", fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel(f"filter {i}", fontsize=7, rotation=0, ha="right", va="center")
    more = f", first {nc} of {c} input channels" if nc < c else ""
    fig.suptitle(f"{head}\none row per filter, one column per input channel{more};\n"
                 "red positive, blue negative, each filter scaled to its own largest |weight|",
                 fontsize="medium")
    return _finish(fig, path)


# ----------------------------------------------------------------------------- pooling

def show_pooling(image: Any, pool_size: Any = 2, path: Optional[PathLike] = None, steps: int = 1,
                 title: Optional[str] = None, dpi: int = 100) -> Any:
    """An image, its max pooling and its average pooling side by side (pycnn's own kernels).

    With ``steps > 1`` pooling is applied repeatedly (32 -> 16 -> 8 ...): one row for max
    pooling, one for average pooling. All panels share the input's value scale, so max
    pooling's brightening and average pooling's blurring are both visible; axis ticks count
    pixels, so the shrinking is too.

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3); uint8 or float.
        pool_size: int or (ph, pw); the stride equals it (Keras's default).
        path: where to write the picture; None draws without writing.
        steps: how many times to pool.
        title: what the image is (e.g. its class), put before the pooling settings.
        dpi: resolution.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: not an image, or a pool larger than the image would become.
    """
    from .layers.pooling import AveragePooling2D, MaxPooling2D

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"show_pooling() expected a positive integer steps. Received: steps={steps!r}.")
    img = np.asarray(image)
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError("show_pooling() expected one image of shape (H, W), (H, W, 1) or (H, W, 3). "
                         f"Received: shape={np.shape(image)}.")
    x = img.astype(np.float32) / (np.float32(255.0) if img.dtype == np.uint8 else np.float32(1.0))
    pools = {"max pooling": MaxPooling2D(pool_size), "average pooling": AveragePooling2D(pool_size)}
    ph, pw = next(iter(pools.values())).pool_size
    results: Dict[str, List[np.ndarray]] = {}
    for name, layer in pools.items():
        current, out = x[None], []
        for step in range(steps):
            if current.shape[1] < ph or current.shape[2] < pw:
                raise ValueError(f"show_pooling(): after {step} pooling steps the image is {current.shape[1]} x "
                                 f"{current.shape[2]}, smaller than pool_size=({ph}, {pw}). Received: steps={steps}.")
            current = layer(current)
            out.append(current[0])
        results[name] = out
    require_matplotlib("show_pooling()")
    from matplotlib.ticker import MaxNLocator

    lo, hi = float(x.min()), float(x.max())
    if steps == 1:
        grid = [[x, results["max pooling"][0], results["average pooling"][0]]]
        titles = [["input", "max pooling", "average pooling"]]
    else:
        grid = [[x] + results[name] for name in pools]
        titles = [["input"] + [f"{name} x{s + 1}" for s in range(steps)] for name in pools]
    rows, cols = len(grid), len(grid[0])
    panel = 2.6
    fig = _figure(cols * panel + 0.3, rows * (panel + 0.35) + 0.45, dpi)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for col in range(cols):
            a = grid[r][col]
            shown, grey = _display_image(a, lo, hi)
            ax = axes[r, col]
            ax.imshow(shown, cmap=grey, vmin=None if grey is None else lo, vmax=None if grey is None else hi,
                      interpolation="nearest")
            ax.set_title(f"{titles[r][col]}\n{a.shape[0]} x {a.shape[1]}", fontsize="medium")
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{title + ': ' if title else ''}pooling with pool_size=({ph}, {pw}), strides=({ph}, {pw})",
                 fontsize="medium", fontweight="bold")
    return _finish(fig, path)


# ----------------------------------------------------------------------------- predictions

def _labels(y: Any, n: int, who: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"x and y must contain the same number of samples. Received: x.shape[0]={n}, "
                         f"y.shape[0]={y.shape[0]}.")
    return y.astype(np.int64)


def _class_name(names: Optional[Sequence[str]], k: int) -> str:
    return str(names[k]) if names is not None and 0 <= k < len(names) else str(k)


def _predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    xf = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x
    probs = model.predict(xf, batch_size=batch_size, verbose=0)
    if isinstance(probs, list):
        probs = probs[0]
    return np.asarray(probs)


def show_predictions(model: Any, x: Any, y: Any, class_names: Optional[Sequence[str]] = None,
                     path: Optional[PathLike] = None, count: int = 25, columns: int = 5,
                     batch_size: int = 256, dpi: int = 100) -> Any:
    """A grid of images with the model's prediction (and its probability) and the true label;
    wrong predictions are drawn in red with a red frame, right ones in green.

    Args:
        model: a classifier whose output is one probability per class.
        x: images (N, H, W, C) (or (N, H, W) for one channel); uint8 are divided by 255.
        y: labels (N,) or (N, 1).
        class_names: names by label (``pycnn.datasets.cifar10.CLASS_NAMES``); default the numbers.
        path: where to write the picture; None draws without writing.
        count: the first ``count`` images are shown.
        columns: panels per row.
        batch_size: for ``predict``.
        dpi: resolution.

    Returns:
        The matplotlib Figure.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"show_predictions() expected a positive integer count. Received: count={count!r}.")
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"show_predictions() expected a batch of images (N, H, W[, C]). Received: shape={x.shape}.")
    y = _labels(y, x.shape[0], "show_predictions()")
    x, y = x[:count], y[:count]
    probs = _predict(model, x, batch_size)
    require_matplotlib("show_predictions()")
    pred = probs.argmax(axis=-1)
    n = len(x)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    panel = 1.9
    fig = _figure(cols * panel, rows * (panel + 0.45) + 0.6, dpi)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.remove()
            continue
        shown, grey = _display_image(x[i])
        ax.imshow(shown, cmap=grey, interpolation="nearest")
        _plain(ax)
        right = pred[i] == y[i]
        colour = RIGHT_COLOUR if right else WRONG_COLOUR
        ax.set_title(f"{_class_name(class_names, int(pred[i]))} {100 * float(probs[i, pred[i]]):.0f}%\n"
                     f"true: {_class_name(class_names, int(y[i]))}", fontsize=8, color=colour, pad=3)
        for spine in ax.spines.values():
            spine.set_visible(not right)
            spine.set_color(WRONG_COLOUR)
            spine.set_linewidth(3)
    correct = int((pred == y).sum())
    fig.suptitle(f"{model.name}: {correct} of {n} right (green); wrong ones in red, framed\n"
                 "each panel: predicted class and its probability, then the true class", fontsize="medium")
    return _finish(fig, path)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: Optional[int] = None) -> np.ndarray:
    """``m[i, j]`` = how many samples of true class ``i`` were predicted as ``j`` (int64)."""
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must contain the same number of samples. Received: "
                         f"y_true.shape[0]={t.shape[0]}, y_pred.shape[0]={p.shape[0]}.")
    k = int(num_classes if num_classes is not None else max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"confusion_matrix() expected labels in [0, {k}). Received: labels from "
                         f"{min(t.min(), p.min())} to {max(t.max(), p.max())}.")
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def show_confusion(model: Any, x: Any, y: Any, class_names: Optional[Sequence[str]] = None,
                   path: Optional[PathLike] = None, batch_size: int = 256, dpi: int = 100) -> Any:
    """The confusion matrix of ``model`` on ``(x, y)``: rows are true classes, columns
    predicted ones; each cell shows its count, coloured by the share of its row (so the
    diagonal is each class's recall).

    Args:
        model: a classifier whose output is one probability per class.
        x, y: images and labels, as for :func:`show_predictions`.
        class_names: names by label; default the numbers (and the model's output size).
        path: where to write the picture; None draws without writing.
        batch_size: for ``predict``.
        dpi: resolution.

    Returns:
        The matplotlib Figure.
    """
    x = np.asarray(x)
    y = _labels(y, x.shape[0], "show_confusion()")
    probs = _predict(model, x, batch_size)
    require_matplotlib("show_confusion()")
    k = len(class_names) if class_names is not None else probs.shape[-1]
    m = confusion_matrix(y, probs.argmax(axis=-1), k)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    names = [_class_name(class_names, i) for i in range(k)]
    side = max(4.5, 0.55 * k + 2.2)
    fig = _figure(side + 1.0, side + 0.4, dpi)
    ax = fig.subplots(1, 1)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7 if k > 10 else 8,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class's images")
    accuracy = float(np.trace(m)) / max(int(m.sum()), 1)
    ax.set_title(f"{model.name}: confusion matrix on {int(m.sum())} images\naccuracy {100 * accuracy:.1f}%",
                 fontsize="medium")
    return _finish(fig, path)


__all__ = ["plot_history", "plot_histories", "show_feature_maps", "feature_maps", "show_filters",
           "show_pooling", "show_predictions", "show_confusion", "confusion_matrix", "save_figure",
           "panel_count", "require_matplotlib"]
