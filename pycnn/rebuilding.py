"""A model rebuilt from a config a file holds: every reader of model files (pycnn's .npz,
Keras's .keras and .h5) ends here, after :mod:`pycnn.interop.untrusted` has checked the
config, so that weights are counted against what the file stores while they are created."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import initializers
from . import layers as layers_module
from .interop import untrusted


def rebuild(model_class: str, config: Dict[str, Any], path: str, budget: int,
            custom_objects: Optional[Dict[str, Any]] = None, input_shape: Any = None) -> Any:
    """The model a (checked) pycnn config describes, its weights counted against ``budget``
    (the values the file stores) as they are created; then every tensor's size checked."""
    try:
        with layers_module.base.custom_object_scope(custom_objects), initializers.loading(budget, path):
            model = layers_module.get(model_class).from_config(config)
            if not hasattr(model, "compile"):
                raise ValueError(f"its class {model_class!r} is not a model")
            if not model.built or getattr(model, "_batch_input_shape", True) is None:
                if input_shape is None:
                    raise ValueError(f"'{path}' stores no input shape for model '{model.name}'.")
                model.build(tuple(input_shape))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"Cannot rebuild the model stored in '{path}': {type(exc).__name__}: {exc}") from exc
    untrusted.check_model_values(model, path)
    return model
