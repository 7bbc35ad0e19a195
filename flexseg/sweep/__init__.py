"""Sweeps: the objective, the sweepers behind `flexseg -m` (grid and Optuna), and what a job of a sweep knows.

The Hydra plugin classes live in `hydra_plugins/flexseg_sweepers` (Hydra only loads plugins from that
namespace) and delegate here. Nothing in this package imports TensorFlow at module level.
"""
