"""VPM-Net: models, variant configs and the model registry."""

from reid.models.config import VPMConfig, config_from_dict, load_model_config
from reid.models.registry import CONFIG_DIR, build_vpm, create_model, list_models, register_model
from reid.models.vpm import VPMNet
from reid.models.weights import save_checkpoint

__all__ = [
    "CONFIG_DIR",
    "VPMConfig",
    "VPMNet",
    "build_vpm",
    "config_from_dict",
    "create_model",
    "list_models",
    "load_model_config",
    "register_model",
    "save_checkpoint",
]
