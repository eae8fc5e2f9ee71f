"""Optimizers with Keras 3's update rules, applied in place with vectorised NumPy.

``optimizer.apply_gradients([(grad, var), ...])`` updates each float32 ``var`` array in
place (the layers' weight arrays) and keeps per-variable state (momentum, moments)
keyed by the variable, so weights must be updated in place, never replaced
(``Layer.set_weights`` copies into the existing arrays).

* ``SGD``: ``v = momentum * v - lr * g``; ``w += v`` (or, with Nesterov,
  ``w += momentum * v - lr * g``); plain ``w -= lr * g`` when momentum is 0.
* ``Adam``: ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
  ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``; ``w -= lr_t m / (sqrt(v) + eps)``.
* ``RMSprop``: ``v = rho v + (1 - rho) g^2``; ``w -= lr g / sqrt(v + eps)`` (Keras 3 puts eps
  inside the root here, unlike Adam).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import ops, schedules, utils


def _number(value: Any, arg: str, owner: str, low: float, high: float = math.inf, low_open: bool = False,
            high_open: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == math.inf else "]"
        high_text = "inf" if high == math.inf else f"{high:g}"
        raise ValueError(f"Invalid value for argument '{arg}' of {owner}: expected a number in "
                         f"{lo}{low:g}, {high_text}{hi}. Received: {arg}={value!r}.")
    return float(value)


class Optimizer:
    """Base class: owns the learning rate, the step counter and per-variable slots.

    Args:
        learning_rate: a positive float; may be changed between steps
            (``optimizer.learning_rate = 1e-4``).
    """

    name = "optimizer"

    def __init__(self, learning_rate: Any) -> None:
        self._schedule = None
        self.iterations = 0
        self._step_rate = 0.0
        self.learning_rate = learning_rate
        self._slots: Dict[int, Tuple[np.ndarray, List[np.ndarray]]] = {}

    @property
    def learning_rate(self) -> float:
        """The rate the next step uses: the schedule's value at ``iterations`` when the
        optimizer was given a schedule (as Keras evaluates it)."""
        if self._schedule is not None:
            return float(self._schedule(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        if isinstance(value, dict):  # a serialized schedule, as get_config writes it
            value = schedules.deserialize(value)
        if isinstance(value, schedules.LearningRateSchedule):
            self._schedule, self._learning_rate = value, None
            return
        if getattr(self, "_schedule", None) is not None:
            raise TypeError(f"{type(self).__name__} was given a LearningRateSchedule as its learning_rate, so the "
                            f"learning rate follows it and cannot be set to {value!r}; assign another schedule.")
        self._schedule = None
        self._learning_rate = _number(value, "learning_rate", type(self).__name__, 0.0, low_open=True)

    @property
    def schedule(self) -> Optional["schedules.LearningRateSchedule"]:
        """The learning-rate schedule, or None for a constant rate."""
        return self._schedule

    def _learning_rate_config(self) -> Any:
        return schedules.serialize(self._schedule) if self._schedule is not None else self._learning_rate

    def _take_step(self) -> float:
        """The rate for the step about to be applied, then count that step (Keras evaluates a
        schedule at the step count before the update)."""
        rate = self.learning_rate
        self.iterations += 1
        self._step_rate = rate
        return rate

    def _slot(self, var: np.ndarray, count: int) -> List[np.ndarray]:
        entry = self._slots.get(id(var))
        if entry is None or entry[0] is not var:
            entry = (var, [np.zeros_like(var) for _ in range(count)])
            self._slots[id(var)] = entry
        return entry[1]

    def apply_gradients(self, grads_and_vars: Iterable[Tuple[np.ndarray, np.ndarray]]) -> None:
        """One optimisation step: update every ``var`` in place from its ``grad``.

        Pairs whose gradient is None are skipped.

        Raises:
            TypeError: if a variable is not a float32 NumPy array (it could not be
                updated in place).
            ValueError: if a gradient's shape differs from its variable's.
        """
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        for g, v in pairs:
            if not isinstance(v, np.ndarray) or v.dtype != np.float32:
                raise TypeError(f"{type(self).__name__}.apply_gradients() expected float32 NumPy variables "
                                f"(updated in place). Received: a variable of type {type(v).__name__}"
                                f"{' and dtype ' + str(v.dtype) if isinstance(v, np.ndarray) else ''}.")
            if np.shape(g) != v.shape:
                raise ValueError(f"{type(self).__name__}.apply_gradients() expected each gradient to have its "
                                 f"variable's shape. Received: gradient shape={np.shape(g)}, "
                                 f"variable shape={v.shape}.")
        self._take_step()
        self._update_all([(np.asarray(g, dtype=np.float32), v) for g, v in pairs])

    def _update_all(self, pairs: List[Tuple[np.ndarray, np.ndarray]]) -> None:
        for g, w in pairs:
            self._update(g, w)

    def _update(self, g: np.ndarray, w: np.ndarray) -> None:
        raise NotImplementedError

    def native_update(self, variables: List[np.ndarray]) -> Optional[tuple]:
        """``(name, hyper, slots per variable)`` of the registered update component
        (csrc/optimizer.cpp) that applies this optimizer's step inside the native training
        step, counting the step; None when it has none (the step then returns the gradients
        and the trainer calls :meth:`apply_gradients`)."""
        return None

    def _native_slots(self, variables: List[np.ndarray], count: int, native: int) -> List[List[np.ndarray]]:
        """The first ``native`` of each variable's ``count`` slots, the list kept between steps
        (it is rebuilt when the variables or the slots change: set_slots)."""
        cached = getattr(self, "_native_cache", None)
        if cached is None or len(cached[0]) != len(variables) or any(a is not b for a, b in zip(cached[0], variables)):
            cached = (list(variables), [self._slot(w, count)[:native] for w in variables])
            self._native_cache = cached
        return cached[1]

    def native_step_skipped(self) -> None:
        """The native step refused to apply the update :meth:`native_update` prepared
        (its loss was not finite): take back the step it counted."""
        self.iterations -= 1

    def slot_names(self) -> Tuple[str, ...]:
        """What :meth:`get_slots` holds per variable once a step has run, in order: Keras's names
        ('momentum', 'velocity'), or 'scratch' for work space. Saved files are checked (and
        translated to Keras's optimizer variables) with it."""
        return ()

    #: Slots that are never negative: a file holding a negative one is damaged.
    nonnegative_slots: Tuple[str, ...] = ("velocity",)

    def get_slots(self, variables: Sequence[np.ndarray]) -> List[List[np.ndarray]]:
        """Per variable, the state arrays the update keeps (empty before the first step)."""
        out = []
        for var in variables:
            entry = self._slots.get(id(var))
            out.append(list(entry[1]) if entry is not None and entry[0] is var else [])
        return out

    def set_slots(self, variables: Sequence[np.ndarray], slots: Sequence[Sequence[np.ndarray]],
                  iterations: int) -> None:
        """Restore the state :meth:`get_slots` returned (for the same variables' shapes)."""
        if len(slots) != len(variables):
            raise ValueError(f"{type(self).__name__}.set_slots() expected state for {len(variables)} variables. "
                             f"Received: {len(slots)}.")
        for var, arrays in zip(variables, slots):
            for a in arrays:
                if np.shape(a) != var.shape:
                    raise ValueError(f"{type(self).__name__}.set_slots() expected state arrays of shape {var.shape}. "
                                     f"Received: shape={np.shape(a)}.")
        self._slots = {}
        self._native_cache = None
        for var, arrays in zip(variables, slots):
            if arrays:
                self._slots[id(var)] = (var, [np.array(a, dtype=np.float32) for a in arrays])
        self.iterations = int(iterations)

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self._learning_rate_config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as in Keras.

    Args:
        learning_rate: step size (default 0.01).
        momentum: in [0, 1]; 0 is plain SGD.
        nesterov: use Nesterov momentum.
    """

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(learning_rate)
        self.momentum = _number(momentum, "momentum", "SGD", 0.0, 1.0)
        self.nesterov = utils.boolean(nesterov, "nesterov", "SGD")

    def _update(self, g: np.ndarray, w: np.ndarray) -> None:
        lr = np.float32(self._step_rate)
        if self.momentum == 0.0:
            w -= lr * g
            return
        (v,) = self._slot(w, 1)
        mom = np.float32(self.momentum)
        v *= mom
        v -= lr * g
        if self.nesterov:
            w += mom * v - lr * g
        else:
            w += v

    def slot_names(self) -> Tuple[str, ...]:
        return ("momentum",) if self.momentum != 0.0 else ()

    def native_update(self, variables: List[np.ndarray]) -> Optional[tuple]:
        if type(self) is not SGD or self.momentum == 0.0:
            return None  # plain SGD is one NumPy pass per weight; a subclass may change the rule
        rate = self._take_step()
        return ("sgd", [rate, self.momentum, float(self.nesterov)], self._native_slots(variables, 1, 1))

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self._learning_rate_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras 3's bias correction folded into the step size.

    Args:
        learning_rate: default 0.001.
        beta_1: decay of the first moment, in [0, 1).
        beta_2: decay of the second moment, in [0, 1).
        epsilon: added to sqrt(v) (default 1e-7, Keras's value).
    """

    name = "adam"

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta_1 = _number(beta_1, "beta_1", "Adam", 0.0, 1.0, high_open=True)
        self.beta_2 = _number(beta_2, "beta_2", "Adam", 0.0, 1.0, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", "Adam", 0.0)

    def _update_all(self, pairs: List[Tuple[np.ndarray, np.ndarray]]) -> None:
        # One native call updates every variable (the NumPy version below costs about ten
        # array passes per variable); _update stays as the readable statement of the rule.
        if not pairs:
            return
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = self._step_rate * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        slots = [self._slot(w, 3) for _, w in pairs]
        ops.apply_update("adam", [alpha, b1, b2, self.epsilon], [w for _, w in pairs], [g for g, _ in pairs],
                         [s[:2] for s in slots])

    def slot_names(self) -> Tuple[str, ...]:
        return ("momentum", "velocity", "scratch")

    def native_update(self, variables: List[np.ndarray]) -> Optional[tuple]:
        if type(self) is not Adam:
            return None  # a subclass may change the rule the native update implements
        rate = self._take_step()
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = rate * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        return ("adam", [alpha, b1, b2, self.epsilon], self._native_slots(variables, 3, 2))

    def _update(self, g: np.ndarray, w: np.ndarray) -> None:
        m, v, scratch = self._slot(w, 3)
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = np.float32(self._step_rate * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t))
        m *= np.float32(b1)
        m += np.float32(1.0 - b1) * g
        v *= np.float32(b2)
        np.multiply(g, g, out=scratch)
        scratch *= np.float32(1.0 - b2)
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += np.float32(self.epsilon)
        np.divide(m, scratch, out=scratch)
        scratch *= alpha
        w -= scratch

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self._learning_rate_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop without momentum, as in Keras (``rho=0.9``, ``epsilon=1e-7``).

    Args:
        learning_rate: default 0.001.
        rho: decay of the mean square, in [0, 1).
        epsilon: added to v under the square root.
    """

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.rho = _number(rho, "rho", "RMSprop", 0.0, 1.0, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", "RMSprop", 0.0)

    def slot_names(self) -> Tuple[str, ...]:
        return ("velocity", "scratch")

    def _update(self, g: np.ndarray, w: np.ndarray) -> None:
        v, scratch = self._slot(w, 2)
        v *= np.float32(self.rho)
        np.multiply(g, g, out=scratch)
        scratch *= np.float32(1.0 - self.rho)
        v += scratch
        np.add(v, np.float32(self.epsilon), out=scratch)
        np.sqrt(scratch, out=scratch)
        np.divide(g, scratch, out=scratch)
        scratch *= np.float32(self._step_rate)
        w -= scratch

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self._learning_rate_config(), "rho": self.rho, "epsilon": self.epsilon}


_ALIASES = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}

#: The names :func:`get` accepts (the CLI's --optimizer choices).
NAMES = tuple(_ALIASES)


def get(identifier: Union[str, Optimizer]) -> Optimizer:
    """An optimizer from a name ('adam', 'sgd', 'rmsprop': Keras defaults) or an instance.

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything else.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _ALIASES:
            return _ALIASES[key]()
        raise ValueError(f"Unknown optimizer. Expected one of {', '.join(repr(k) for k in _ALIASES)} or a "
                         f"pycnn.optimizers.Optimizer instance. Received: optimizer={identifier!r}.")
    raise TypeError(f"An optimizer must be a name or a pycnn.optimizers.Optimizer instance. "
                    f"Received: optimizer={identifier!r}.")
