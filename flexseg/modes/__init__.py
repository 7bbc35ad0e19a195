"""Mode runners: `run(cfg, ctx) -> dict[str, float]`, thin orchestration of the library."""
