"""Training, evaluation and inference: `fit(TrainConfig(...))` is what `slr-fast train` runs.

    from slr_fast.train import TrainConfig, fit
    cfg = TrainConfig(epochs=30, kernels="auto")
    cfg.data.store = "demo/synthetic.zarr"
    result = fit(cfg)               # result.history, result.test, result.run_dir
"""

from slr_fast.train.config import DataConfig, LossConfig, OptimConfig, ScheduleConfig, TrainConfig

__all__ = ["DataConfig", "LossConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "fit", "evaluate_checkpoint",
           "predict_files", "load_model"]


def __getattr__(name: str):
    # The heavy parts (torch, the model, the engine) load on first use, so `slr-fast --help` stays instant.
    if name == "fit":
        from slr_fast.train.loop import fit

        return fit
    if name in ("evaluate_checkpoint", "predict_files", "load_model"):
        from slr_fast.train import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'slr_fast.train' has no attribute {name!r}")
