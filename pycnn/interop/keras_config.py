"""Keras model configs to pycnn's, and back: architectures (Sequential, functional, nested)
and training setups (optimizer, loss, metrics).

Reading translates Keras 3's ``config.json`` (and Keras 2's ``model_config``, as legacy
``.h5`` files hold it) into the config :meth:`pycnn.Model.from_config` takes, layer by layer
through :data:`LAYERS`, Keras's vocabulary and what pycnn does with each argument. An
argument that would change what the model computes or how it trains and that pycnn cannot
honour (a constraint, an activity regularizer, ``data_format='channels_first'``, an
activation pycnn lacks, a float16 dtype policy...) is a ``ValueError`` naming the layer, its
class and the argument; an unknown layer class (a Lambda, a custom layer) likewise. Nothing
is imported or called by name: a config naming ``os.system`` is just an unknown class.
Initializers only matter for fresh weights (the file's replace them): one pycnn lacks becomes
pycnn's default with a warning.

Writing produces the ``config.json`` Keras 3's ``keras.models.load_model`` reads: Keras 3
class names, arguments and ``inbound_nodes``. Layers Keras has no equivalent for
(SobelEdges, ImageGradient, GELU(approximate=True), RandomCrop: Keras 3's is the identity at
inference, pycnn's takes the centre window) are refused by name.

This module only translates JSON-able data; the files are pycnn/interop/keras_files.py.
"""
from __future__ import annotations

import heapq
import re
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import activations as activations_module
from .. import layers as layers_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from .. import schedules as schedules_module
from . import untrusted

#: Keras class name -> (pycnn class name, the Keras arguments pycnn takes as they are).
#: Every other argument must be absent or hold the value in :data:`_NEUTRAL` (or None for
#: constraints and the like); anything else is refused by name.
LAYERS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "Conv2D": ("Conv2D", ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "activation",
                          "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                          "bias_regularizer")),
    "DepthwiseConv2D": ("DepthwiseConv2D", ("kernel_size", "strides", "padding", "depth_multiplier", "dilation_rate",
                                            "activation", "use_bias", "depthwise_initializer", "bias_initializer",
                                            "depthwise_regularizer", "bias_regularizer")),
    "SeparableConv2D": ("SeparableConv2D", ("filters", "kernel_size", "strides", "padding", "depth_multiplier",
                                            "dilation_rate", "activation", "use_bias", "depthwise_initializer",
                                            "pointwise_initializer", "bias_initializer", "depthwise_regularizer",
                                            "pointwise_regularizer", "bias_regularizer")),
    "Dense": ("Dense", ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
                        "kernel_regularizer", "bias_regularizer")),
    "Flatten": ("Flatten", ()),
    "Activation": ("Activation", ("activation",)),
    "Dropout": ("Dropout", ("rate", "noise_shape", "seed")),
    "MaxPooling2D": ("MaxPooling2D", ("pool_size", "strides", "padding")),
    "AveragePooling2D": ("AveragePooling2D", ("pool_size", "strides", "padding")),
    "GlobalMaxPooling2D": ("GlobalMaxPooling2D", ("keepdims",)),
    "GlobalAveragePooling2D": ("GlobalAveragePooling2D", ("keepdims",)),
    "BatchNormalization": ("BatchNormalization", ("axis", "momentum", "epsilon", "center", "scale",
                                                  "beta_initializer", "gamma_initializer", "moving_mean_initializer",
                                                  "moving_variance_initializer")),
    "Add": ("Add", ()),
    "Multiply": ("Multiply", ()),
    "Concatenate": ("Concatenate", ("axis",)),
    "Reshape": ("Reshape", ("target_shape",)),
    "ZeroPadding2D": ("ZeroPadding2D", ("padding",)),
    "Cropping2D": ("Cropping2D", ("cropping",)),
    "LeakyReLU": ("LeakyReLU", ("negative_slope",)),
    "Rescaling": ("Rescaling", ("scale", "offset")),
    "RandomFlip": ("RandomFlip", ("mode", "seed")),
    "RandomTranslation": ("RandomTranslation", ("height_factor", "width_factor", "fill_mode", "interpolation",
                                                "seed", "fill_value")),
}

#: Keras's other names for the same classes (configs may use them; weights paths use the
#: canonical one).
ALIASES = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
           "GlobalAvgPool2D": "GlobalAveragePooling2D", "Convolution2D": "Conv2D", "Model": "Functional"}

MODELS = ("Sequential", "Functional")

#: Arguments pycnn does not take but accepts at these values (what they do is what pycnn does).
_NEUTRAL: Dict[str, Tuple[Any, ...]] = {
    "data_format": ("channels_last", None), "sparse": (False, None), "ragged": (False, None),
    "optional": (False, None), "synchronized": (False,), "renorm": (False, None), "decay": (0, 0.0),
}
#: Arguments accepted and ignored whatever they hold, once their condition holds (the value
#: matters only to a feature that is off).
_IGNORED = ("renorm_momentum", "input_dim", "input_length", "renorm_clipping")

#: Keras initializer classes (and their snake-case names) pycnn has, with the arguments
#: they may carry (seeds cannot be reproduced across frameworks and are dropped).
_INITIALIZERS = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal", "HeUniform": "he_uniform",
                 "HeNormal": "he_normal", "LecunUniform": "lecun_uniform", "LecunNormal": "lecun_normal",
                 "Zeros": "zeros", "Ones": "ones"}

