"""BS-Net MONAI Label app: configs."""
