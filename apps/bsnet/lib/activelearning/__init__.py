"""BS-Net MONAI Label app: activelearning."""