#: pycnn's loss classes <-> Keras 3's, with the Keras arguments that must keep their value.
_LOSSES = {"SparseCategoricalCrossentropy": {"ignore_class": (None,)},
           "CategoricalCrossentropy": {"label_smoothing": (0, 0.0), "axis": (-1,)},
           "MeanSquaredError": {}}
_LOSS_NAMES = {"sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
               "categorical_crossentropy": "CategoricalCrossentropy", "mean_squared_error": "MeanSquaredError",
               "mse": "MeanSquaredError"}

#: pycnn's optimizers and the Keras arguments that must hold these values.
_OPTIMIZERS = {"Adam": {"amsgrad": (False,)}, "SGD": {}, "RMSprop": {"momentum": (0, 0.0), "centered": (False,)}}
_OPTIMIZER_NEUTRAL = {"weight_decay": (None, 0, 0.0), "clipnorm": (None,), "global_clipnorm": (None,),
                      "clipvalue": (None,), "use_ema": (False,), "ema_overwrite_frequency": (None,),
                      "loss_scale_factor": (None,), "gradient_accumulation_steps": (None, 1), "decay": (0, 0.0),
                      "is_legacy_optimizer": (False,)}
_OPTIMIZER_IGNORED = ("name", "ema_momentum", "jit_compile")

_METRIC_CLASSES = ("SparseCategoricalAccuracy", "CategoricalAccuracy", "BinaryAccuracy", "TopKCategoricalAccuracy",
                   "SparseTopKCategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError")


