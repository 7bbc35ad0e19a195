"""flexseg: Hydra-configured 2D image segmentation experiments on TensorFlow/Keras 3.

Importing this package (or the CLI) never imports TensorFlow; the mode runners do.
"""

__version__ = "0.1.0"
