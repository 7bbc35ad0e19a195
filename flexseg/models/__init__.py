"""Segmentation model builders: `registry.build_model` maps `model.name` to a `build_*` function.

Nothing is imported here, so `import flexseg.models` does not pull in TensorFlow.
"""