def to_snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case`` (the weights file names a layer's group with it)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _one_of(value: Any, allowed: Tuple[Any, ...]) -> bool:
    """``value`` equals one of ``allowed``, a bool only a bool and None only None."""
    for a in allowed:
        if a is None or value is None:
            if a is value:
                return True
        elif isinstance(a, bool) == isinstance(value, bool) and isinstance(value, (int, float, str)) and value == a:
            return True
    return False


def canonical(class_name: str) -> str:
    return ALIASES.get(class_name, class_name)


class Unsupported(ValueError):
    """A Keras feature pycnn cannot reproduce (named in the message)."""


# ============================================================================ Keras -> pycnn

class ModelSpec:
    """A translated model: pycnn's class name and config, and for the weights file the Keras
    class of every layer in ``model.layers`` order (nested models: their own ModelSpec)."""

    def __init__(self, class_name: str, config: Dict[str, Any], layer_classes: List[Any]) -> None:
        self.class_name = class_name
        self.config = config
        #: [(Keras class, layer name, ModelSpec of a nested model or None)] in Keras's model.layers order
        self.layer_classes = layer_classes


def model_from_keras(document: Any, path: str) -> ModelSpec:
    """The pycnn model a Keras model config describes (``{"class_name", "config"}`` as
    ``config.json`` or a legacy ``model_config`` holds it). Iterative over layers; nested
    models at most :data:`untrusted.MAX_MODEL_NESTING` deep.

    Raises:
        ValueError: a damaged config, or a layer / argument pycnn does not support (named).
    """
    if not isinstance(document, dict) or not isinstance(document.get("class_name"), str):
        raise untrusted.refuse(path, f"has no Keras model config: expected an object with 'class_name' and "
                                     f"'config'. Received: {type(document).__name__}.")
    return _model(document, path, 0)


def _model(entry: Dict[str, Any], path: str, depth: int) -> ModelSpec:
    if depth > untrusted.MAX_MODEL_NESTING:
        raise untrusted.refuse(path, f"nests models more than {untrusted.MAX_MODEL_NESTING} deep.")
    cls = canonical(entry.get("class_name"))
    config = entry.get("config")
    if cls not in MODELS:
        raise untrusted.refuse(path, f"holds a model of class {cls!r}; pycnn reads Sequential and functional "
                                     "models (a subclassed Keras model is Python code and is not in the file).")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise untrusted.refuse(path, f"has a damaged Keras config: the {cls} model has no 'layers' list.")
    if len(config["layers"]) > untrusted.MAX_LAYERS:
        raise untrusted.refuse(path, f"describes {len(config['layers'])} layers, more than {untrusted.MAX_LAYERS}.")
    _check_dtype(config.get("dtype"), path, f"model '{config.get('name')}'", cls)
    if cls == "Sequential":
        return _sequential(config, path, depth)
    return _functional(config, path, depth)


def _layer_entry(entry: Any, path: str, depth: int, index: int) -> Tuple[str, Dict[str, Any], Any, str]:
    """One Keras layer entry -> (pycnn class, pycnn config, nested ModelSpec or None, Keras class)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not isinstance(entry.get("config"), dict):
        raise untrusted.refuse(path, f"has a damaged Keras config: layer {index} should be an object with "
                                     "'class_name' and 'config'.")
    cls = canonical(entry["class_name"])
    if cls in MODELS:
        spec = _model(entry, path, depth + 1)
        if not isinstance(spec.config.get("name"), str):
            raise untrusted.refuse(path, f"has a nested {cls} model without a name.")
        return spec.class_name, spec.config, spec, cls
    pycnn_cls, cfg = layer_from_keras(cls, entry["config"], path)
    return pycnn_cls, cfg, None, cls


def layer_from_keras(class_name: str, config: Dict[str, Any], path: str) -> Tuple[str, Dict[str, Any]]:
    """A Keras layer config -> (pycnn class name, pycnn constructor arguments)."""
    cls = canonical(class_name)
    name = config.get("name")
    who = f"Layer '{name}' ({cls}) in '{path}'"
    if not isinstance(name, str) or not name:
        raise untrusted.refuse(path, f"has a layer of class {cls!r} without a name.")
    if cls == "InputLayer":
        return "InputLayer", _input_layer(config, path, who)
    if cls not in LAYERS:
        hint = (" A Lambda layer holds Python code, which pycnn never runs from a file." if cls == "Lambda" else
                f" Layers pycnn reads: {', '.join(sorted(LAYERS))}, InputLayer, Sequential and functional models.")
        if cls == "RandomCrop":
            hint = (" Keras 3's RandomCrop leaves images as they are at inference, pycnn's takes the centre window: "
                    "the models would differ. Remove the augmentation layers, or crop in the input pipeline.")
        raise Unsupported(f"{who}: pycnn has no layer of class {cls!r}.{hint}")
    pycnn_cls, passed = LAYERS[cls]
    out: Dict[str, Any] = {}
    for key, value in config.items():
        if key == "name":
            if not isinstance(value, str) or not value:
                raise untrusted.refuse(path, f"has a layer of class {cls} without a name.")
            out["name"] = value
        elif key == "trainable":
            if not isinstance(value, bool):
                raise untrusted.refuse(path, f"has layer '{name}' with trainable={value!r}.")
            out["trainable"] = value
        elif key == "dtype":
            _check_dtype(value, path, f"layer '{name}'", cls)
        elif key in ("batch_input_shape", "batch_shape"):  # Keras 2: on a Sequential's first layer
            if value is not None:
                untrusted.check_sample_shape(value, path, f"the input shape of layer '{name}'", batch_axis=True)
                out["input_shape"] = list(value[1:])
        elif key == "input_shape" and value is not None:
            untrusted.check_sample_shape(value, path, f"the input shape of layer '{name}'", batch_axis=False)
            out["input_shape"] = list(value)
        elif key == "alpha" and cls == "LeakyReLU":  # Keras 2's name
            out["negative_slope"] = value
        elif key in passed:
            out[key] = _argument(key, value, who, path)
        elif key in _NEUTRAL:
            if not _one_of(value, _NEUTRAL[key]):
                raise Unsupported(f"{who}: pycnn does not support argument '{key}'={value!r}"
                                  + (" (pycnn is channels-last, NHWC)." if key == "data_format" else "."))
        elif key in _IGNORED:
            continue
        elif value is None:  # constraints, activity_regularizer, quantization_config... unset
            continue
        else:
            raise Unsupported(f"{who}: pycnn does not support argument '{key}'={_short(value)}.")
    if cls == "BatchNormalization" and config.get("renorm"):
        raise Unsupported(f"{who}: pycnn does not support argument 'renorm'=True.")
    untrusted.check_layer_arguments(pycnn_cls, out, path, f"'{name}'")
    return pycnn_cls, out


def _input_layer(config: Dict[str, Any], path: str, who: str) -> Dict[str, Any]:
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if shape is not None:
        untrusted.check_sample_shape(shape, path, f"the shape of {who}", batch_axis=True)
        batch = shape[0]
        sample = list(shape[1:])
    else:
        sample = config.get("shape")
        untrusted.check_sample_shape(sample, path, f"the shape of {who}", batch_axis=False)
        batch = config.get("batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch
                              <= untrusted.MAX_SIZE):
        raise untrusted.refuse(path, f"declares {who} with batch size {batch!r}.")
    _check_dtype(config.get("dtype"), path, who, "InputLayer")
    for key in ("sparse", "ragged", "optional"):
        if config.get(key) not in (None, False):
            raise Unsupported(f"{who}: pycnn does not support argument '{key}'={config[key]!r}.")
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise untrusted.refuse(path, "has an InputLayer without a name.")
    return {"shape": sample, "batch_size": batch, "name": name}


def _check_dtype(value: Any, path: str, who: str, cls: str) -> None:
    """float32 (a string or a DTypePolicy config) or unset; anything else is refused."""
    name = value
    if isinstance(value, dict):
        inner = value.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
    if name not in (None, "float32"):
        raise Unsupported(f"Layer {who} ({cls}) in '{path}': pycnn computes in float32; it does not support "
                          f"dtype={_short(name)}.")


def _argument(key: str, value: Any, who: str, path: str) -> Any:
    if key == "activation":
        return _activation(value, who)
    if key.endswith("_initializer"):
        return _initializer(key, value, who)
    if key.endswith("_regularizer"):
        return _regularizer(key, value, who)
    if isinstance(value, dict):
        raise untrusted.refuse(path, f"has {who.split(' in ')[0]} with an object for argument '{key}': "
                                     f"{_short(value)}.")
    return value


def _activation(value: Any, who: str) -> str:
    name = value
    if isinstance(value, dict):  # {"class_name": "function", "config": "relu", ...}
        name = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    if name is None:
        return "linear"
    if isinstance(name, str) and name.lower() in activations_module.names() and name.lower() != "gelu_approximate":
        return name.lower()
    raise Unsupported(f"{who}: pycnn does not support activation={_short(name)}. Activations pycnn has: "
                      f"{', '.join(n for n in activations_module.names() if n != 'gelu_approximate')}.")


def _initializer(key: str, value: Any, who: str) -> str:
    if value is None:
        return "zeros" if "bias" in key or "beta" in key or "mean" in key else "glorot_uniform"
    if isinstance(value, str):
        lowered = to_snake_case(value)
        if lowered in _INITIALIZERS.values():
            return lowered
        cls, config = value, {}
    elif isinstance(value, dict):
        cls, config = value.get("class_name"), value.get("config") or {}
    else:
        cls, config = value, {}
    if cls in _INITIALIZERS and isinstance(config, dict) and set(config) <= {"seed", "input_axes", "output_axes"}:
        return _INITIALIZERS[cls]
    fallback = "zeros" if key.startswith(("bias", "beta", "moving_mean")) else (
        "ones" if key.startswith(("gamma", "moving_variance")) else "glorot_uniform")
    warnings.warn(f"{who}: pycnn has no initializer {_short(cls)} for '{key}'; it uses '{fallback}' instead (the "
                  "file's weights replace it; it matters only if the layer is built again).", UserWarning,
                  stacklevel=4)
    return fallback


def _regularizer(key: str, value: Any, who: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    if isinstance(value, dict) and value.get("class_name") in ("L1", "L2", "L1L2") and \
            isinstance(value.get("config"), dict):
        config = {k: v for k, v in value["config"].items() if k in ("l1", "l2")}
        return {"class_name": value["class_name"], "config": config}
    if isinstance(value, str) and value.lower() in ("l1", "l2", "l1_l2"):
        return value.lower()  # type: ignore[return-value]
    raise Unsupported(f"{who}: pycnn does not support {key}={_short(value)} (it has L1, L2 and L1L2).")


def _sequential(config: Dict[str, Any], path: str, depth: int) -> ModelSpec:
    entries = config["layers"]
    out_layers: List[Dict[str, Any]] = []
    classes: List[Any] = []
    for i, entry in enumerate(entries):
        pycnn_cls, cfg, nested, keras_cls = _layer_entry(entry, path, depth, i)
        out_layers.append({"class_name": pycnn_cls, "config": cfg})
        if not isinstance(cfg.get("name"), str):
            raise untrusted.refuse(path, f"has a damaged Keras config: layer {i} ({keras_cls}) has no name.")
        if keras_cls != "InputLayer":  # Keras's Sequential.layers leaves the InputLayer out
            classes.append((keras_cls, cfg["name"], nested))
    pycnn_config: Dict[str, Any] = {"name": _name(config, path), "trainable": _flag(config.get("trainable", True)),
                                    "layers": out_layers}
    shape = config.get("build_input_shape")
    if shape is not None:
        untrusted.check_sample_shape(shape, path, "the model's input shape", batch_axis=True)
        pycnn_config["build_input_shape"] = list(shape)
    return ModelSpec("Sequential", pycnn_config, classes)


def _name(config: Dict[str, Any], path: str) -> Optional[str]:
    name = config.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise untrusted.refuse(path, f"has a model named {name!r}.")
    return name


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else True


def _ref(value: Any, path: str) -> Tuple[str, int]:
    """A Keras tensor reference -> (layer name, node index): Keras 3's ``__keras_tensor__``
    object or a Keras 2 ``[name, node_index, tensor_index(, kwargs)]`` list."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
    else:
        history = value
    if not (isinstance(history, (list, tuple)) and len(history) in (3, 4) and isinstance(history[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= untrusted.MAX_LAYERS
                    for v in history[1:3])):
        raise untrusted.refuse(path, f"has a damaged Keras config: a tensor reference {_short(value)} should name a "
                                     "layer, a node index and a tensor index.")
    if history[2] != 0:
        raise untrusted.refuse(path, f"references output {history[2]} of layer '{history[0]}'; pycnn layers have one.")
    return history[0], history[1]


def _node_inputs(node: Any, layer: str, path: str) -> Tuple[List[Tuple[str, int]], bool]:
    """One inbound node -> (its input references, whether they come as a list (a merge))."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        args, kwargs = node.get("args"), node.get("kwargs") or {}
        if not isinstance(args, list) or len(args) != 1 or not isinstance(kwargs, dict):
            raise untrusted.refuse(path, f"has a damaged Keras config: a call of layer '{layer}' should have one "
                                         f"argument. Received: {_short(node)}.")
        for key, value in kwargs.items():
            if key == "training" and value in (None, False):
                continue
            if key == "mask" and value is None:
                continue
            raise Unsupported(f"Layer '{layer}' in '{path}' is called with {key}={_short(value)}; pycnn does not "
                              "support call arguments.")
        arg = args[0]
        if isinstance(arg, list):
            return [_ref(t, path) for t in arg], True
        return [_ref(arg, path)], False
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        refs = []
        for item in node:
            if isinstance(item, list) and len(item) == 4 and item[3] not in ({}, None):
                raise Unsupported(f"Layer '{layer}' in '{path}' is called with {_short(item[3])}; pycnn does not "
                                  "support call arguments.")
            refs.append(_ref(item, path))
        return refs, len(refs) > 1
    raise untrusted.refuse(path, f"has a damaged Keras config: a call of layer '{layer}' is {_short(node)}.")


def _io_refs(value: Any, path: str, key: str) -> List[Tuple[str, int]]:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_ref(value, path)]  # Keras 3 writes a single input or output flat
    if not isinstance(value, list) or not value:
        raise untrusted.refuse(path, f"has a damaged Keras config: '{key}' should list tensors.")
    return [_ref(v, path) for v in value]


def _functional(config: Dict[str, Any], path: str, depth: int) -> ModelSpec:
    """A Keras functional config -> pycnn's: layers, then the calls in an order where every
    call's inputs come before it (Kahn's algorithm; Keras's node indices become pycnn's
    call indices in that order)."""
    entries = config["layers"]
    layers_out: List[Dict[str, Any]] = []
    classes: List[Any] = []
    calls: List[Tuple[int, str, List[Tuple[str, int]], bool]] = []  # (order, layer, inputs, is_list)
    names: Dict[str, str] = {}  # layer name -> Keras class
    for i, entry in enumerate(entries):
        pycnn_cls, cfg, nested, keras_cls = _layer_entry(entry, path, depth, i)
        name = entry["name"] if isinstance(entry.get("name"), str) else cfg.get("name")
        if not isinstance(name, str):
            raise untrusted.refuse(path, f"has a damaged Keras config: layer {i} has no name.")
        if name in names:
            raise untrusted.refuse(path, f"names two layers '{name}'.")
        cfg["name"] = name
        names[name] = keras_cls
        layers_out.append({"class_name": pycnn_cls, "config": cfg})
        classes.append((keras_cls, name, nested))
        nodes = entry.get("inbound_nodes") or []
        if not isinstance(nodes, list) or len(nodes) > untrusted.MAX_LAYERS:
            raise untrusted.refuse(path, f"has a damaged Keras config: layer '{name}' has no list of calls.")
        if keras_cls == "InputLayer":
            continue
        for node in nodes:
            refs, is_list = _node_inputs(node, name, path)
            calls.append((len(calls), name, refs, is_list))
        if len(calls) > untrusted.MAX_LAYERS:
            raise untrusted.refuse(path, f"describes more than {untrusted.MAX_LAYERS} layer calls.")
    produced_by: Dict[Tuple[str, int], int] = {}
    per_layer: Dict[str, int] = {}
    for c, (_, name, _, _) in enumerate(calls):
        produced_by[(name, per_layer.get(name, 0))] = c
        per_layer[name] = per_layer.get(name, 0) + 1
    inputs = _io_refs(config.get("input_layers"), path, "input_layers")
    outputs = _io_refs(config.get("output_layers"), path, "output_layers")
    for name, k in inputs:
        if names.get(name) != "InputLayer" or k != 0:
            raise untrusted.refuse(path, f"lists '{name}' as a model input, but it is not an InputLayer.")

    def known(ref: Tuple[str, int]) -> bool:
        return ref in produced_by or (names.get(ref[0]) == "InputLayer" and ref[1] == 0)

    waiting = [0] * len(calls)
    readers: Dict[int, List[int]] = {}
    for c, (_, name, refs, _) in enumerate(calls):
        for ref in refs:
            if not known(ref):
                raise untrusted.refuse(path, f"has layer '{name}' reading {ref[0]}[{ref[1]}], which no layer "
                                             "produces.")
            if ref in produced_by:
                waiting[c] += 1
                readers.setdefault(produced_by[ref], []).append(c)
    ready = [c for c in range(len(calls)) if waiting[c] == 0]
    heapq.heapify(ready)
    order: List[int] = []
    while ready:
        c = heapq.heappop(ready)
        order.append(c)
        for r in readers.get(c, ()):
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(calls):
        raise untrusted.refuse(path, "has a Keras config whose layer calls form a cycle.")
    call_index: Dict[Tuple[str, int], int] = {}  # (layer, Keras node index) -> pycnn call index
    counts: Dict[str, int] = {}
    keras_node = {c: key for key, c in produced_by.items()}

    def pycnn_ref(ref: Tuple[str, int]) -> List[Any]:
        if ref in produced_by:
            return [ref[0], call_index[ref]]
        return [ref[0], 0]

    nodes_out = []
    for c in order:
        _, name, refs, _ = calls[c]
        nodes_out.append({"layer": name, "inputs": [pycnn_ref(r) for r in refs]})
        call_index[keras_node[c]] = counts.get(name, 0)
        counts[name] = counts.get(name, 0) + 1
    for ref in outputs:
        if not known(ref):
            raise untrusted.refuse(path, f"lists {ref[0]}[{ref[1]}] as a model output, but no layer produces it.")
    single = not (isinstance(config.get("output_layers"), list) and config["output_layers"]
                  and isinstance(config["output_layers"][0], list)) or len(outputs) == 1
    pycnn_config = {"name": _name(config, path), "trainable": _flag(config.get("trainable", True)),
                    "layers": layers_out, "nodes": nodes_out,
                    "inputs": [[n, 0] for n, _ in inputs], "outputs": [pycnn_ref(r) for r in outputs],
                    "single_output": bool(single)}
    return ModelSpec("Functional", pycnn_config, classes)


# ---------------------------------------------------------------------------- training setup

def compile_from_keras(config: Any, path: str) -> Optional[Dict[str, Any]]:
    """A Keras ``compile_config`` (Keras 3) or ``training_config`` (legacy) -> the arguments
    of pycnn's ``compile()``; None when the file has none.

    Raises:
        ValueError: an optimizer, loss or metric (or an argument of one) pycnn lacks, named.
    """
    if config is None:
        return None
    if not isinstance(config, dict):
        raise untrusted.refuse(path, f"has a damaged training config ({type(config).__name__}).")
    optimizer = config.get("optimizer", config.get("optimizer_config"))
    if config.get("loss_weights") not in (None, [], {}):
        raise Unsupported(f"The training config in '{path}' has loss_weights={_short(config['loss_weights'])}; "
                          "pycnn trains one output.")
    out = {"optimizer": _optimizer(optimizer, path), "loss": _loss(config.get("loss"), path)}
    for key in ("metrics", "weighted_metrics"):
        out[key] = _metrics(config.get(key), path, key) or None
    return out


def _optimizer(spec: Any, path: str) -> Any:
    if isinstance(spec, str):
        try:
            return optimizers_module.get(spec)
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"The training config in '{path}': {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise untrusted.refuse(path, f"has a damaged optimizer config: {_short(spec)}.")
    cls = spec["class_name"]
    config = spec.get("config") or {}
    if cls not in _OPTIMIZERS or not isinstance(config, dict):
        raise Unsupported(f"The training config in '{path}' uses optimizer {cls!r}; pycnn has "
                          f"{', '.join(_OPTIMIZERS)}.")
    required = {**_OPTIMIZER_NEUTRAL, **_OPTIMIZERS[cls]}
    args: Dict[str, Any] = {}
    for key, value in config.items():
        if key in _OPTIMIZER_IGNORED:
            continue
        if key in required:
            if not _one_of(value, required[key]):
                raise Unsupported(f"The optimizer ({cls}) in '{path}' has {key}={_short(value)}; pycnn does not "
                                  "support it.")
            continue
        if key == "learning_rate" and isinstance(value, dict):
            value = {"class_name": value.get("class_name"), "config": value.get("config")}
        args[key] = value
    try:
        return getattr(optimizers_module, cls)(**args)
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"The optimizer ({cls}) in '{path}' cannot be rebuilt: {exc}") from exc


def _loss(spec: Any, path: str) -> Any:
    if isinstance(spec, list) and len(spec) == 1:
        spec = spec[0]
    if isinstance(spec, dict) and spec.get("class_name") == "function" and isinstance(spec.get("config"), str):
        spec = spec["config"]
    if isinstance(spec, str):
        cls = _LOSS_NAMES.get(spec.lower())
        if cls is None:
            raise Unsupported(f"The training config in '{path}' uses loss {spec!r}; pycnn has "
                              f"{', '.join(sorted(_LOSS_NAMES))}.")
        return getattr(losses_module, cls)()
    if not isinstance(spec, dict) or spec.get("class_name") not in _LOSSES:
        raise Unsupported(f"The training config in '{path}' uses loss {_short(spec)}; pycnn has "
                          f"{', '.join(_LOSSES)}.")
    cls = spec["class_name"]
    config = spec.get("config") or {}
    args = {}
    for key, value in config.items():
        if key == "name" or (key == "reduction" and value in ("sum_over_batch_size", "auto", None)):
            continue
        if key in _LOSSES[cls]:
            if not _one_of(value, _LOSSES[cls][key]):
                raise Unsupported(f"The loss ({cls}) in '{path}' has {key}={_short(value)}; pycnn does not support it.")
            continue
        if key == "from_logits" and cls != "MeanSquaredError":
            args[key] = value
            continue
        raise Unsupported(f"The loss ({cls}) in '{path}' has {key}={_short(value)}; pycnn does not support it.")
    try:
        return getattr(losses_module, cls)(**args)
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"The loss ({cls}) in '{path}' cannot be rebuilt: {exc}") from exc


def _metrics(value: Any, path: str, key: str) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, dict) and not value.get("class_name"):
        raise Unsupported(f"The training config in '{path}' has {key} per output; pycnn trains one output.")
    items = value if isinstance(value, list) else [value]
    if len(items) == 1 and isinstance(items[0], list):
        items = items[0]  # one output's list
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("class_name") == "function" and isinstance(item.get("config"), str):
            item = item["config"]
        if isinstance(item, str):
            try:
                metrics_module.check(item, key)
            except (TypeError, ValueError) as exc:
                raise Unsupported(f"The training config in '{path}': {exc}") from exc
            out.append(item)
        elif isinstance(item, dict) and item.get("class_name") in _METRIC_CLASSES:
            config = {k: v for k, v in (item.get("config") or {}).items() if k in ("name", "k", "threshold")}
            out.append(metrics_module.deserialize({"class_name": item["class_name"], "config": config}))
        else:
            raise Unsupported(f"The training config in '{path}' uses metric {_short(item)}; pycnn has "
                              f"{', '.join(_METRIC_CLASSES)} and their names.")
    return out


# ============================================================================ pycnn -> Keras

def keras_class(layer: Any) -> str:
    """The Keras 3 class a pycnn layer is saved as (and whose snake-case name its weights
    group in the weights file takes); ValueError for layers Keras lacks."""
    cls = layer.class_name
    if cls in MODELS:
        return cls
    if cls == "InputLayer":
        return cls
    if cls == "GELU":
        if layer.approximate:
            raise Unsupported(f"Layer '{layer.name}' (GELU(approximate=True)) has no Keras 3 equivalent that a "
                              "config can name. Save the model as .npz, or export it to ONNX.")
        return "Activation"
    if cls == "RandomCrop":
        raise Unsupported(f"Layer '{layer.name}' (RandomCrop): Keras 3's RandomCrop leaves images as they are at "
                          "inference, pycnn's takes the centre window, so Keras would compute another model. Remove "
                          "the augmentation layers before saving as .keras (or save as .npz).")
    if cls not in LAYERS:
        raise Unsupported(f"Layer '{layer.name}' ({cls}) has no Keras 3 equivalent. Save the model as .npz, or "
                          "export it to ONNX.")
    return cls


def model_to_keras(model: Any) -> Dict[str, Any]:
    """``config.json``'s model entry for ``model`` (without ``compile_config``)."""
    entry = _model_entry(model, nested=False)
    entry["build_config"] = {"input_shape": _jsonable(_input_shape(model))}
    return entry


def _input_shape(model: Any) -> Any:
    shape = model.input_shape
    return [list(s) for s in shape] if isinstance(shape, list) else list(shape)


def _model_entry(model: Any, nested: bool) -> Dict[str, Any]:
    cls = model.class_name
    if cls not in MODELS:
        raise Unsupported(f"Model '{model.name}' is a {cls}, a subclass Keras cannot rebuild from a config; save it "
                          "as .npz.")
    if cls == "Sequential":
        config = _sequential_config(model)
    else:
        config = _functional_config(model)
    entry = {"module": "keras" if cls == "Sequential" else "keras.src.models.functional", "class_name": cls,
             "config": config, "registered_name": None if cls == "Sequential" else "Functional"}
    if nested:
        entry["build_config"] = {"input_shape": _jsonable(_input_shape(model))}
    return entry


def _layer_entry_out(layer: Any) -> Dict[str, Any]:
    if layer.class_name in MODELS:
        return _model_entry(layer, nested=True)
    cls = keras_class(layer)
    config = layer_to_keras(layer)
    entry = {"module": "keras.layers", "class_name": cls, "config": config, "registered_name": None}
    if getattr(layer, "input_shape", None) is not None and cls != "InputLayer":
        shape = layer.input_shape
        entry["build_config"] = {"input_shape": _jsonable([list(s) for s in shape] if isinstance(shape, list)
                                                          else list(shape))}
    return entry


def layer_to_keras(layer: Any) -> Dict[str, Any]:
    """A pycnn layer's Keras 3 config (its class from :func:`keras_class`)."""
    cls = keras_class(layer)
    config = layer.get_config()
    if cls == "InputLayer":
        return {"batch_shape": [config.get("batch_size")] + list(config["shape"]), "dtype": "float32",
                "sparse": False, "ragged": False, "name": layer.name, "optional": False}
    if layer.class_name == "GELU":
        return {"name": layer.name, "trainable": layer.trainable, "dtype": "float32", "activation": "gelu"}
    _, passed = LAYERS[cls]
    if config.get("activation") == "gelu_approximate":
        raise Unsupported(f"Layer '{layer.name}' ({layer.class_name}) uses activation 'gelu_approximate', which Keras "
                          "3 cannot name in a config. Save the model as .npz, or export it to ONNX.")
    out: Dict[str, Any] = {"name": layer.name, "trainable": layer.trainable, "dtype": "float32"}
    for key in passed:
        if key not in config:
            continue
        value = config[key]
        if key.endswith("_initializer"):
            if not isinstance(value, str):
                continue  # a callable: Keras's default (the weights are in the file)
        elif key.endswith("_regularizer"):
            value = None if value is None else {"module": "keras.regularizers", **value, "registered_name": None}
        out[key] = _jsonable(value)
    if "data_format" in _keras_takes_data_format(cls):
        out["data_format"] = "channels_last"
    return out


def _keras_takes_data_format(cls: str) -> Tuple[str, ...]:
    return ("data_format",) if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
                                       "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
                                       "Flatten", "ZeroPadding2D", "Cropping2D", "RandomFlip",
                                       "RandomTranslation") else ()


