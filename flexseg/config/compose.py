"""The config of a command line, composed and validated before Hydra runs it (Hydra makes the run dir first).

`check_command(argv)` composes as `flexseg`'s Hydra entry point does (the same search path,
`--config-dir` included), turns the tree into the typed `Config` and validates it
(`flexseg.config.validation.validate_config`). Every problem becomes a one-paragraph `FlexsegError`
naming the key (`config_error_message`), so a bad value stops the CLI with exit 2 before anything is
written: no outputs/ folder, no MLflow store. Imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence

from omegaconf import OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from flexseg.config.schemas import Config
from flexseg.config.store import CONF_DIR
from flexseg.config.validation import validate_config
from flexseg.errors import FlexsegError

MAX_MESSAGE = 600  # characters of Hydra's / OmegaConf's own text kept in a message


def missing_value_message(key: str) -> str:
    """The message of a `???` value left unset."""
    where = " (the folder holding train/, valid/ and test/)" if key == "dataset.root" else ""
    return f"{key} has no value: add {key}=VALUE{where} to the command, or set it in your YAML."


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines()]
    kept = [line for line in lines if line and not line.startswith(("full_key:", "reference_type", "object_type",
                                                                     "See https://hydra.cc", "^"))]
    joined = " ".join(kept)
    return joined if len(joined) <= MAX_MESSAGE else joined[: MAX_MESSAGE - 3] + "..."


def config_error_message(err: Exception, overrides: Sequence[str] = ()) -> str:
    """One paragraph for an error of Hydra's composition or OmegaConf's conversion, naming the key (or, for an
    error that names none, the command's overrides)."""
    from hydra.errors import HydraException, OverrideParseException

    if isinstance(err, OverrideParseException):
        reason = _one_line(err.message).split(": ", 1)[0]
        return (f"Cannot read the override '{err.override}' ({reason}). Write KEY=VALUE; quote a value with spaces "
                "or special characters: KEY='some value'.")
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else None
    omega = err if isinstance(err, OmegaConfBaseException) else cause
    key = getattr(omega, "full_key", None) or ""
    if isinstance(omega, MissingMandatoryValue) and key:
        return missing_value_message(key)
    text = _one_line(err) if cause is None else f"{_one_line(err)}: {_one_line(cause)}"
    if not key and not isinstance(err, (HydraException, OmegaConfBaseException)):  # e.g. OverflowError, ValueError
        named = re.search(r"full_key: (\S+)", str(err))  # OmegaConf adds it to the text of the errors it passes on
        key = named.group(1) if named else f"the overrides {' '.join(overrides)}"
    if key and key not in text:
        text = f"{key}: {text}"
    return text.rstrip(".") + ". `flexseg --help` shows every key with its value."


def _hydra(config_dir: Optional[str]):  # type: ignore[no-untyped-def]
    """Hydra's composer with the search path of `flexseg`'s entry point (and `--config-dir`)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()  # the CLI composes before Hydra's entry point sets it up again

    search_path = create_automatic_config_search_path(None, None, str(CONF_DIR))
    if config_dir is not None:
        folder = os.path.abspath(config_dir)
        if not os.path.isdir(folder):
            raise FlexsegError(f"--config-dir {config_dir}: no such folder; give the folder holding your "
                               "dataset/, model/ or experiment/ YAML files.")
        search_path.prepend(provider="command-line", path=f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    return Hydra.create_main_hydra2(task_name="flexseg", config_search_path=search_path)


def check_command(argv: list[str]) -> Optional[Config]:
    """Compose and validate the config `flexseg ARGV` would run; None when Hydra alone can (multirun, help, ...).

    With `--cfg` only composition is checked (the config is printed even when a cross-field check fails).

    Raises:
        FlexsegError: naming the override or key at fault.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException, OverrideParseException
    from hydra.types import RunMode

    args, _ = get_args_parser().parse_known_args(argv)
    if (args.multirun or args.help or args.hydra_help or args.info or args.shell_completion or args.config_path
            or args.config_name or args.experimental_rerun):
        return None
    try:
        hydra = _hydra(args.config_dir)
        try:
            dcfg = hydra.compose_config("config", args.overrides, run_mode=RunMode.RUN)
        except HydraException as err:
            if not isinstance(err, OverrideParseException) and "--multirun" in str(err) and \
                    hydra.get_mode("config", args.overrides) == RunMode.MULTIRUN:
                return None  # `hydra.mode: MULTIRUN` in the config: a sweep after all
            raise
        if args.cfg:
            return None
        HydraConfig.instance().set_config(dcfg)  # `${hydra:...}` in a user's YAML resolves as in the run
        with open_dict(dcfg):
            del dcfg["hydra"]
        cfg: Config = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, OverflowError, KeyError, IndexError) as err:
        # OmegaConf lets some conversion errors out as they are (a huge int for a float, `list.key=...`)
        raise FlexsegError(config_error_message(err, args.overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    return validate_config(cfg)
