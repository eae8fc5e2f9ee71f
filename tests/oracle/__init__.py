"""The NumPy oracle of pycnn's tests: plain float64 implementations of every registered op,
forward and backward, plus the loss and update components, written to be obviously right
rather than fast (explicit loops over kernel taps and pooling windows, one matmul per tap)
and independent of pycnn (its own window arithmetic, gradients from the pre-activation
where the C++ kernels use the output). Imported by the tests (``import oracle``) and the
benchmarks; checked on its own by tests/test_oracle.py (finite differences, direct loops,
PyTorch / TensorFlow when installed).

Modules, by op family:

    window         output sizes and 'same' padding (TensorFlow's rule), dilation included
    activation     activations by name, leaky_relu
    softmax        softmax, the sparse softmax cross-entropy loss
    conv           conv2d (strides, dilation, groups), depthwise_conv2d, separable_conv2d
    dense          dense over the last axis
    pool           max / average pooling (windows listed explicitly), global pooling
    normalization  batch normalization (training and inference), the moving averages
    image          sobel_edges, image_gradient (tf.image)
    merge          concatenate, add, multiply
    padding        zero_padding2d, cropping2d
    reshape        flatten, reshape, identity
    preprocessing  rescaling, flip, crop, translate
    quantized      int8 inference, exact (not float64): quantize, dequantize, per-channel
                   weights, conv2d_int8, dense_int8, the uint8 pooling ops
    optimizer      adam and sgd updates
    numeric        finite differences, rel_error, random_indices, assert_close
    ops            ``forward(kind, ...)`` / ``backward(kind, ...)`` for every op kind, in the
                   terms of pycnn.ops.OpCall, and ``OPS`` (inputs, parameters, defaults)

Layout as Keras: activations (N, H, W, C), conv kernels (KH, KW, C / groups, F), dense
kernels (in, out). Every function returns float64.
"""
from .activation import (ACTIVATIONS, ELEMENTWISE, LEAKY_RELU_ACTIVATION_SLOPE, LEAKY_RELU_OP_SLOPE, activate,
                         activation_backward, activation_grad, leaky_relu_backward, leaky_relu_forward)
from .conv import (conv2d_backward, conv2d_forward, conv2d_preactivation, depthwise_conv2d_backward,
                   depthwise_conv2d_forward, depthwise_conv2d_preactivation, separable_conv2d_backward,
                   separable_conv2d_forward)
from .dense import dense_backward, dense_forward, dense_preactivation
from .image import (SOBEL_DX, SOBEL_DY, image_gradient_backward, image_gradient_forward, image_gradients,
                    sobel_edges_backward, sobel_edges_forward)
from .merge import (add_backward, add_forward, concatenate_backward, concatenate_forward, multiply_backward,
                    multiply_forward)
from .normalization import (batch_moments, batchnorm_backward, batchnorm_backward_infer, batchnorm_backward_train,
                            batchnorm_forward, batchnorm_forward_infer, batchnorm_forward_train, moving_average)
from .numeric import _f64, assert_close, fd_check, linear_map_matrix, numerical_gradient, random_indices, rel_error
from .ops import OPS, REQUIRED, VARIADIC, backward, forward, full_attrs
from .optimizer import adam_update, sgd_update
from .padding import cropping2d_backward, cropping2d_forward, zero_padding2d_backward, zero_padding2d_forward
from .pool import (avgpool2d_backward, avgpool2d_forward, global_avgpool2d_backward, global_avgpool2d_forward,
                   global_maxpool2d_backward, global_maxpool2d_forward, maxpool2d_argmax, maxpool2d_backward,
                   maxpool2d_forward, windows)
from .preprocessing import crop, extended_pixel, flip, rescaling_backward, rescaling_forward, translate
from .quantized import (avgpool2d_int8_forward, conv2d_int8_forward, dense_int8_forward, dequantize,
                        global_avgpool2d_int8_forward, global_maxpool2d_int8_forward, int8_attrs,
                        maxpool2d_int8_forward, quantize, quantize_weights, requantize)
from .reshape import flatten_forward, identity_forward, reshape_backward, reshape_forward
from .softmax import (softmax_backward, softmax_crossentropy_backward, softmax_crossentropy_forward, softmax_forward,
                      sparse_softmax_crossentropy)
from .window import _pair, geometry, output_size, same_padding
