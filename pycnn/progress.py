"""The Keras-style progress display used by ``fit``, ``evaluate`` and ``predict``.

Formats (``verbose`` as in Keras)::

    verbose=1, terminal, during an epoch (redrawn in place with a carriage return):
     12/782 ━━━━━━━━──────────── 3s 41ms/step - accuracy: 0.4100 - loss: 1.6200
    verbose=1, last line of an epoch (the only line when stdout is not a terminal):
    782/782 ━━━━━━━━━━━━━━━━━━━━ 34s 43ms/step - accuracy: 0.4100 - loss: 1.6200 - val_accuracy: ...
    verbose=2, one line per epoch:
    782/782 - 34s - 43ms/step - accuracy: 0.4100 - loss: 1.6200 - val_accuracy: ...
    verbose=0: nothing.

Carriage returns are written only when the stream is a terminal, so logs and pipes get
clean lines. On a terminal the line being redrawn is cut to one column less than the
terminal's width (``shutil.get_terminal_size``, read at every redraw): a line that wrapped
could not be redrawn in place, and every redraw would scroll a new line. The last line of
an epoch is written whole. Metric values are shown as given (the trainer passes running averages).
"""
from __future__ import annotations

import math
import numbers
import shutil
import sys
import time
from typing import Any, Mapping, Optional, TextIO


def format_value(value: float) -> str:
    """``0.4100`` style, switching to ``1.2000e-04`` for tiny magnitudes (and nan/inf as is);
    an integer count (``skipped_batches``) as an integer."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) > 1e-3 or value == 0.0 else f"{value:.4e}"


def format_step_time(seconds: float, unit: str = "step") -> str:
    """``41ms/step``, ``2s/step`` or ``850us/step``."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def format_eta(seconds: float) -> str:
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


class Progbar:
    """Progress over ``target`` steps.

    Args:
        target: number of steps (batches) in the epoch.
        verbose: 0 silent, 1 progress bar, 2 one line at the end.
        stream: where to write (default ``sys.stdout`` at construction time).
        interactive: redraw in place with ``\\r``; default: whether ``stream`` is a terminal.
        width: characters in the bar.
        interval: minimum seconds between redraws on a terminal.
        columns: the terminal's width for redraws in place; default: asked at every redraw
            (``shutil.get_terminal_size``, which honours ``$COLUMNS``).
    """

    def __init__(self, target: int, verbose: int = 1, stream: Optional[TextIO] = None,
                 interactive: Optional[bool] = None, width: int = 20, interval: float = 0.05,
                 unit_name: str = "step", columns: Optional[int] = None) -> None:
        self.target = int(target)
        self.verbose = int(verbose)
        self.stream = sys.stdout if stream is None else stream
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                interactive = bool(isatty()) if isatty is not None else False
            except (ValueError, OSError):  # closed or detached stream
                interactive = False
        self.interactive = interactive
        self.width = int(width)
        self.interval = float(interval)
        self.unit_name = unit_name
        self.columns = columns
        self._start = time.perf_counter()
        self._after_first: Optional[float] = None
        self._last_draw = -math.inf
        self._prev_width = 0

    def _step_time(self, current: int, now: float) -> float:
        """Seconds per step, ignoring the (slower, warm-up) first step once there are more."""
        if current <= 0:
            return 0.0
        if self._after_first is not None and current > 1:
            return (now - self._after_first) / (current - 1)
        return (now - self._start) / current

    def update(self, current: int, values: Optional[Mapping[str, float]] = None, finalize: bool = False) -> None:
        """Report that ``current`` steps are done, with the metrics to show.

        Args:
            current: steps completed so far (1-based).
            values: metric name -> value, displayed in the given order.
            finalize: the epoch is over: draw the final line and end it with a newline.
        """
        now = time.perf_counter()
        step = self._step_time(current, now)
        if current == 1 and self._after_first is None:
            self._after_first = now
        if self.verbose == 0:
            return
        metrics = "".join(f" - {k}: {format_value(v)}" for k, v in (values or {}).items())
        digits = len(str(self.target))
        # A generator without steps_per_epoch: the number of steps is known after one epoch (Keras).
        count = f"{current:>{digits}}/{self.target}" if self.target > 0 else f"{current}/Unknown"
        elapsed = now - self._start
        if self.verbose == 2:
            if finalize:
                self._write(f"{count} - {elapsed:.0f}s - {format_step_time(step, self.unit_name)}{metrics}\n")
            return
        if not finalize and (not self.interactive or now - self._last_draw < self.interval):
            return
        done = min(self.width, int(self.width * current / self.target)) if self.target > 0 else self.width
        bar = "━" * done + "─" * (self.width - done)
        timing = f"{elapsed:.0f}s" if finalize else format_eta(step * (self.target - current))
        line = f"{count} {bar} {timing} {format_step_time(step, self.unit_name)}{metrics}"
        if self.interactive:
            if not finalize:
                line = line[: self._terminal_width() - 1]
            pad = " " * max(0, self._prev_width - len(line))
            self._write("\r" + line + pad + ("\n" if finalize else ""))
            self._prev_width = len(line)
        else:
            self._write(line + "\n")
        self._last_draw = now

    def _terminal_width(self) -> int:
        if self.columns is not None:
            return max(2, int(self.columns))
        return max(2, shutil.get_terminal_size(fallback=(80, 24)).columns)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def check_verbose(verbose: Any, who: str) -> int:
    """Keras's ``verbose`` argument of ``who`` ("fit()", ...) as 0, 1 or 2 ('auto' is 1)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"Invalid value for argument 'verbose' of {who}: expected 0, 1, 2 or 'auto'. "
                         f"Received: verbose={verbose!r}.")
    return int(verbose)
