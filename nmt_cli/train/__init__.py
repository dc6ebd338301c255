"""`nmt train`: batching, optimization, validation, checkpoints and the loop."""
