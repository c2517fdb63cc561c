"""Training: a TrainConfig in, calibrated checkpoints out. The run (train), its hot loop (engine), the frozen
backbone's feature cache (features), torchrun support (distributed) and the fitting of temperature and
operating point on the validation split (calibration)."""
