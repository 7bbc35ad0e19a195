"""Training pieces: losses, Keras metrics, optimizers and schedules, callbacks, resume."""
