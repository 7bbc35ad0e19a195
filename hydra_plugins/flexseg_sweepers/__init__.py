"""flexseg's Hydra sweepers (Hydra loads plugins only from the `hydra_plugins` namespace package).

`hydra/sweeper=basic` (the default of `flexseg -m`) is flexseg's grid sweeper and `hydra/sweeper=optuna`
its Optuna sweeper (conf/hydra/sweeper/). Both group the jobs under one parent MLflow run, record a
failed job and go on. This module stays light: Hydra imports it on every start, so the work lives in
`flexseg.sweep` and is imported only when a sweep runs.
"""
