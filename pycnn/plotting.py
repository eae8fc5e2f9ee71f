"""Training curves as a PNG: the older name of :mod:`pycnn.viz`'s curve functions.

``plot_history`` and ``plot_histories`` here draw what :func:`pycnn.viz.plot_history` draws
and, as before, return the written ``path`` (the :mod:`pycnn.viz` functions return the
figure). New code should use :mod:`pycnn.viz`, which also draws feature maps, filters,
pooling, predictions and confusion matrices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .viz import require_matplotlib  # noqa: F401  (kept for callers of the old name)


def plot_history(history, path: str | Path, title: str | None = None, dpi: int = 120) -> Path:
    """:func:`pycnn.viz.plot_history` written to ``path``; returns ``path`` as a Path."""
    from . import viz

    viz.plot_history(history, path, title=title, dpi=dpi)
    return Path(path)


def plot_histories(histories: Mapping[str, object], path: str | Path, title: str | None = None,
                   dpi: int = 120) -> Path:
    """:func:`pycnn.viz.plot_histories` written to ``path``; returns ``path`` as a Path."""
    from . import viz

    viz.plot_histories(histories, path, title=title, dpi=dpi)
    return Path(path)
