"""Prediction: sliding-window maths, lazy image reading / streamed writing, the one predictor path."""
