"""The `flexseg` command: Hydra composes the typed config, then one mode runner does the work.

No TensorFlow or MLflow import happens here at module level: `flexseg --help` and
`flexseg --cfg job` answer in about a second.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from flexseg.config.schemas import Config
from flexseg.config.compose import check_command, missing_value_message
from flexseg.config.help import fast_help_applies, render_help
from flexseg.config.store import CONF_DIR, GROUPS, check_group_option, register_configs
from flexseg.config.validation import check_override_key, validate_config
from flexseg import stopping
from flexseg.context import RunContext
from flexseg.errors import ERROR_MARKER, FlexsegError
from flexseg.sweep import job as sweep_job
from flexseg.training.devices import set_tensorflow_env

log = logging.getLogger(__name__)

MODE_MODULES = {
    "train": "train", "eval": "evaluate", "infer": "infer", "tiled": "tiled", "stats": "stats", "preview": "preview",
    "info": "info", "sync": "sync", "export": "export",
}



NO_TENSORFLOW = ("info", "sync")  # modes that run (and say so) without TensorFlow installed
INSTALL_TF = ("On Linux x86-64 the TensorFlow build is an extra: pip install -e '.[cpu]' (CPU) or "
              "pip install -e '.[cuda]' (NVIDIA GPU, CUDA from pip), or make install (it picks one)")


def check_tensorflow() -> None:
    """Stop with the install command when TensorFlow is missing (found without importing it)."""
    if importlib.util.find_spec("tensorflow") is None:
        raise FlexsegError(f"TensorFlow is not installed in {sys.prefix}. {INSTALL_TF}.")


class JobFailed(FlexsegError):
    """A job of a sweep stopped with a clear error; the sweeper records it and goes on."""


def _fail(message: str, in_sweep: bool = False, release: bool = True) -> None:
    """Say what went wrong in one paragraph and stop: exit 2, or, inside a sweep, fail only this job.

    `release=False` before any mode ran (nothing holds tf.data iterators): no garbage collection.
    """
    sys.stderr.write(f"flexseg: error: {message}\n")
    if release:
        _release_failed_frames()
    if in_sweep:
        raise JobFailed(message) from None
    sys.exit(2)


def _stopped(stop: stopping.Interrupted) -> None:
    """A signal stopped the run at a safe point: say what was kept and how to go on; exit 128 + its number."""
    sys.stderr.write(f"flexseg: {stop}\n")
    _release_failed_frames()
    sys.exit(stop.exit_code)


def _release_failed_frames() -> None:
    """Free what a failed mode held, its tf.data iterators above all, before the interpreter exits.

    The exception being handled keeps the mode's frames alive, and with them tf.data iterators
    whose map/prefetch threads are still running (`tf.numpy_function` readers need the GIL); left
    to interpreter shutdown, TensorFlow aborts ("terminate called without an active exception",
    exit 134) or hangs. Clearing those frames' locals and collecting the cycles deletes the
    iterators now, while their threads can still finish.
    """
    err, seen = sys.exc_info()[1], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            while frame is not None:  # also the callers a filtered traceback (Keras, TF) leaves out
                back = frame.f_back
                with contextlib.suppress(RuntimeError):  # a running frame: this function's own callers
                    frame.clear()
                frame = back
            tb = tb.tb_next
        err = err.__cause__ or err.__context__
    gc.collect()


def _group_values(override: Override) -> list[str]:
    """The option names a group override selects (`experiment=a`, sweeps `experiment=a,b`)."""
    if override.is_sweep_override():
        try:
            return [str(v) for v in override.sweep_string_iterator()]
        except HydraException:
            return []  # range / glob sweeps: Hydra reports what it cannot find
    value = override.value()
    if value is None:  # `experiment=null`: Hydra would fail with a traceback; `~experiment` drops a group
        return ["null"]
    return [value] if isinstance(value, str) else []


def _check_overrides(argv: list[str]) -> None:
    """Stop before Hydra runs on a misspelled `key=value` or an unknown `GROUP=NAME`.

    A misspelled key gets the closest valid key; an unknown option (`experiment=nope`) the list of
    options, those in the `--config-dir DIR` included.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    args, _ = get_args_parser().parse_known_args(argv)
    if args.hydra_help:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException:
        return  # a syntax error: Hydra reports it with its own message
    # Another search path or primary config: only Hydra knows every option then.
    other_paths = args.config_path or any(o.key_or_group == "hydra.searchpath" for o in overrides)
    config_dirs = [Path(args.config_dir)] if args.config_dir else []
    # Each zoo model has its own `model.` keys: check them against every model the command chooses.
    models = [v for o in overrides if o.key_or_group == "model" and o.package is None and not o.is_delete()
              for v in _group_values(o)] or ["flexunet"]
    for override in overrides:
        if override.type == OverrideType.CHANGE and override.package is None:
            check_override_key(override.key_or_group, models)
        if override.key_or_group in GROUPS and override.package is None and not override.is_delete() and not other_paths:
            for option in _group_values(override):
                check_group_option(override.key_or_group, option, config_dirs)


