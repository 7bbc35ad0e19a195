"""The README's "Several GPUs and clusters" and "Tracking server" commands compose as written.

Running them needs GPUs, a cluster or a server (the tests in tests/modes/test_distributed_train.py and
tests/tracking/test_server.py run their local equivalents); here each must at least be a valid config
whose keys hold the values the command gives.
"""

from __future__ import annotations

import json
import shlex

import pytest
from conftest import REPO, compose


def _commands(heading: str) -> list[tuple[dict[str, str], list[str]]]:
    """(environment, flexseg arguments) of each command in the bash blocks of the section `heading`."""
    section = (REPO / "README.md").read_text().split(heading, 1)[1].split("\n### ", 1)[0]
    out = []
    for block in section.split("```bash")[1:]:
        for line in block.split("```", 1)[0].replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            env = {}
            while words and "=" in words[0] and not words[0].startswith("flexseg"):
                key, _, value = words.pop(0).partition("=")
                env[key] = value
            if words and words[0] == "flexseg":
                out.append((env, words[1:]))
    return out


SCALEOUT = _commands("### Several GPUs and clusters")
SERVER = _commands("### Tracking server")


def test_the_sections_show_each_strategy_slurm_and_sync() -> None:
    text = " ".join(" ".join(args) for _, args in SCALEOUT + SERVER)
    for piece in ("train.strategy=mirrored", "train.strategy=multi_worker", "hydra/launcher=slurm_ddp",
                  "tracking.uri=http://", "mode=sync", "sync.path="):
        assert piece in text


@pytest.mark.parametrize(("env", "args"), SCALEOUT + SERVER, ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else "")
def test_each_command_composes_with_its_values(env: dict[str, str], args: list[str]) -> None:
    if "TF_CONFIG" in env:
        assert len(json.loads(env["TF_CONFIG"])["cluster"]["worker"]) == 2
    task = [a for a in args if a != "-m" and "<" not in a and not a.startswith(("hydra", "dataset.root=/data"))]
    cfg = compose(task)
    for override in task:
        key, value = override.split("=", 1)
        if key in ("train.strategy", "tracking.uri", "mode", "sync.path"):
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            assert str(getattr(node, "value", node)) == value
