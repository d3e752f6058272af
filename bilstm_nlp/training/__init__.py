"""Training: the loop, checkpoints, and the model cards written beside a trained model."""
