"""Console tools besides `flexseg` (flexseg-import-ini)."""
