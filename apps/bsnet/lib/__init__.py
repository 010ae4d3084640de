"""BS-Net MONAI Label app: task configs, infer tasks, trainer, active learning, datastore."""
