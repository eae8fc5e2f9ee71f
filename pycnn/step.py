"""One training, test or inference step of a model, over the executor (pycnn/executor.py).

The trainer (pycnn/trainer.py) loops; this module decides, for each batch, what the step is:

* the loss: a sparse categorical cross-entropy on a softmax output (or on logits) is fused
  into the native call as the registered loss component ``sparse_softmax_crossentropy``;
  other losses run in NumPy (pycnn/losses.py) between the executor's forward and backward;
* the weight penalties (regularizers): their value joins the loss, their gradient the
  weights' gradients before the update;
* the update: an optimizer that names a registered update component (Adam, SGD) runs inside
  the native call, thread by thread, unless penalties or an MPI reduction must come first;
  otherwise :meth:`pycnn.optimizers.Optimizer.apply_gradients`;
* with several MPI processes (pycnn/distributed.py) a gradient reducer sums every rank's
  gradients (and statistics, loss and hits) between backward and the update.

Nothing here writes gradients onto layers: the executor returns them aligned with the
model's trainable weights, and they go straight to the reducer and the optimizer.

With ``compile(device="cuda")`` (or ``"cuda-emulated"``) a :class:`DeviceRunner` runs the
training step on the CUDA executor (csrc/cuda/executor.h): the weights and the optimizer's
slots stay on the device between steps; :meth:`DeviceRunner.sync` copies them back into the
host arrays (the trainer calls it at every epoch end, at the end of fit and after
train_on_batch) and :meth:`DeviceRunner.invalidate` marks the host arrays as the newer copy
(uploaded before the next device step). A step the device cannot run (a loss other than the
fused cross-entropy, Python layers, regularizers, EMA, an optimizer without a registered
update) runs on the CPU after a sync, with one warning saying why. Inference (evaluate,
predict) runs on the device too when its graph is one native network (:meth:`DeviceRunner.predict`). With MPI the device step
sends its gradients (and the layers' states) through the host reducer and updates on the
device.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import distributed, executor, graph as graph_module
from . import losses as losses_module
from . import tta as tta_module
from .layers.base import structure_version


class Hits(NamedTuple):
    """What a fused step reports for metrics that are all plain accuracy: the hit count."""
    correct: int
    count: int


class _Plan(NamedTuple):
    """What a training step on batches of one shape does, decided once per model structure."""
    trained: List[np.ndarray]            # the model's trainable weights, the gradients' order
    regularized: List[Tuple[np.ndarray, Any]]  # (weight, regularizer)
    native_loss: bool                    # the registered fused loss inside the native call
    fused: bool                          # the loss is computed on the logits of a final softmax
    compiled: Optional[executor.CompiledGraph]  # None: layer by layer (PYCNN_NATIVE_STEP=0)


class DeviceRunner:
    """The CUDA executor behind one model's training steps (``device`` 'cuda' or 'cuda-emulated')."""

    def __init__(self, device: str) -> None:
        from . import cuda
        self.device = device
        self.network_class = cuda.network_class(device)  # raises when CUDA is not usable
        self._networks: Dict[int, Any] = {}   # id(CompiledGraph) -> (compiled, DeviceNetwork)
        self._active: Optional[Tuple[Any, Any]] = None
        self._device_newer = False            # the device holds weights the host arrays lack
        self._host_newer = True               # upload before the next device step
        self._slots: Optional[Tuple[str, List[List[np.ndarray]]]] = None  # (update name, host arrays)
        self._warned = False
        self._plain_sgd: Dict[int, List[np.ndarray]] = {}
        self._inference: Dict[int, Tuple[Any, Any]] = {}  # id(CompiledGraph) -> (compiled, network or None)

    def sync(self) -> None:
        """Device -> host: the weights, the state (moving statistics) and the optimizer's slots."""
        if self._device_newer and self._active is not None:
            network = self._active[1]
            network.download_weights()
            if self._slots is not None:
                network.download_slots(*self._slots)
        self._device_newer = False

    def invalidate(self) -> None:
        """The host arrays may have changed (set_weights, load, a callback): upload before the next step."""
        self.sync()
        self._host_newer = True

    def refusal(self, step: "Step", plan: _Plan) -> Optional[str]:
        """Why the device cannot run this step (None: it can)."""
        compiled = plan.compiled
        if compiled is None:
            return "the native step is off (PYCNN_NATIVE_STEP=0)"
        if not plan.native_loss:
            return ("the loss is not a sparse categorical cross-entropy on a softmax (or logits) output, the one "
                    "loss with CUDA kernels")
        if len(compiled.steps) != 1 or not compiled.fusable:
            return "the model has layers without native ops (Python layers, or Dropout / augmentation in training)"
        if plan.regularized:
            return "weight regularizers add their gradients on the host"
        if getattr(step.model.optimizer, "use_ema", False):
            return "the optimizer's EMA (use_ema) averages the weights on the host"
        return None

    def _network(self, compiled: Any) -> Any:
        entry = self._networks.get(id(compiled))
        if entry is None or entry[0] is not compiled:
            shapes, nodes, outputs = compiled.steps[-1].args
            entry = (compiled, self.network_class(shapes, nodes, outputs))  # uploads the weights
            if len(self._networks) >= 8:
                self._networks.clear()
            self._networks[id(compiled)] = entry
        if self._active is None or self._active[1] is not entry[1]:
            self.sync()  # the previous network's weights to the host first
            self._active = entry
            self._host_newer = True
        return entry[1]

    def predict(self, compiled: Any, xs: Sequence[np.ndarray]) -> Optional[List[np.ndarray]]:
        """An inference graph's outputs computed on the device (its parameters uploaded from the
        host arrays first, as each call may follow new weights), or None when it is not one native
        network the device runs (the caller then predicts on the CPU)."""
        steps = compiled.steps
        if len(steps) != 1 or not isinstance(steps[0], executor._Segment):
            return None
        entry = self._inference.get(id(compiled))
        if entry is None or entry[0] is not compiled:
            try:
                network = self.network_class(*steps[0].args)
            except ValueError:  # an op without CUDA kernels: this graph predicts on the CPU
                network = None
            if len(self._inference) >= 8:
                self._inference.clear()
            entry = self._inference[id(compiled)] = (compiled, network)
        network = entry[1]
        if network is None:
            return None
        self.sync()  # the training network's newer weights reach the host arrays first
        compiled.refresh()  # arrays derived from the weights (folded batch normalization)
        network.upload_weights()
        values: Dict[int, np.ndarray] = dict(enumerate(xs))
        values.update(zip(steps[0].outputs, network.predict([values[v] for v in steps[0].inputs])))
        return [values[o] for o in compiled.graph.outputs]

    def _update(self, optimizer: Any, trained: List[np.ndarray]) -> Optional[tuple]:
        """(name, hyper, slots, decay) for the device: the optimizer's native update, or plain SGD
        (which has none on the CPU, being one NumPy pass) as the 'sgd' update with momentum 0."""
        update = optimizer.native_update(trained)
        if update is not None:
            return update
        from .optimizers import SGD
        if type(optimizer) is SGD and optimizer.momentum == 0.0:
            rate = optimizer._take_step()
            hyper, decay = optimizer._native_extras(trained, [rate, 0.0, 0.0], rate)
            slots = self._plain_sgd.get(id(optimizer))
            if slots is None or len(slots) != len(trained) or any(s[0].shape != w.shape
                                                                  for s, w in zip(slots, trained)):
                slots = [[np.zeros(w.shape, np.float32)] for w in trained]  # unused by momentum 0
                self._plain_sgd = {id(optimizer): slots}
            return ("sgd", hyper, slots, decay)
        return None

    def train(self, step: "Step", plan: _Plan, xs: List[np.ndarray], yb: np.ndarray,
              sample_weight: Optional[np.ndarray], reduce: bool, fraction: float
              ) -> Optional[Tuple[float, Any, Optional[float]]]:
        """One step on the device -> (loss, outputs or None, hits); None when the device cannot
        run it (the caller then runs the CPU step; sync() has been called). With ``reduce``
        (MPI) the gradients come to the host for the reducer and go back for the update;
        ``fraction``: this rank's share of the global batch."""
        model = step.model
        why = self.refusal(step, plan)
        update = None
        if why is None:
            update = self._update(model.optimizer, plan.trained)
            if update is None:
                why = f"the optimizer {type(model.optimizer).__name__} has no update with CUDA kernels (Adam and SGD do)"
        if why is not None:
            if not self._warned:
                self._warned = True
                warnings.warn(f"compile(device={self.device!r}): model '{model.name}' trains on the CPU because "
                              f"{why}. The weights are copied between the device and the host around those steps.",
                              UserWarning, stacklevel=4)
            self.sync()
            self._host_newer = True
            return None
        compiled = plan.compiled
        network = self._network(compiled)
        name, hyper, slots = update[:3]
        decay = update[3] if len(update) > 3 else None
        pick = compiled.steps[-1].weights  # the device network's weights, as trained indices
        per_weight = bool(hyper) and isinstance(hyper[0], (list, tuple))
        slots = [slots[g] for g in pick]
        if self._host_newer or self._slots is None or self._slots[0] != name or \
                any(a is not b for x, y in zip(self._slots[1], slots) for a, b in zip(x, y)):
            network.upload_weights()
            network.upload_slots(name, slots)
            self._slots = (name, slots)
            self._host_newer = False
        spec = (name, [hyper[g] for g in pick] if per_weight else hyper,
                None if decay is None else [decay[g] for g in pick])
        metrics = model._metrics
        out = None
        if metrics and not metrics.counts_only:
            out = np.empty((xs[0].shape[0],) + tuple(compiled.value_shapes[compiled.graph.outputs[0]][1:]),
                           np.float32)
        if reduce:
            loss, hits = self._reduced_step(step, plan, network, xs, yb, sample_weight, out, spec, fraction)
        else:
            loss, hits = network.train_step(list(xs), yb.reshape(-1), step.loss.native_loss, sample_weight, out,
                                            spec)
        self._device_newer = True
        if math.isfinite(loss):
            model.optimizer.native_step_applied(plan.trained)
        else:
            model.optimizer.native_step_skipped()
        return loss, out, hits


    def _reduced_step(self, step: "Step", plan: _Plan, network: Any, xs: List[np.ndarray], yb: np.ndarray,
                      sample_weight: Optional[np.ndarray], out: Optional[np.ndarray], spec: tuple,
                      fraction: float) -> Tuple[float, float]:
        """The MPI step: backward on the device, every rank's gradients and states summed on the
        host (the reducer), the update on the device (as the CPU path: commit, reduce, update)."""
        compiled = plan.compiled
        pick = compiled.steps[-1].weights
        seg_grads = [np.zeros_like(plan.trained[g]) for g in pick]
        if xs[0].shape[0] > 0:
            loss, hits = network.train_step(list(xs), yb.reshape(-1), step.loss.native_loss, sample_weight, out)
            network.download_gradients(seg_grads)
        else:  # an empty share of the last batch: nothing to add but zeros
            loss, hits = 0.0, 0
        network.download_weights()  # the states (moving statistics) the reducer averages
        grads: List[Any] = [np.zeros_like(w) for w in plan.trained]
        for i, g in enumerate(pick):
            grads[g] = seg_grads[i]
        loss, hits = step._reduce(plan.trained, grads, loss, hits, fraction)
        network.upload_weights()  # the reduced states
        if math.isfinite(loss):
            network.apply_gradients([grads[g] for g in pick], spec)
        return loss, hits


