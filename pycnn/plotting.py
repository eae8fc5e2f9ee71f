"""Training curves as a PNG: loss and accuracy per epoch, training and validation.

Uses matplotlib's object API with the Agg canvas (no pyplot global state, no display
needed). matplotlib is optional (``pip install pycnn[plot]``); without it
:func:`plot_history` raises ImportError with the install command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def require_matplotlib() -> None:
    """Raise ImportError with an install hint when matplotlib is not importable."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Plotting training curves needs matplotlib, which is not installed. Install it with "
            "`pip install matplotlib` (or `pip install pycnn[plot]`), or leave out --plot."
        ) from exc


def _history_dict(history) -> Mapping[str, Sequence[float]]:
    values = getattr(history, "history", history)
    if not isinstance(values, Mapping):
        raise TypeError("plot_history() expected a History object or a dict of per-epoch lists. "
                        f"Received: {type(history).__name__}.")
    return values


def plot_history(history, path: str | Path, title: str | None = None, dpi: int = 120) -> Path:
    """Save loss and accuracy curves (train and, when present, validation) to ``path``.

    Args:
        history: ``History`` returned by ``fit`` or its ``.history`` dict with keys
            ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (any subset with
            ``loss``), each a list with one value per epoch.
        path: output file; the format follows the extension (``.png`` recommended).
        title: figure title.
        dpi: resolution.

    Returns:
        ``path`` as a Path.

    Raises:
        ImportError: matplotlib is missing.
        ValueError: the history has no ``loss`` values.
    """
    return plot_histories({"": history}, path, title=title, dpi=dpi)


def plot_histories(histories: Mapping[str, object], path: str | Path, title: str | None = None,
                   dpi: int = 120) -> Path:
    """Like :func:`plot_history` for several runs in one figure, e.g. the case study's two
    models: ``plot_histories({"classic features": h1, "4-filter CNN": h2}, "curves.png")``.
    Each run's name prefixes its curves' labels."""
    runs = {name: _history_dict(h) for name, h in histories.items()}
    for name, values in runs.items():
        if not values.get("loss"):
            raise ValueError("plot_history() expected a history with at least one 'loss' value. "
                             f"Received{' for ' + repr(name) if name else ''}: keys={sorted(values)}.")
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    has_acc = any(v.get("accuracy") or v.get("val_accuracy") for v in runs.values())
    fig = Figure(figsize=(10 if has_acc else 5, 4), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    panels = [("loss", "Loss")] + ([("accuracy", "Accuracy")] if has_acc else [])
    for ax, (key, label) in zip(axes, panels):
        for run, values in runs.items():
            epochs = list(range(1, len(values["loss"]) + 1))
            for prefix, name, style in (("", "train", "-o"), ("val_", "test", "-s")):
                series = values.get(prefix + key)
                if series:
                    ax.plot(epochs[: len(series)], series, style, markersize=3,
                            label=f"{run} {name}" if run else name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.lower())
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
