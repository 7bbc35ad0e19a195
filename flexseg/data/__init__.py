"""Data stage: finding image/mask pairs on disk, decoding masks, and the embedded synthetic dataset."""
