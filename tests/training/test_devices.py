"""What `train.precision=auto` and `train.strategy=auto` pick, from the CPU flags, GPUs and environment."""

from __future__ import annotations

import os

import pytest

from flexseg.config.choices import Precision, Strategy
from flexseg.training.devices import (
    CpuInfo, GpuInfo, auto_precision, auto_strategy, parse_cpuinfo, tensorflow_env_defaults,
)

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu
"""
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
INTEL, AMD = CpuInfo("xeon", 2, frozenset({"avx512f", "amx_bf16"})), CpuInfo("epyc", 2, frozenset({"avx2"}))


def test_cpuinfo_gives_the_model_and_the_speed_flags_of_the_first_processor() -> None:
    assert parse_cpuinfo(SAPPHIRE_RAPIDS) == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
        frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
    )
    assert parse_cpuinfo(EPYC) == ("AMD EPYC 7B13", frozenset({"avx2"}))


@pytest.mark.parametrize(("cpu", "gpus", "expected"), [
    (INTEL, [], Precision.mixed_bfloat16),  # AMX-BF16: bf16 matrix units
    (AMD, [], Precision.float32),  # no bf16 units: bf16 would be emulated
    (AMD, [GpuInfo("A100", (8, 0))], Precision.mixed_bfloat16),
    (AMD, [GpuInfo("H100", (9, 0)), GpuInfo("L4", (8, 9))], Precision.mixed_bfloat16),
    (INTEL, [GpuInfo("V100", (7, 0))], Precision.mixed_float16),  # tensor cores without bf16: loss scaling
    (AMD, [GpuInfo("A100", (8, 0)), GpuInfo("T4", (7, 5))], Precision.mixed_float16),  # the weakest decides
    (AMD, [GpuInfo("P100", (6, 0))], Precision.float32),
    (AMD, [GpuInfo("unknown", None)], Precision.float32),
])
def test_auto_precision_follows_the_hardware(cpu, gpus, expected) -> None:
    assert auto_precision(cpu, gpus) == expected


@pytest.mark.parametrize(("gpus", "env", "expected"), [
    (0, {}, Strategy.none),
    (1, {}, Strategy.none),
    (2, {}, Strategy.mirrored),
    (0, {"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}'},
     Strategy.multi_worker),
    (2, {"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}'},
     Strategy.mirrored),  # a one-task cluster is no cluster
    (1, {"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, Strategy.multi_worker),
    (4, {"SLURM_STEP_NUM_TASKS": "1"}, Strategy.mirrored),
    (0, {"SLURM_NTASKS": "4"}, Strategy.none),  # an sbatch shell, not an srun step: its tasks are not started
    (0, {"TF_CONFIG": "not json"}, Strategy.none),
])
def test_auto_strategy_follows_gpus_and_cluster_environment(gpus, env, expected) -> None:
    strategy, why = auto_strategy(gpus, env)
    assert strategy == expected and why


@pytest.mark.parametrize(("machine", "expected"), [
    ("x86_64", {"TF_ENABLE_ONEDNN_OPTS": "1"}),  # TensorFlow leaves oneDNN off on AVX2 CPUs: 2.3x slower training
    ("AMD64", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("arm64", {}),
    ("aarch64", {}),
])
def test_tensorflow_loads_with_onednn_on_x86(machine, expected) -> None:
    assert tensorflow_env_defaults(machine) == expected


def test_the_cli_sets_the_tensorflow_env_but_keeps_the_users_choice(monkeypatch, capsys) -> None:
    import platform

    from flexseg.cli import main

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr("sys.argv", ["flexseg", "--help"])
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    main()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    main()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert "flexseg" in capsys.readouterr().out
