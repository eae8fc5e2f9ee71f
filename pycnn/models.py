"""Models, as ``keras.models``: :class:`Sequential`, :class:`Model`, :func:`load_model` and
the lecture's built models.

Where things live: graph models in pycnn/functional.py, the chain in pycnn/sequential.py,
the graph in pycnn/graph.py, its compiled execution in pycnn/executor.py, training in
pycnn/trainer.py and pycnn/step.py, files in pycnn/saving.py (its docstring documents the
file layout), the summary in pycnn/summary.py, and the built models in pycnn/applications.py.
"""
from __future__ import annotations

from .applications import (CLASSIFIERS, classic_features_model, fashion_mnist_cnn, fashion_mnist_cnn_bn,
                           four_filter_cnn, fully_convolutional_cnn, lenet, lenet_bn, speedrun_cifar10, strided_cnn, vgg16)
from .functional import Model
from .saving import load_model
from .sequential import Sequential

__all__ = ["Sequential", "Model", "load_model", "lenet", "lenet_bn", "vgg16", "fashion_mnist_cnn",
           "fashion_mnist_cnn_bn", "strided_cnn", "speedrun_cifar10",
           "fully_convolutional_cnn", "classic_features_model", "four_filter_cnn", "CLASSIFIERS"]
