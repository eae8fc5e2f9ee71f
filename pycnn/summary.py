"""``model.summary()``: a Keras-style table of layers, output shapes and parameter counts.

For a graph model (``pycnn.Model``) a fourth column says, as Keras does, which tensors
each layer reads: ``layer_name[call][0]``, one line per tensor.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import utils


def print_summary(model: Any, print_fn: Optional[Callable[[str], Any]] = None,
                  line_length: Optional[int] = None) -> None:
    """Print ``model``'s table, one line at a time through ``print_fn`` (default ``print``).

    Args:
        line_length: minimum table width (default 65, or 98 with the "Connected to"
            column); columns widen to fit long names.
    """
    model._require_built("its summary")
    graph_model = not getattr(model, "_chain", False)
    rows = _graph_rows(model) if graph_model else _chain_rows(model)
    header: Tuple[str, ...] = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if graph_model else ())
    width = line_length or (98 if graph_model else 65)
    fractions = (0.33, 0.55, 0.67, 1.0) if graph_model else (0.45, 0.85, 1.0)
    minimum, start = [], 0
    for f in fractions:
        end = int(width * f)
        minimum.append(end - start)
        start = end
    minimum[0] -= 1
    pad = (2, 2, 1, 2)
    widths = [max([minimum[c]] + [len(r[c]) + pad[c] for r in rows]) for c in range(len(header))]
    total_width = 1 + sum(widths)

    def fmt(cells: Sequence[str]) -> str:
        return (" " + "".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()

    layers = model.layers
    total = model.count_params()
    trainable = sum(int(w.size) for layer in layers for w in layer.trainable_weights)
    lines = [f'Model: "{model.name}"', "_" * total_width, fmt(header), "=" * total_width]
    lines += [fmt(row) for row in rows]
    lines += ["=" * total_width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * total_width]
    emit = print if print_fn is None else print_fn
    for line in lines:
        emit(line)


def _chain_rows(model: Any) -> List[Tuple[str, ...]]:
    rows = []
    shape = model.input_shape
    for layer in model.layers:
        shape = layer.compute_output_shape(shape)
        rows.append((f"{layer.name} ({layer.class_name})", utils.shape_str(shape), str(layer.count_params())))
    return rows


def _graph_rows(model: Any) -> List[Tuple[str, ...]]:
    graph = model._graph()
    shapes = graph.value_shapes(graph.input_shapes)
    names = [f"{t.node.layer.name}[0][0]" for t in model.inputs]
    first_output: Dict[int, int] = {id(t.node.layer): k for k, t in enumerate(model.inputs)}
    inbound: Dict[int, List[str]] = {}
    calls: Dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        value = graph.num_inputs + i
        call = calls.get(id(node.layer), 0)
        calls[id(node.layer)] = call + 1
        first_output.setdefault(id(node.layer), value)
        inbound.setdefault(id(node.layer), []).extend(names[j] for j in node.inputs)
        names.append(f"{node.layer.name}[{call}][0]")
    rows: List[Tuple[str, ...]] = []
    for layer in model.layers:
        value = first_output.get(id(layer))
        shape = utils.shape_str(shapes[value]) if value is not None else "?"
        connected = inbound.get(id(layer), []) or ["-"]
        rows.append((f"{layer.name} ({layer.class_name})", shape, str(layer.count_params()), connected[0]))
        rows.extend(("", "", "", c) for c in connected[1:])
    return rows
