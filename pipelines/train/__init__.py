"""The training job and what it hands on: Ray Train, evaluation, the registry."""
