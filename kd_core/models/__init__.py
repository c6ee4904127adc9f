"""Networks by name: ``create_model("resnet20", num_classes=100)``, ``list_models()``,
``model_info(name)``, timm's models as ``create_model("timm:efficientnet_b0")``; every model
exposes its distillation features to ``extract_features``."""

from kd_core.models.features import FeatureSpec, capture_features, extract_features
from kd_core.models.registry import ModelInfo, create_model, list_models, model_info
from kd_core.models.timm_models import (
    data_config,
    input_transform,
    is_timm_name,
    timm_model_names,
)

__all__ = [
    "FeatureSpec",
    "ModelInfo",
    "capture_features",
    "create_model",
    "data_config",
    "extract_features",
    "input_transform",
    "is_timm_name",
    "list_models",
    "model_info",
    "timm_model_names",
]