def preflight(argv: list[str]) -> None:
    """Check a command line before Hydra runs it: override keys and group options, then the composed and
    validated config (`flexseg.config.compose.check_command`). On a problem: one paragraph, exit 2.

    Hydra creates the run dir before the mode runs; this stops a bad config before anything is written.
    """
    global _registered
    try:
        _check_overrides(argv)
        if not _registered:
            register_configs()
            _registered = True
        if not fast_help_applies(argv):
            check_command(argv)
    except FlexsegError as err:
        _fail(_shorten(str(err)), release=False)


_registered = False  # `register_configs` has run in this process


def _shorten(message: str, longest: int = 120) -> str:
    """Elide the middle of every word longer than `longest` characters (a 5000-character value in a message)."""
    return " ".join(w if len(w) <= longest else f"{w[:60]}...{w[-20:]}" for w in message.split(" "))


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(dcfg: DictConfig) -> float | None:
    job = sweep_job.current_job()  # None unless this is a job of `flexseg -m`
    try:
        cfg: Config = validate_config(OmegaConf.to_object(dcfg))
        hc = HydraConfig.get()
        ctx = RunContext(
            run_dir=Path(hc.runtime.output_dir),
            overrides=job.first_varying(list(hc.overrides.task)) if job else list(hc.overrides.task),
            config_yaml=OmegaConf.to_yaml(dcfg, resolve=True),
            sweep=job,
        )
        sweep_job.begin(job)
        if cfg.mode.value not in NO_TENSORFLOW:
            check_tensorflow()
            from flexseg.tracking.server import require_server  # a server that is down stops before TF loads
            require_server(cfg.tracking.uri)
        runner = importlib.import_module(f"flexseg.modes.{MODE_MODULES[cfg.mode.value]}")
        results = runner.run(cfg, ctx)
    except FlexsegError as err:
        _fail(str(err), job is not None)
        return None
    except MissingMandatoryValue as err:  # `???` left unset, e.g. dataset.root of an imported experiment
        _fail(missing_value_message(err.full_key), job is not None)
        return None
    except Exception as err:
        # A data error raised inside a tf.data map reaches us wrapped in a TensorFlow error.
        text = str(err)
        if type(err).__module__.startswith("tensorflow") and ERROR_MARKER in text:
            _fail(text.split(ERROR_MARKER, 1)[1].split("\n", 1)[0].strip(), job is not None)
        if job is not None:  # the traceback goes to the job's log; the sweeper reports one line
            log.exception("job %d failed", job.num)
        raise
    finally:
        if job is not None:
            sweep_job.end()
    if results:
        log.info("results: %s", ", ".join(f"{k}={v:g}" if float(v).is_integer() else f"{k}={v:.4f}"
                                          for k, v in results.items()))
    # Returned for sweepers that optimise a number (Optuna and friends).
    return results.get("objective")


def main() -> None:
    """Console entry point of `flexseg` and `python -m flexseg`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_tensorflow_env()  # before any mode imports TensorFlow: oneDNN kernels on x86-64
    # `import keras` imports scikit-learn (installed for MLflow) for keras.wrappers' scikit-learn estimators,
    # which flexseg never uses: 2.7 s of every start, measured. Both treat it as optional when absent.
    sys.modules.setdefault("sklearn", None)  # type: ignore[assignment]
    preflight(sys.argv[1:])
    if fast_help_applies(sys.argv[1:]):
        try:
            text = render_help(sys.argv[1:])
        except HydraException as err:  # e.g. a value of the wrong type
            _fail(" ".join(f"{err}: {err.__cause__ or ''}".split()))
        sys.stdout.write(text + "\n")
        return
    try:
        with stopping.handle_signals():  # the first SIGINT / SIGTERM stops at a safe point (flexseg.stopping)
            _hydra_main()
    except stopping.Interrupted as stop:
        _stopped(stop)
    except ValueError as err:  # Hydra's own argument check, e.g. `-m` with `--cfg job`
        if "can be specified" not in str(err):
            raise
        _fail(f"{err}. To see one job's config, run the command without -m and with one value per key.")
