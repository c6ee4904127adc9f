"""Networks by name: ``create_model("resnet20", num_classes=100)``, ``list_models()``."""

from kd_core.models.features import FeatureSpec, capture_features, extract_features
from kd_core.models.registry import create_model, list_models

__all__ = ["FeatureSpec", "capture_features", "create_model", "extract_features", "list_models"]
