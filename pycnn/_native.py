"""Whole-network native execution for Sequential models (see csrc/network.h).

A training step layer by layer crosses into C++ and wakes the OpenMP threads once per
layer and direction; ``_core.network_train_step`` runs forward, the fused softmax
cross-entropy and backward of the whole model in one call, with each thread taking a share
of the batch. This module translates a model's layers into that call's layer tuples, or
returns None when some layer has no native twin (the model then runs layer by layer, with
the same results up to float32 summation order).

Set ``PYCNN_NATIVE_STEP=0`` to always run layer by layer.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence

import numpy as np

from . import activations
from .layers.conv import Conv2D
from .layers.core import Activation, Dense, Dropout, Flatten, InputLayer
from .layers.pooling import AveragePooling2D, MaxPooling2D


def enabled() -> bool:
    return os.environ.get("PYCNN_NATIVE_STEP", "1") != "0"


def _gradient_buffers(layer: Any) -> List[np.ndarray]:
    """Persistent float32 arrays the native step writes the layer's gradients into."""
    buffers = getattr(layer, "_native_grads", None)
    if buffers is None or any(b.shape != p.shape for b, p in zip(buffers, layer.weights)):
        buffers = [np.empty_like(p) for p in layer.weights]
        layer._native_grads = buffers
    return buffers


def network_spec(layers: Sequence[Any], train: bool, training: bool, logits: bool) -> Optional[list]:
    """Layer tuples for ``_core.network_*``, or None when a layer has no native twin.

    Args:
        layers: the model's layers, in order.
        train: include gradient buffers (for ``network_train_step``).
        training: forward in training mode (Dropout with rate > 0 then has no native twin).
        logits: the model's final softmax is left out (the caller applies it, or fuses it
            into the loss).
    """
    spec: list = []
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if isinstance(layer, InputLayer):
            continue
        inputs = (len(spec),)  # a chain: node k reads value k (the input, then node k-1's output)
        if isinstance(layer, (Conv2D, Dense)):
            act = layer.activation
            if act == "softmax" and i == last and logits:
                act = "linear"
            if act not in activations.FUSED:
                return None
            grads = None
            if train and layer.trainable:
                buffers = _gradient_buffers(layer)
                grads = tuple(buffers) + (None,) * (2 - len(buffers))
            params = (layer.kernel, layer.bias)
            if isinstance(layer, Conv2D):
                spec.append(("conv2d", inputs, params, grads, tuple(layer.strides), (layer.padding, act)))
            else:
                spec.append(("dense", inputs, params, grads, (), (act,)))
        elif isinstance(layer, MaxPooling2D):
            spec.append(("maxpool2d", inputs, (), None, tuple(layer.pool_size) + tuple(layer.strides), (layer.padding,)))
        elif isinstance(layer, AveragePooling2D):
            spec.append(("avgpool2d", inputs, (), None, tuple(layer.pool_size) + tuple(layer.strides), (layer.padding,)))
        elif isinstance(layer, Flatten):
            spec.append(("flatten", inputs, (), None, (), ()))
        elif isinstance(layer, Activation):
            act = layer.activation
            if act == "softmax" and i == last and logits:
                continue
            if act not in activations.FUSED:
                return None
            spec.append(("activation", inputs, (), None, (), (act,)))
        elif isinstance(layer, Dropout):
            if training and layer.rate > 0.0:
                return None
        else:
            return None
    return spec or None


def publish_gradients(layers: Sequence[Any]) -> None:
    """After a native step, make ``get_gradients()`` return the buffers it wrote."""
    for layer in layers:
        if isinstance(layer, (Conv2D, Dense)) and layer.trainable:
            layer._grads = list(_gradient_buffers(layer))
