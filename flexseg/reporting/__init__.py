"""Pictures, plots and tables that runs write (numpy in, files out; no TensorFlow)."""
