"""Networks by name: ``create_model("resnet20", num_classes=100)``, ``list_models()``,
``model_info(name)``, timm's models as ``create_model("timm:efficientnet_b0")``; every model
exposes its distillation features to ``extract_features``."""

from kd_core.lazy import lazy_attributes

# Imported on first use (:mod:`kd_core.lazy`): naming timm models needs no torch.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "FeatureSpec": ".features",
        "capture_features": ".features",
        "extract_features": ".features",
        "ModelInfo": ".registry",
        "create_model": ".registry",
        "list_models": ".registry",
        "model_info": ".registry",
        "data_config": ".timm_models",
        "input_transform": ".timm_models",
        "is_timm_name": ".timm_models",
        "timm_model_names": ".timm_models",
    },
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
