"""BS-Net MONAI Label app: infers."""
