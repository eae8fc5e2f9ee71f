"""Learning-rate schedules, as ``keras.optimizers.schedules`` (also ``pycnn.optimizers.schedules``).

A schedule maps the optimizer's step count (``optimizer.iterations`` before the update, as in
Keras) to a learning rate; pass one wherever a learning rate goes:
``Adam(learning_rate=CosineDecay(1e-3, decay_steps=10_000))``. Formulas, names, arguments and
defaults are Keras 3's.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Union


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float``; ``get_config`` / ``from_config`` round-trip."""

    def __call__(self, step: Union[int, float]) -> float:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _positive(value: Any, arg: str, owner: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        ok = float(value) >= 0 if allow_zero else float(value) > 0
    if not ok:
        raise ValueError(f"Invalid value for argument '{arg}' of {owner}: expected a "
                         f"{'non-negative' if allow_zero else 'positive'} number. Received: {arg}={value!r}.")
    return float(value)


class _StepDecay(LearningRateSchedule):
    """Shared by the two decays of ``p = step / decay_steps`` (floored with ``staircase``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str = "") -> None:
        owner = type(self).__name__
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate", owner)
        self.decay_steps = _positive(decay_steps, "decay_steps", owner)
        self.decay_rate = _positive(decay_rate, "decay_rate", owner, allow_zero=isinstance(self, InverseTimeDecay))
        self.staircase = bool(staircase)
        self.name = name or owner

    def __call__(self, step: Union[int, float]) -> float:
        p = step / self.decay_steps
        return self._decayed(math.floor(p) if self.staircase else p)

    def _decayed(self, p: float) -> float:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StepDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase`` the
    exponent is floored."""

    def _decayed(self, p: float) -> float:
        return self.initial_learning_rate * self.decay_rate ** p


class InverseTimeDecay(_StepDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``; with ``staircase``
    the ratio is floored."""

    def _decayed(self, p: float) -> float:
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float],
                 name: str = "PiecewiseConstant") -> None:
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError("The length of boundaries should be 1 less than the length of values. "
                             f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                             f"values={values} of length {len(values)}.")
        if any(later <= earlier for earlier, later in zip(boundaries, boundaries[1:])):
            raise ValueError(f"PiecewiseConstantDecay expected increasing boundaries. Received: {boundaries}.")
        self.boundaries: List[float] = boundaries
        self.values = [_positive(v, "values", "PiecewiseConstantDecay", allow_zero=True) for v in values]
        self.name = name

    def __call__(self, step: Union[int, float]) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self) -> Dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then cosine decay over ``decay_steps`` from the peak (the warmup target,
    else the initial rate) down to ``alpha`` times it, where it stays."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0, name: str = "CosineDecay",
                 warmup_target: Union[float, None] = None, warmup_steps: int = 0) -> None:
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate", "CosineDecay",
                                               allow_zero=True)
        self.decay_steps = _positive(decay_steps, "decay_steps", "CosineDecay")
        self.alpha = _positive(alpha, "alpha", "CosineDecay", allow_zero=True)
        self.warmup_target = None if warmup_target is None else _positive(warmup_target, "warmup_target",
                                                                          "CosineDecay", allow_zero=True)
        self.warmup_steps = _positive(warmup_steps, "warmup_steps", "CosineDecay", allow_zero=True)
        self.name = name

    def _decay(self, step: float, peak: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return peak * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: Union[int, float]) -> float:
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * step / self.warmup_steps + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> Dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseLinearDecay(LearningRateSchedule):
    """pycnn's own (Keras has none): ``values[i]`` at step ``boundaries[i]``, straight lines
    between, ``values[0]`` before the first boundary and ``values[-1]`` after the last: a
    linear warm-up and decay (``PiecewiseLinearDecay([0, 100, 400], [0.2, 1.0, 0.07])``), or
    the one-cycle "triangle" of fast CIFAR-10 recipes."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float],
                 name: str = "PiecewiseLinearDecay") -> None:
        owner = "PiecewiseLinearDecay"
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) or not values:
            raise ValueError(f"{owner} expected one value per boundary (at least one). Received: "
                             f"boundaries={boundaries} of length {len(boundaries)}, values={values} of length "
                             f"{len(values)}.")
        self.boundaries = [_positive(b, "boundaries", owner, allow_zero=True) for b in boundaries]
        if any(later <= earlier for earlier, later in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"{owner} expected increasing boundaries. Received: {boundaries}.")
        self.values = [_positive(v, "values", owner, allow_zero=True) for v in values]
        self.name = name

    def __call__(self, step: Union[int, float]) -> float:
        b, v = self.boundaries, self.values
        if step <= b[0]:
            return v[0]
        for i in range(1, len(b)):
            if step <= b[i]:
                return v[i - 1] + (v[i] - v[i - 1]) * (step - b[i - 1]) / (b[i] - b[i - 1])
        return v[-1]

    def get_config(self) -> Dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


def serialize(schedule: LearningRateSchedule) -> Dict[str, Any]:
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(spec: Dict[str, Any]) -> LearningRateSchedule:
    cls = globals().get(spec.get("class_name", "")) if isinstance(spec, dict) else None
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)
            and cls not in (LearningRateSchedule, _StepDecay)):
        raise ValueError(f"Unknown learning-rate schedule: {spec!r}.")
    return cls.from_config(dict(spec.get("config", {})))
