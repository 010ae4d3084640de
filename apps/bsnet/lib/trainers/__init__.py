"""BS-Net MONAI Label app: trainers."""
