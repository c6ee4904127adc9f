"""Networks by name: ``create_model("resnet20", num_classes=100)``, ``list_models()``."""

from kd_core.models.registry import create_model, list_models

__all__ = ["create_model", "list_models"]
