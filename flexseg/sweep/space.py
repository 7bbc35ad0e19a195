"""Search spaces in Hydra's sweep grammar -> Optuna distributions, and trial values -> overrides.

`choice(8, 16)` is categorical, `interval(0.0, 0.3)` a float range (int when both ends are ints),
`tag(log, interval(1e-5, 1e-2))` a log range, `range(2, 8, 2)` an int range with a step: the
expressions of hydra-optuna-sweeper, so existing `hparams_search` files read the same.
"""

from __future__ import annotations

import re
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException

from flexseg.errors import FlexsegError

PLAIN = re.compile(r"[A-Za-z0-9_./:+-]+")


def parse_space(expressions: dict[str, str]) -> dict[str, Any]:
    """{config key: sweep expression} -> {config key: Optuna distribution}.

    Raises:
        FlexsegError: naming the key whose expression is not a choice, interval or range.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    parser = OverridesParser.create()
    space: dict[str, Any] = {}
    for key, expr in expressions.items():
        try:
            value = parser.parse_override(f"{key}={expr}").value()
        except HydraException as err:
            raise FlexsegError(f"hydra.sweeper.params.{key}='{expr}' is not a sweep expression ({err}). "
                               "Use choice(a, b), interval(lo, hi), tag(log, interval(lo, hi)) or range(lo, hi).") from err
        if isinstance(value, ChoiceSweep):
            space[key] = CategoricalDistribution(list(value.list))
        elif isinstance(value, RangeSweep):
            step = int(value.step or 1)
            space[key] = IntDistribution(int(value.start), int(value.stop) - step, step=step)
        elif isinstance(value, IntervalSweep):
            log = "log" in (value.tags or set())
            if isinstance(value.start, int) and isinstance(value.end, int):
                space[key] = IntDistribution(value.start, value.end, log=log)
            else:
                space[key] = FloatDistribution(float(value.start), float(value.end), log=log)
        else:
            raise FlexsegError(f"hydra.sweeper.params.{key}='{expr}' is one value, not a search range; put fixed "
                               f"values on the command line ({key}={expr}) or use choice(...)/interval(...).")
    return space


def format_value(value: Any) -> str:
    """A Python value as Hydra override text: true/false, null, numbers, plain or quoted strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text if PLAIN.fullmatch(text) else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """Overrides (`key=value`) that apply one trial's values."""
    return [f"{key}={format_value(value)}" for key, value in params.items()]
