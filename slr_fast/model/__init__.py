"""The hierarchical keypoint transformer: part embeddings with cross-modal attention, local/conv/global stages,
multi-scale pooling and deep supervision, every attention / RMSNorm / SwiGLU through `kernels.registry`.

    from slr_fast.model import ModelConfig, SignModel
    cfg = ModelConfig.preset("tiny", num_classes=250, layout=store.layout)
    model = SignModel(cfg, kernels=KernelConfig.parse("attention=triton"))
    out = model(batch["x"], batch["mask"], batch["length"])   # out.logits (B, K), out.aux_logits [(B, K), ...]
"""

from slr_fast.model.checkpoint import TORCH_KERNELS, checkpoint_dict, load_model, save_model
from slr_fast.model.config import POOL_KINDS, PRESETS, ModelConfig
from slr_fast.model.model import ModelOutput, SignModel, lengths_from_mask

__all__ = [
    "ModelConfig",
    "PRESETS",
    "POOL_KINDS",
    "SignModel",
    "ModelOutput",
    "lengths_from_mask",
    "save_model",
    "load_model",
    "checkpoint_dict",
    "TORCH_KERNELS",
]
