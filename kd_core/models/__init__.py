"""Networks by name: ``create_model("resnet20", num_classes=100)``, ``list_models()``,
``model_info(name)``; every model exposes its distillation features to ``extract_features``."""

from kd_core.models.features import FeatureSpec, capture_features, extract_features
from kd_core.models.registry import ModelInfo, create_model, list_models, model_info

__all__ = [
    "FeatureSpec",
    "ModelInfo",
    "capture_features",
    "create_model",
    "extract_features",
    "list_models",
    "model_info",
]
