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
import re
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
        learning_rate: a positive float or a schedule; may be changed between steps
            (``optimizer.learning_rate = 1e-4``).
        weight_decay: Keras 3's decoupled weight decay: before each update every variable
            (but those :meth:`exclude_from_weight_decay` names) becomes
            ``w - w * weight_decay * learning_rate``. None (default) or 0: none.
        use_ema: keep an exponential moving average of the trainable variables (Keras 3):
            after each update ``average = m * average + (1 - m) * w`` (the first step copies
            w); at the end of ``fit`` the variables take the averages.
        ema_momentum: ``m`` above, in [0, 1] (default 0.99).
        ema_overwrite_frequency: with ``use_ema``, every this many steps the variables take
            the averages (None: only at the end of ``fit``).
        learning_rate_multipliers: pycnn's own (Keras has none; PyTorch's parameter groups):
            ``{regex: factor}``; a variable whose path (``'batch_normalization/beta'``) the
            regex finds (``re.search``, first match in order) steps with ``factor`` times
            the learning rate. The weight decay is not multiplied.
    """

    name = "optimizer"

    def __init__(self, learning_rate: Any, *, weight_decay: Optional[float] = None, use_ema: bool = False,
                 ema_momentum: float = 0.99, ema_overwrite_frequency: Optional[int] = None,
                 learning_rate_multipliers: Optional[Dict[str, float]] = None) -> None:
        self._schedule = None
        self.iterations = 0
        self._step_rate = 0.0
        self.learning_rate = learning_rate
        self._slots: Dict[int, Tuple[np.ndarray, List[np.ndarray]]] = {}
        owner = type(self).__name__
        self.weight_decay = None if weight_decay is None else _number(weight_decay, "weight_decay", owner, 0.0)
        self.use_ema = utils.boolean(use_ema, "use_ema", owner)
        self.ema_momentum = _number(ema_momentum, "ema_momentum", owner, 0.0, 1.0)
        if ema_overwrite_frequency is not None and not (utils.is_int(ema_overwrite_frequency)
                                                        and ema_overwrite_frequency >= 1):
            raise ValueError(f"Invalid value for argument 'ema_overwrite_frequency' of {owner}: expected an integer "
                             f">= 1 or None. Received: ema_overwrite_frequency={ema_overwrite_frequency!r}.")
        self.ema_overwrite_frequency = None if ema_overwrite_frequency is None else int(ema_overwrite_frequency)
        self.learning_rate_multipliers = _multipliers(learning_rate_multipliers, owner)
        self._averages: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self._paths: Dict[int, str] = {}
        self._exclude_ids: set = set()
        self._exclude_pattern: Optional["re.Pattern[str]"] = None

    # ------------------------------------------------------------------ decay, multipliers, EMA

    def exclude_from_weight_decay(self, var_list: Optional[Sequence[np.ndarray]] = None,
                                  var_names: Optional[Sequence[str]] = None) -> None:
        """Keras 3's: no weight decay for these variables, or for those whose name (``'bias'``,
        ``'beta'``: the weight's own name, as Keras's ``variable.name``) a regex of
        ``var_names`` finds."""
        self._exclude_ids = {id(v) for v in var_list or ()}
        self._exclude_pattern = re.compile("|".join(var_names)) if var_names else None

    def _name_variables(self, variables: Sequence[np.ndarray], paths: Sequence[str]) -> None:
        """The trainer tells the optimizer each variable's path (``'layer/weight'``), for the
        decay exclusions and the rate multipliers."""
        self._paths = {id(v): p for v, p in zip(variables, paths)}

    def _decays(self, variables: Sequence[np.ndarray], rate: float) -> Optional[List[float]]:
        """Per variable ``weight_decay * learning_rate`` (0 when excluded), or None without decay."""
        if not self.weight_decay:
            return None
        out = []
        for v in variables:
            name = self._paths.get(id(v), "").rsplit("/", 1)[-1]
            excluded = id(v) in self._exclude_ids or (
                self._exclude_pattern is not None and self._exclude_pattern.search(name) is not None)
            out.append(0.0 if excluded else self.weight_decay * rate)
        return out

    def _rate_factors(self, variables: Sequence[np.ndarray]) -> Optional[List[float]]:
        """Per variable its learning-rate multiplier, or None when every one is 1."""
        if not self.learning_rate_multipliers:
            return None
        factors = []
        for v in variables:
            path = self._paths.get(id(v), "")
            factors.append(next((f for pattern, f in self.learning_rate_multipliers.items()
                                 if re.search(pattern, path)), 1.0))
        return None if all(f == 1.0 for f in factors) else factors

    def _after_update(self, variables: Sequence[np.ndarray]) -> None:
        """Keras's EMA after the update of step ``iterations`` (already counted)."""
        if not self.use_ema:
            return
        momentum = np.float32(self.ema_momentum if self.iterations > 1 else 0.0)
        for v in variables:
            entry = self._averages.get(id(v))
            if entry is None or entry[0] is not v:
                entry = (v, v.copy())
                self._averages[id(v)] = entry
            else:
                avg = entry[1]
                avg *= momentum
                avg += (np.float32(1.0) - momentum) * v
        if self.ema_overwrite_frequency and self.iterations % self.ema_overwrite_frequency == 0:
            self.finalize_variable_values(variables)

    def finalize_variable_values(self, var_list: Sequence[np.ndarray]) -> None:
        """With ``use_ema``, the variables take their moving averages (``fit`` calls this at
        its end, as Keras does)."""
        if not self.use_ema:
            return
        for v in var_list:
            entry = self._averages.get(id(v))
            if entry is not None and entry[0] is v:
                v[...] = entry[1]

    def native_step_applied(self, variables: Sequence[np.ndarray]) -> None:
        """The native step applied the update :meth:`native_update` prepared."""
        self._after_update(variables)

    def _native_extras(self, variables: Sequence[np.ndarray], hyper: List[float], rate: float) -> Tuple[Any, Any]:
        """(hyper, decay) for the native update: ``hyper[0]`` (the step's rate) per variable when
        multipliers apply, and the per-variable decay (or None)."""
        factors = self._rate_factors(variables)
        if factors is not None:
            hyper = [[hyper[0] * f] + list(hyper[1:]) for f in factors]
        return hyper, self._decays(variables, rate)

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
        rate = self._take_step()
        pairs = [(np.asarray(g, dtype=np.float32), v) for g, v in pairs]
        variables = [v for _, v in pairs]
        decays = self._decays(variables, rate)
        if decays is not None:
            for v, d in zip(variables, decays):
                if d:
                    v -= v * np.float32(d)
        factors = self._rate_factors(variables)
        if factors is None:
            self._update_all(pairs)
        else:  # one pass per distinct multiplier, each at its own rate
            for f in sorted(set(factors)):
                self._step_rate = rate * f
                self._update_all([p for p, pf in zip(pairs, factors) if pf == f])
            self._step_rate = rate
        self._after_update(variables)

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
        ('momentum', 'velocity'), or 'scratch' for work space, then 'average' with ``use_ema``.
        Saved files are checked (and translated to Keras's optimizer variables) with it."""
        return self._update_slot_names() + (("average",) if self.use_ema else ())

    def _update_slot_names(self) -> Tuple[str, ...]:
        """The update rule's own slots (subclasses)."""
        return ()

    #: Slots that are never negative: a file holding a negative one is damaged.
    nonnegative_slots: Tuple[str, ...] = ("velocity",)

    def get_slots(self, variables: Sequence[np.ndarray]) -> List[List[np.ndarray]]:
        """Per variable, the state arrays the update keeps (empty before the first step); with
        ``use_ema`` the moving average last."""
        out = []
        for var in variables:
            entry = self._slots.get(id(var))
            arrays = list(entry[1]) if entry is not None and entry[0] is var else []
            average = self._averages.get(id(var))
            if average is not None and average[0] is var:
                arrays.append(average[1])
            out.append(arrays)
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
        self._averages = {}
        self._native_cache = None
        for var, arrays in zip(variables, slots):
            arrays = [np.array(a, dtype=np.float32) for a in arrays]
            if self.use_ema and arrays and len(arrays) == len(self.slot_names()):
                self._averages[id(var)] = (var, arrays.pop())  # (without it the next step starts one)
            if arrays:
                self._slots[id(var)] = (var, arrays)
        self.iterations = int(iterations)

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self._learning_rate_config(), **self._base_config()}

    def _base_config(self) -> Dict[str, Any]:
        """The base class's arguments that differ from their defaults (Keras's names)."""
        config: Dict[str, Any] = {}
        if self.weight_decay is not None:
            config["weight_decay"] = self.weight_decay
        if self.use_ema:
            config.update(use_ema=True, ema_momentum=self.ema_momentum,
                          ema_overwrite_frequency=self.ema_overwrite_frequency)
        if self.learning_rate_multipliers:
            config["learning_rate_multipliers"] = dict(self.learning_rate_multipliers)
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _multipliers(value: Any, owner: str) -> Dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"Invalid value for argument 'learning_rate_multipliers' of {owner}: expected a dict "
                        f"{{regex: factor}}. Received: learning_rate_multipliers={value!r}.")
    out = {}
    for pattern, factor in value.items():
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"Invalid regex {pattern!r} in learning_rate_multipliers of {owner}: {err}.") from None
        out[pattern] = _number(factor, f"learning_rate_multipliers[{pattern!r}]", owner, 0.0)
    return out


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as in Keras.

    Args:
        learning_rate: step size (default 0.01).
        momentum: in [0, 1]; 0 is plain SGD.
        nesterov: use Nesterov momentum.
        **kwargs: the base class's ``weight_decay``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency``, ``learning_rate_multipliers`` (:class:`Optimizer`).
    """

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
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

    def _update_slot_names(self) -> Tuple[str, ...]:
        return ("momentum",) if self.momentum != 0.0 else ()

    def native_update(self, variables: List[np.ndarray]) -> Optional[tuple]:
        if type(self) is not SGD or self.momentum == 0.0:
            return None  # plain SGD is one NumPy pass per weight; a subclass may change the rule
        rate = self._take_step()
        hyper, decay = self._native_extras(variables, [rate, self.momentum, float(self.nesterov)], rate)
        return ("sgd", hyper, self._native_slots(variables, 1, 1), decay)

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self._learning_rate_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                **self._base_config()}


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
                 epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
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

    def _update_slot_names(self) -> Tuple[str, ...]:
        return ("momentum", "velocity", "scratch")

    def native_update(self, variables: List[np.ndarray]) -> Optional[tuple]:
        if type(self) is not Adam:
            return None  # a subclass may change the rule the native update implements
        rate = self._take_step()
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = rate * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        hyper, decay = self._native_extras(variables, [alpha, b1, b2, self.epsilon], rate)
        return ("adam", hyper, self._native_slots(variables, 3, 2), decay)

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
                "epsilon": self.epsilon, **self._base_config()}


class RMSprop(Optimizer):
    """RMSprop without momentum, as in Keras (``rho=0.9``, ``epsilon=1e-7``).

    Args:
        learning_rate: default 0.001.
        rho: decay of the mean square, in [0, 1).
        epsilon: added to v under the square root.
    """

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = _number(rho, "rho", "RMSprop", 0.0, 1.0, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", "RMSprop", 0.0)

    def _update_slot_names(self) -> Tuple[str, ...]:
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
        return {"learning_rate": self._learning_rate_config(), "rho": self.rho, "epsilon": self.epsilon,
                **self._base_config()}


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