class Step:
    """The steps of one compiled model (``model.compile`` makes one)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.reducer: Optional[distributed.GradientExchange] = None
        self._plans: Dict[Any, _Plan] = {}
        self.device: Optional[DeviceRunner] = None  # compile(device='cuda' / 'cuda-emulated')

    def device_sync(self) -> None:
        """The device's weights and slots -> the host arrays (a no-op on the CPU)."""
        if self.device is not None:
            self.device.sync()

    def device_invalidate(self) -> None:
        """The host arrays are the newer copy: uploaded before the next device step."""
        if self.device is not None:
            self.device.invalidate()

    # ------------------------------------------------------------------ what the model allows

    @property
    def loss(self) -> Any:
        return self.model.loss

    def _graph(self) -> graph_module.Graph:
        return self.model._graph().expanded()

    def softmax_output(self) -> bool:
        layer = self._graph().output_layer(0)
        return layer is not None and layer.output_activation == "softmax"

    def _output_read_once(self) -> bool:
        g = self._graph()
        return g.consumers()[g.outputs[0]] == 0 and g.producer(g.outputs[0]) is not None

    def fused(self) -> bool:
        """Softmax last layer + cross-entropy on probabilities: compute on logits instead."""
        return (isinstance(self.loss, (losses_module.SparseCategoricalCrossentropy,
                                       losses_module.CategoricalCrossentropy))
                and not self.loss.from_logits and self.softmax_output() and self._output_read_once())

    def _native_loss(self, yb: np.ndarray, xs: Sequence[np.ndarray]) -> bool:
        """The loss can be the native call's: sparse labels, one (N, classes) output, logits."""
        if not (executor.enabled() and isinstance(self.loss, losses_module.SparseCategoricalCrossentropy)):
            return False
        g = self._graph()
        if len(g.outputs) != 1 or not (self.loss.from_logits or self.fused()):
            return False
        out = self.model._output_shape_for([(None,) + a.shape[1:] for a in xs])
        return len(out) == 2 and yb.ndim == 2 and yb.shape[1] == 1

    def _trained(self) -> List[np.ndarray]:
        return self.model.trainable_weights

    def _plan(self, xs: Sequence[np.ndarray], yb: np.ndarray) -> _Plan:
        """The step for batches like ``xs`` and ``yb`` (kept until the model's structure, the
        loss or the native switch changes)."""
        key = (structure_version(), tuple(a.shape[1:] for a in xs), yb.shape[1:], id(self.loss), executor.enabled())
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        trained = self._trained()
        leaves = self.model._leaf_layers()
        paths = {id(w): f"{layer.name}/{name}" for layer in leaves for name, w in zip(layer.weight_names, layer.weights)}
        self.model.optimizer._name_variables(trained, [paths.get(id(w), "") for w in trained])
        regularized = [(w, r) for layer in leaves for w, r in layer.regularized_weights()]
        native_loss = self._native_loss(yb, xs)
        fused = True if native_loss else self.fused()
        compiled = self._compiled(xs, True, fused, trained) if executor.enabled() else None
        if len(self._plans) >= 16:
            self._plans.clear()
        plan = self._plans[key] = _Plan(trained, regularized, native_loss, fused, compiled)
        return plan

    def _compiled(self, xs: Sequence[np.ndarray], training: bool, logits: bool, trained: Sequence[np.ndarray]
                  ) -> executor.CompiledGraph:
        return executor.compiled(self.model._graph(), [a.shape for a in xs], training, logits, trained)

    # ------------------------------------------------------------------ training

    def train(self, xs: List[np.ndarray], yb: np.ndarray, sample_weight: Optional[np.ndarray],
              global_count: Optional[int] = None) -> Tuple[float, Any, bool]:
        """One update. Returns the loss (penalties included), the output the metrics need
        (None without metrics; :class:`Hits` for plain accuracy) and whether that output is
        logits. ``global_count``: with MPI, the global batch this rank has a share of."""
        model = self.model
        metrics = model._metrics
        optimizer = model.optimizer
        plan = self._plan(xs, yb)
        trained, regularized, compiled = plan.trained, plan.regularized, plan.compiled
        penalty = float(sum(r.penalty(w) for w, r in regularized)) if regularized else 0.0  # the weights the loss sees
        reduce = self.reducer is not None and distributed.active()
        n = xs[0].shape[0]
        is_logits = True
        out: Any = None
        hits: Optional[int] = None
        ran = None
        if self.device is not None and (n > 0 or reduce):
            ran = self.device.train(self, plan, xs, yb, sample_weight, reduce, n / (global_count or n or 1))
        if ran is not None:
            loss, out, hits = ran
            if metrics and out is None:
                out = Hits(int(round(hits)), global_count or n)
            return loss + penalty, (out if metrics else None), True
        if n == 0:  # an MPI rank whose share of the last batch is empty
            loss, grads, applied = 0.0, [None] * len(trained), False
        elif plan.native_loss and compiled is not None:
            if compiled.fusable:
                want = bool(metrics) and not metrics.counts_only
                update = None if (regularized or reduce) else optimizer.native_update(trained)
                result = compiled.fused_step(xs, yb.reshape(-1), self.loss.native_loss, sample_weight,
                                             want, update)
                if update is not None:
                    if result.applied:
                        optimizer.native_step_applied(trained)
                    else:
                        optimizer.native_step_skipped()
                loss, grads, applied, hits, out = result.loss, result.gradients, result.applied, result.hits, \
                    result.outputs
            else:
                loss, out, grads = self._general(compiled, xs, yb, sample_weight, fused=True)
                applied = False
        else:
            fused = plan.fused
            if compiled is None:
                loss, out, grads = self._eager(xs, yb, sample_weight, fused, trained)
            else:
                loss, out, grads = self._general(compiled, xs, yb, sample_weight, fused)
            is_logits, applied = fused, False
        if reduce:
            loss, hits = self._reduce(trained, grads, loss, hits, n / (global_count or n))
        if not applied and math.isfinite(loss):
            pairs = []
            penalties = {id(w): r for w, r in regularized} if regularized else {}
            for w, g in zip(trained, grads):
                r = penalties.get(id(w))
                if r is not None and g is not None:
                    g = g + r.gradient(w)
                pairs.append((g, w))
            optimizer.apply_gradients(pairs)
        if metrics and out is None and hits is not None:
            out = Hits(int(round(hits)), global_count or n)
        return loss + penalty, (out if metrics else None), is_logits

    def _general(self, compiled: executor.CompiledGraph, xs: List[np.ndarray], yb: np.ndarray,
                 sample_weight: Optional[np.ndarray], fused: bool) -> Tuple[float, np.ndarray, List[Any]]:
        """Forward through the segments and Python layers, the loss in NumPy, backward."""
        outs, state = compiled.forward(xs)
        loss, dout = self._loss_and_grad(yb, outs[0], fused, sample_weight)
        grads = compiled.backward(state, [dout] + [None] * (len(outs) - 1))
        if math.isfinite(loss):
            compiled.commit(state)
        return loss, outs[0], grads

    def _eager(self, xs: List[np.ndarray], yb: np.ndarray, sample_weight: Optional[np.ndarray], fused: bool,
               trained: Sequence[np.ndarray]) -> Tuple[float, np.ndarray, List[Any]]:
        """Layer by layer (PYCNN_NATIVE_STEP=0): the reference the compiled step matches."""
        g = self.model._graph()
        outs, trace = graph_module.run_forward(g, xs, training=True, logits=fused)
        loss, dout = self._loss_and_grad(yb, outs[0], fused, sample_weight)
        per_weight = graph_module.run_backward(g, trace, dout)
        return loss, outs[0], [per_weight.get(id(w), (None, None))[1] for w in trained]

    def _loss_and_grad(self, y: np.ndarray, out: np.ndarray, fused: bool, sample_weight: Optional[np.ndarray]
                       ) -> Tuple[float, np.ndarray]:
        """The batch loss and its gradient w.r.t. ``out`` (the logits when ``fused``). With
        sample weights w: ``mean(w * per-sample loss)`` (Keras's sum over batch size)."""
        loss = self.loss
        if sample_weight is None:
            if fused:
                return loss.logits_value_and_gradient(y, out)
            return float(loss(y, out)), loss.gradient(y, out)
        value = float(np.mean(loss.sample_losses(y, out, logits=fused) * sample_weight))
        grad = loss.logits_value_and_gradient(y, out)[1] if fused else loss.gradient(y, out)
        return value, grad * sample_weight.reshape((-1,) + (1,) * (grad.ndim - 1))

    def _reduce(self, trained: List[np.ndarray], grads: List[Any], loss: float, hits: Optional[int],
                fraction: float) -> Tuple[float, Optional[float]]:
        """The MPI reducer hook: every rank's gradients, statistics, loss and hits summed."""
        for i, (w, g) in enumerate(zip(trained, grads)):
            if g is None:
                grads[i] = np.zeros_like(w)
        states = [w for layer in self.model._leaf_layers() for w in layer.weights
                  if not any(w is t for t in layer.trainable_weights) and layer.trainable]
        total, total_hits = self.reducer.reduce(grads, states, float(loss), float(hits or 0), fraction)
        return total, (total_hits if hits is not None else None)

    # ------------------------------------------------------------------ test and inference

    def test(self, xs: List[np.ndarray], yb: np.ndarray, sample_weight: Optional[np.ndarray] = None,
             tta: Optional[str] = None) -> Tuple[float, np.ndarray, bool]:
        """Loss and output of one batch in inference mode; ``tta``: a pycnn.tta level."""
        fused = self.fused()
        if tta is None:
            out = self.infer(xs, logits=fused)[0]
        else:  # the averaged outputs; after a softmax their logs are logits of the same probabilities
            out = self.infer(xs, tta=tta)[0]
            if fused:
                out = np.log(np.maximum(out, np.float32(np.finfo(np.float32).tiny)))
        loss, _ = self._loss_and_grad(yb, out, fused, sample_weight)
        regularized = [(w, r) for layer in self.model._leaf_layers() for w, r in layer.regularized_weights()]
        if regularized:  # Keras's test loss includes the penalties too
            loss += float(sum(r.penalty(w) for w, r in regularized))
        return loss, out, fused

    def infer(self, xs: List[np.ndarray], logits: bool = False, tta: Optional[str] = None) -> List[np.ndarray]:
        if tta is not None:
            return tta_module.average(lambda views: infer(self.model, views, False), xs, tta)
        return infer(self.model, xs, logits)


def infer(model: Any, xs: List[np.ndarray], logits: bool = False) -> List[np.ndarray]:
    """A model's outputs for one batch in inference mode (output 0 as logits when asked and
    its layer ends in a softmax)."""
    g = model._graph()
    if not executor.enabled():
        outs, _ = graph_module.run_forward(g, xs, training=False, logits=logits, keep_trace=False)
        return outs
    compiled = executor.compiled(g, [a.shape for a in xs], False, logits, [])
    runner = getattr(getattr(model, "_step", None), "device", None)
    if runner is not None:  # compile(device=...): on the device when the graph is one native network
        outs = runner.predict(compiled, xs)
        if outs is not None:
            return outs
    return compiled.predict(xs)
