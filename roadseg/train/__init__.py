"""Training: datasets, augmentation, losses and the (DDP-aware) loop."""
