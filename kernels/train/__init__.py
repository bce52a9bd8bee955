"""Pretraining shared by the families: the run config, the loop (single process or DDP
under torchrun), LR schedules, bits-per-byte, nanochat-format training logs and the
time-to-target rule."""