def _sequential_config(model: Any) -> Dict[str, Any]:
    shape = list(model.input_shape)
    layers = [{"module": "keras.layers", "class_name": "InputLayer",
               "config": {"batch_shape": shape, "dtype": "float32", "sparse": False, "ragged": False,
                          "name": _input_name(model), "optional": False}, "registered_name": None}]
    layers += [_layer_entry_out(layer) for layer in model.layers]
    return {"name": model.name, "trainable": model.trainable, "dtype": "float32", "layers": layers,
            "build_input_shape": shape}


def _input_name(model: Any) -> str:
    layer = getattr(model, "_input_layer", None)
    return layer.name if layer is not None else f"{model.name}_input"


def _tensor(layer_name: str, node: int, shape: Sequence[Any]) -> Dict[str, Any]:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": _jsonable(list(shape)), "dtype": "float32", "keras_history": [layer_name, node, 0]}}


def _functional_config(model: Any) -> Dict[str, Any]:
    """Keras 3's functional config: each layer with its calls (``inbound_nodes``), every
    tensor named ``[layer, node index, 0]``."""
    config = model.get_config()  # pycnn's: layers, nodes [{"layer", "inputs": [[name, call]]}], inputs, outputs
    graph = model._graph()
    shapes = graph.value_shapes(graph.input_shapes)
    k = graph.num_inputs
    shape_of: Dict[Tuple[str, int], Any] = {}
    for i, t in enumerate(model.inputs):
        shape_of[(t.node.layer.name, 0)] = shapes[i]
    calls: Dict[str, int] = {}
    inbound: Dict[str, List[Dict[str, Any]]] = {}
    for i, node in enumerate(config["nodes"]):
        name = node["layer"]
        layer = graph.nodes[i].layer
        refs = [_tensor(n, int(c), shape_of[(n, int(c))]) for n, c in node["inputs"]]
        arg: Any = refs if layer._multi_input else refs[0]
        inbound.setdefault(name, []).append({"args": [arg], "kwargs": {}})
        shape_of[(name, calls.get(name, 0))] = shapes[k + i]
        calls[name] = calls.get(name, 0) + 1
    layers = []
    for layer in model.layers:
        entry = _layer_entry_out(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = inbound.get(layer.name, [])
        layers.append(entry)
    inputs = [[n, int(c), 0] for n, c in config["inputs"]]
    outputs = [[n, int(c), 0] for n, c in config["outputs"]]
    return {"name": model.name, "trainable": model.trainable,
            "layers": layers,
            "input_layers": inputs[0] if len(inputs) == 1 else inputs,
            "output_layers": outputs[0] if config.get("single_output", True) and len(outputs) == 1 else outputs}


def compile_to_keras(model: Any) -> Dict[str, Any]:
    """Keras 3's ``compile_config`` for a compiled pycnn model.

    Raises:
        ValueError: an optimizer, loss or metric Keras cannot rebuild from a config (a
            user's own), named.
    """
    optimizer, loss = model.optimizer, model.loss
    opt_cls = type(optimizer).__name__
    if opt_cls not in _OPTIMIZERS or type(optimizer) is not getattr(optimizers_module, opt_cls):
        raise Unsupported(f"Model '{model.name}' is compiled with optimizer {opt_cls}, which a Keras file cannot "
                          "name. Save as .npz, or save before compiling.")
    opt_config = dict(optimizer.get_config())
    lr = opt_config.get("learning_rate")
    if isinstance(lr, dict):
        opt_config["learning_rate"] = {"module": "keras.optimizers.schedules", **lr, "registered_name": None}
    opt_config = {"name": optimizer.name, **opt_config}
    loss_cls = type(loss).__name__
    if loss_cls not in _LOSSES or type(loss) is not getattr(losses_module, loss_cls):
        raise Unsupported(f"Model '{model.name}' is compiled with loss {loss_cls}, which a Keras file cannot name. "
                          "Save as .npz, or save before compiling.")
    loss_config = {"name": loss.name, "reduction": "sum_over_batch_size", **loss.get_config()}
    metrics: Dict[str, List[Any]] = {}
    for key, specs in (("metrics", model._metrics.specs), ("weighted_metrics", model._metrics.weighted_specs)):
        out = []
        for spec in specs:
            if isinstance(spec, str):
                out.append(spec)
            elif isinstance(spec, metrics_module.Metric) and type(spec).__name__ in _METRIC_CLASSES:
                out.append({"module": "keras.metrics", "class_name": type(spec).__name__,
                            "config": _jsonable(spec.get_config()), "registered_name": None})
            else:
                raise Unsupported(f"Model '{model.name}' is compiled with metric {_short(spec)}, which a Keras file "
                                  "cannot name. Save as .npz, or compile with metric names.")
        metrics[key] = out
    return {"optimizer": {"module": "keras.optimizers", "class_name": opt_cls, "config": _jsonable(opt_config),
                          "registered_name": None},
            "loss": {"module": "keras.losses", "class_name": loss_cls, "config": _jsonable(loss_config),
                     "registered_name": None},
            "loss_weights": None, "metrics": metrics["metrics"] or None,
            "weighted_metrics": metrics["weighted_metrics"] or None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}


def keras_slot_names(optimizer: Any) -> Tuple[str, ...]:
    """The per-variable state Keras's optimizer keeps, in its order (pycnn's slots minus work space)."""
    return tuple(n for n in optimizer.slot_names() if n not in ("scratch", "average"))


def _jsonable(value: Any) -> Any:
    """Tuples -> lists, NumPy scalars -> Python (iterative enough: configs are shallow)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["LAYERS", "ModelSpec", "model_from_keras", "layer_from_keras", "compile_from_keras", "model_to_keras",
           "layer_to_keras", "compile_to_keras", "keras_class", "keras_slot_names", "to_snake_case", "canonical",
           "Unsupported"]

# The schedules module is imported so that a schedule in an optimizer config resolves.
_ = schedules_module
