"""Fine-tune timm image classifiers: Hydra configs, DVC data, W&B tracking, torchrun, FastAPI serving."""
