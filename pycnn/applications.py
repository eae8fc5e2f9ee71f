"""The lecture's models, built: LeNet, VGG-16, the Fashion-MNIST CNNs and the case study.

Each function returns a fresh, uncompiled model with the lecture's layers and arguments.
The command line (pycnn/cli.py) offers every classifier of :data:`CLASSIFIERS` by name.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

from . import image
from . import layers as layers_module
from .functional import Model
from .sequential import Sequential


def lenet(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10) -> Sequential:
    """LeNet exactly as the lecture writes it.

    conv 6@5x5 'same' relu -> max pool 2 -> conv 16@5x5 'valid' relu -> max pool 2 ->
    flatten -> dense 120 relu -> dense 84 relu -> dense ``num_classes`` softmax.
    On CIFAR-10 (32, 32, 3): 83,126 parameters.
    """
    L = layers_module
    return Sequential([
        L.Input(shape=tuple(input_shape)),
        L.Conv2D(6, (5, 5), padding="same", activation="relu"),
        L.MaxPooling2D(pool_size=2),
        L.Conv2D(filters=16, kernel_size=5, activation="relu"),
        L.MaxPooling2D(pool_size=2),
        L.Flatten(),
        L.Dense(120, activation="relu"),
        L.Dense(84, activation="relu"),
        L.Dense(num_classes, activation="softmax"),
    ], name="lenet")


def _conv_bn_relu(L, filters: int, kernel_size: int, padding: str = "valid") -> list:
    """Conv2D without bias (BatchNormalization's beta replaces it), BatchNormalization, relu."""
    return [L.Conv2D(filters, kernel_size, padding=padding, use_bias=False), L.BatchNormalization(),
            L.Activation("relu")]


def lenet_bn(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10) -> Sequential:
    """LeNet with a BatchNormalization after each convolution (conv without bias -> BN ->
    relu): 83,148 trainable + 44 non-trainable parameters on CIFAR-10."""
    L = layers_module
    return Sequential([
        L.Input(shape=tuple(input_shape)),
        *_conv_bn_relu(L, 6, 5, padding="same"),
        L.MaxPooling2D(pool_size=2),
        *_conv_bn_relu(L, 16, 5),
        L.MaxPooling2D(pool_size=2),
        L.Flatten(),
        L.Dense(120, activation="relu"),
        L.Dense(84, activation="relu"),
        L.Dense(num_classes, activation="softmax"),
    ], name="lenet_bn")


def vgg16(input_shape: Sequence[int] = (224, 224, 1), num_classes: int = 1000) -> Sequential:
    """VGG-16 as the lecture writes it (``input_shape=`` on the first convolution).

    Five blocks of 3x3 'same' relu convolutions (64, 64 | 128, 128 | 256 x3 | 512 x3 |
    512 x3), each followed by 2x2 max pooling, then dense 4096 relu, 4096 relu and
    ``num_classes`` softmax. With the defaults: 138,356,392 parameters (about 553 MB of
    float32 weights).
    """
    L = layers_module
    model = Sequential(name="vgg16")
    model.add(L.Convolution2D(64, 3, padding="same", activation="relu", input_shape=tuple(input_shape)))
    model.add(L.Convolution2D(64, 3, padding="same", activation="relu"))
    model.add(L.MaxPooling2D((2, 2), strides=(2, 2)))
    for filters, repeats in ((128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(repeats):
            model.add(L.Convolution2D(filters, 3, padding="same", activation="relu"))
        model.add(L.MaxPooling2D((2, 2), strides=(2, 2)))
    model.add(L.Flatten())
    model.add(L.Dense(4096, activation="relu"))
    model.add(L.Dense(4096, activation="relu"))
    model.add(L.Dense(num_classes, activation="softmax"))
    return model


def fashion_mnist_cnn(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10) -> Sequential:
    """The lecture's first Fashion-MNIST model: four 7x7 'valid' relu convolutions
    (32, 64, 128, 256), flatten, dense softmax. 2,150,410 parameters on (28, 28, 1).
    """
    L = layers_module
    return Sequential([
        L.Input(shape=tuple(input_shape)),
        L.Conv2D(32, (7, 7), activation="relu"),
        L.Conv2D(64, (7, 7), activation="relu"),
        L.Conv2D(128, (7, 7), activation="relu"),
        L.Conv2D(256, (7, 7), activation="relu"),
        L.Flatten(),
        L.Dense(num_classes, activation="softmax"),
    ])


def fashion_mnist_cnn_bn(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10) -> Sequential:
    """The lecture's first Fashion-MNIST model with a BatchNormalization after each of its
    four 7x7 convolutions (conv without bias -> BN -> relu)."""
    L = layers_module
    return Sequential([L.Input(shape=tuple(input_shape))]
                      + [x for f in (32, 64, 128, 256) for x in _conv_bn_relu(L, f, 7)]
                      + [L.Flatten(), L.Dense(num_classes, activation="softmax")], name="fashion_mnist_cnn_bn")


def strided_cnn(input_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10, padding: str = "valid"
                ) -> Sequential:
    """The lecture's strided Fashion-MNIST model: 3x3 relu convolutions 32/64/128/256/512
    with strides 1, 2, 1, 2, 1, flatten, dense softmax. ``padding='same'`` gives the
    lecture's padded variant.
    """
    L = layers_module
    model = Sequential([L.Input(shape=tuple(input_shape))])
    for filters, stride in ((32, 1), (64, 2), (128, 1), (256, 2), (512, 1)):
        model.add(L.Conv2D(filters, (3, 3), strides=stride, padding=padding, activation="relu"))
    model.add(L.Flatten())
    model.add(L.Dense(num_classes, activation="softmax"))
    return model


def fully_convolutional_cnn(input_shape: Sequence[Optional[int]] = (None, None, 1), num_classes: int = 10
                            ) -> Sequential:
    """The lecture's fully convolutional model ("1x1 Convolution, dynamic input sizes").

    3x3 'same' relu convolutions 32/64/128/256 with strides 1, 2, 1, 2, then a 7x7
    'valid' relu convolution with 512 filters and a 1x1 convolution to ``num_classes``
    with softmax. Accepts any input size: (N, 28, 28, 1) -> (N, 1, 1, 10) and
    (N, 64, 64, 1) -> (N, 10, 10, 10).
    """
    L = layers_module
    model = Sequential([L.Input(shape=tuple(input_shape))])
    for filters, stride in ((32, 1), (64, 2), (128, 1), (256, 2)):
        model.add(L.Conv2D(filters, (3, 3), strides=stride, padding="same", activation="relu"))
    model.add(L.Conv2D(512, (7, 7), strides=1, activation="relu"))
    model.add(L.Conv2D(num_classes, (1, 1), strides=1, activation="softmax"))
    return model


# --------------------------------------------------------------------------- the case study

def classic_features_model(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10) -> Model:
    """The lecture's case study, "classic feature extractors": fixed Sobel edges and image
    gradients of the input, concatenated, max-pooled and classified by a dense head.

    Input -> sobel_edges (H, W, C, 2) -> Reshape (H, W, 2C); image_gradients -> (dy, dx);
    Concatenate(axis=3)([dy, dx, edges]) -> MaxPooling2D(2) -> Flatten -> Dense(128, relu)
    -> Dense(num_classes, softmax). The lecture unpacks ``dx, dy = tf.image.image_gradients``,
    which returns (dy, dx), so its "dx" is dy; the order here is the same as the lecture's.
    On (32, 32, 3): 394,634 parameters, all in the dense head.
    """
    L = layers_module
    h, w, c = (int(d) for d in input_shape)
    inp = L.Input(shape=[h, w, c])
    edges = image.sobel_edges(inp)
    edges = L.Reshape((h, w, 2 * c))(edges)
    dx, dy = image.image_gradients(inp)
    x = L.Concatenate(axis=3)([dx, dy, edges])
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(128, activation="relu")(x)
    x = L.Dense(num_classes, activation="softmax")(x)
    return Model(inputs=[inp], outputs=x, name="classic_features")


def four_filter_cnn(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10) -> Sequential:
    """The case study's learned counterpart: Conv2D(4, 3x3, relu) -> MaxPooling2D(2) ->
    Flatten -> Dense(128, relu) -> Dense(num_classes, softmax). 116,730 parameters on
    (32, 32, 3)."""
    L = layers_module
    model = Sequential(name="four_filter_cnn")
    model.add(L.Input(shape=tuple(input_shape)))
    model.add(L.Conv2D(4, (3, 3), activation="relu"))
    model.add(L.MaxPooling2D(2))
    model.add(L.Flatten())
    model.add(L.Dense(128, activation="relu"))
    model.add(L.Dense(num_classes, activation="softmax"))
    return model


#: Classifiers by name, each ``builder(input_shape, num_classes)`` (the CLI's --model
#: choices). fully_convolutional_cnn is left out: its output is a feature map.
def speedrun_cifar10(input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10, width: int = 64) -> Sequential:
    """airbench94's network (Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024),
    uncompiled; ``pycnn.recipes.speedrun`` trains it.

    A 2x2 'valid' conv 3 -> 24 with bias ('whiten': its kernel is meant to be set by
    :func:`pycnn.initializers.patch_whitening_kernel` and frozen) + GELU; three groups of widths
    ``width``, 4 ``width``, 4 ``width`` (64, 256, 256), each conv 3x3 'same' -> max pool 2 -> BN ->
    GELU -> conv 3x3 'same' -> BN -> GELU, convs without bias and identity-initialised
    (:class:`pycnn.initializers.Dirac`), BN without scale (momentum 0.6, epsilon 1e-12, as
    airbench's PyTorch momentum 0.4); max pool 3 -> flatten -> dense ``num_classes`` without
    bias -> logits times 1/9. 1,973,944 parameters (2,304 of them the BN statistics); about
    118 M multiply-adds per 32x32 image. Outputs logits: compile with
    ``from_logits=True``.
    """
    L = layers_module
    from . import initializers

    torch_default = initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")

    def group(index: int, filters: int) -> list:
        def conv(k: int) -> "L.Conv2D":
            return L.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=initializers.Dirac(),
                            name=f"group{index}_conv{k}")

        def norm(k: int) -> "L.BatchNormalization":
            return L.BatchNormalization(momentum=0.6, epsilon=1e-12, scale=False, name=f"group{index}_norm{k}")

        return [conv(1), L.MaxPooling2D(2, name=f"group{index}_pool"), norm(1), L.Activation("gelu"),
                conv(2), norm(2), L.Activation("gelu")]

    whiten_width = 2 * 3 * 2 * 2
    return Sequential([
        L.Input(shape=tuple(input_shape)),
        L.Conv2D(whiten_width, 2, padding="valid", kernel_initializer=torch_default, bias_initializer="zeros",
                 activation="gelu", name="whiten"),
        *group(1, width), *group(2, 4 * width), *group(3, 4 * width),
        L.MaxPooling2D(3, name="pool"),
        L.Flatten(),
        L.Dense(num_classes, use_bias=False, kernel_initializer=torch_default, name="head"),
        L.Rescaling(1.0 / 9.0, name="logit_scale"),
    ], name="speedrun_cifar10")


CLASSIFIERS: Dict[str, Callable] = {
    "lenet": lenet, "lenet_bn": lenet_bn, "fashion_mnist_cnn": fashion_mnist_cnn,
    "fashion_mnist_cnn_bn": fashion_mnist_cnn_bn, "strided_cnn": strided_cnn, "vgg16": vgg16,
    "classic_features": classic_features_model, "four_filter_cnn": four_filter_cnn,
    "speedrun_cifar10": speedrun_cifar10,
}
