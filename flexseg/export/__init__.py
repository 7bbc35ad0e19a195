"""Deployable forms of a trained model (`mode=export`, `train.export=true`): a TensorFlow SavedModel, an
MLflow model that segments images of any size, and a model card. MLflow calls go through
`flexseg.tracking.export`."""
