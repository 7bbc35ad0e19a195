"""`flexseg --help`, rendered from our own group listing in about a second.

Hydra's help lists the options of every group, its own `hydra/*` groups included, composing a
repository copy per group; with the launcher plugins installed that took 4-5 s. The text is the same
template (`hydra.help.template` in conf/config.yaml) with the app's groups and the composed config.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from flexseg.config.store import CONF_DIR, GROUPS, group_options

HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "-m", "--multirun")


def fast_help_applies(argv: list[str]) -> bool:
    """True for `--help` without other config dirs/paths (Hydra's own help handles those)."""
    other = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--hydra-help")
    return ("--help" in argv or "-h" in argv) and not any(a.split("=")[0] in other for a in argv)


def render_help(argv: list[str]) -> str:
    """The help text for a command line (`KEY=VALUE` overrides shown applied in the config part)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in argv if a not in HYDRA_FLAGS]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    template = str(cfg.hydra.help.template)
    groups = "\n".join(f"{g}: {', '.join(group_options(g))}" for g in sorted(GROUPS)) + "\n"
    task = OmegaConf.to_container(cfg, resolve=False)
    task.pop("hydra", None)  # type: ignore[union-attr]
    return template.replace("$APP_CONFIG_GROUPS", groups).replace("$CONFIG", OmegaConf.to_yaml(task))
