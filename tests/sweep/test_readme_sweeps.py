"""The README's "Sweeps" commands compose as written (their runs are minutes long: `make sweep-demo` runs one)."""

from __future__ import annotations

import shlex

import pytest
from conftest import REPO, compose


def _commands() -> list[list[str]]:
    section = (REPO / "README.md").read_text().split("### Sweeps: grid, Optuna", 1)[1].split("```bash", 1)[1]
    block = section.split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line.split("#", 1)[0] if "<" in line else line)[1:] for line in block.splitlines()
            if line.startswith("flexseg ")]


def _one_job(args: list[str]) -> list[str]:
    """The overrides of the sweep's first job: `a,b` -> `a`, `range(5)` -> 0, `<run id>` placeholders kept out."""
    out = []
    for arg in args:
        if arg == "-m" or "<" in arg:
            continue
        key, _, value = arg.partition("=")
        if value.startswith("range("):
            value = value[len("range("):].split(",")[0].rstrip(")") if "," in value else "0"
        elif "," in value and "(" not in value:
            value = value.split(",")[0]
        out.append(f"{key}={value}")
    return out


def test_the_readme_lists_every_kind_of_sweep() -> None:
    text = " ".join(" ".join(c) for c in _commands())
    for piece in ("hparams_search=demo_optuna", "hydra/launcher=joblib", "hydra/launcher=slurm",
                  "hydra/launcher=submitit_local", "dataset.fold=range(5)", "ckpt=runs:/"):
        assert piece in text


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a)[:60])
def test_each_readme_sweep_command_composes(args: list[str]) -> None:
    overrides = _one_job(args)
    task = [o for o in overrides if not o.startswith(("hydra", "dataset.root=/data"))]
    cfg = compose(task)
    for override in task:
        key, value = override.split("=", 1)
        if "." in key and key.split(".")[0] in ("train", "dataset", "model"):
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            assert str(getattr(node, "value", node)) == value


def test_the_slurm_preset_is_submitits_slurm_launcher(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import run_cli

    out = run_cli(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"], cwd=tmp_path).stdout
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in out
    assert "partition: gpu" in out and "cpus_per_task: 8" in out


def _values(dist) -> list:  # type: ignore[no-untyped-def]
    """The values of a distribution worth composing: every choice, both ends of a range."""
    return list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]


@pytest.mark.parametrize("search", ["demo_optuna", "unet_optuna"])
def test_every_value_of_a_search_space_is_valid_for_every_experiment(search: str) -> None:
    """A trial value that no experiment can train with would only show up as failed trials on the user's data."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from flexseg.config.store import EXPERIMENTS_DIR, GROUPS, group_options, register_configs
    from flexseg.config.validation import validate_config
    from flexseg.sweep.space import parse_space

    params = OmegaConf.load(REPO / "conf" / "hparams_search" / f"{search}.yaml").hydra.sweeper.params
    space = parse_space({k: str(v) for k, v in params.items()})
    experiments = ["demo"] if search == "demo_optuna" else sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        base = {e: hydra_compose("config", [f"experiment={e}", f"hparams_search={search}", "dataset.root=/data/x"])
                for e in experiments}
    for experiment, dcfg in base.items():
        for key, dist in space.items():
            for value in _values(dist):
                if key in GROUPS:  # a group choice: an option of that group
                    assert value in group_options(key), (key, value)
                    continue
                cfg = OmegaConf.merge(dcfg, OmegaConf.from_dotlist([f"{key}={value}"]))
                validate_config(OmegaConf.to_object(cfg))  # raises on an invalid combination
