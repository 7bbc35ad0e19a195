"""Optimizers and learning-rate schedules by name (registries, no eval).

``build_optimizer`` takes plain arguments (the ``train.*`` values); ReduceLROnPlateau is not a
schedule here but a callback (``callbacks.reduce_lr``), because it reacts to validation values.
A schedule sets the rate every step, so it cannot be combined with that callback.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import keras

from flexseg.config.choices import LRSchedule, OptimizerName
from flexseg.errors import FlexsegError

OPTIMIZERS: dict[OptimizerName, Callable[..., keras.optimizers.Optimizer]] = {
    OptimizerName.adam: keras.optimizers.Adam,
    OptimizerName.adamw: keras.optimizers.AdamW,
    OptimizerName.sgd: keras.optimizers.SGD,
}


def build_schedule(
    name: LRSchedule | str, learning_rate: float, total_steps: int, end_learning_rate: float = 0.0, power: float = 1.0
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate (a float) or a per-step schedule from ``train.lr_schedule``.

    Args:
        name: ``constant`` | ``cosine`` (``CosineDecay`` to ``end_learning_rate``) |
            ``polynomial`` (``PolynomialDecay`` with ``power``; 1 is linear); an `LRSchedule`.
        learning_rate: Initial rate.
        total_steps: Optimizer steps of the whole training (epochs x steps per epoch).
        end_learning_rate: Rate reached at ``total_steps``.
        power: Exponent of the polynomial decay.

    Raises:
        ValueError: ``name`` is not an `LRSchedule` (the config cannot hold one).
        FlexsegError: An end rate above the initial one.
    """
    name = LRSchedule(name)
    if name == LRSchedule.constant:
        return learning_rate
    if not 0 <= end_learning_rate <= learning_rate:
        raise FlexsegError(
            f"train.end_learning_rate={end_learning_rate} must lie in [0, train.learning_rate={learning_rate}]."
        )
    steps = max(int(total_steps), 1)
    if name == LRSchedule.cosine:
        return keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=end_learning_rate / learning_rate)
    return keras.optimizers.schedules.PolynomialDecay(learning_rate, steps, end_learning_rate, power=power)


def build_optimizer(
    name: OptimizerName | str,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    clipvalue: Optional[float] = None,
    clipnorm: Optional[float] = None,
    weight_decay: Optional[float] = None,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> keras.optimizers.Optimizer:
    """An optimizer from ``train.optimizer`` and its options.

    Args:
        name: An `OptimizerName`, a key of ``OPTIMIZERS``.
        learning_rate: A float or a schedule (see ``build_schedule``).
        clipvalue: Clip every gradient element to [-clipvalue, clipvalue].
        clipnorm: Clip every gradient tensor to this L2 norm.
        weight_decay: Decoupled weight decay; None keeps the optimizer's default (AdamW 0.004,
            none for the others).
        momentum, nesterov: SGD only (other optimizers ignore them).

    Raises:
        ValueError: ``name`` is not an `OptimizerName` (the config cannot hold one).
        FlexsegError: clipvalue and clipnorm both set, or a negative value.
    """
    name = OptimizerName(name)
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if clipvalue is not None and clipnorm is not None:
        raise FlexsegError(
            f"train.clipvalue={clipvalue} and train.clipnorm={clipnorm} are both set; Keras applies only one, set one."
        )
    for key, value in (("clipvalue", clipvalue), ("clipnorm", clipnorm), ("weight_decay", weight_decay)):
        if value is not None:
            if value < 0:
                raise FlexsegError(f"train.{key}={value} must be >= 0.")
            kwargs[key] = value
    if name == OptimizerName.sgd:
        kwargs.update(momentum=momentum, nesterov=nesterov)
    return OPTIMIZERS[name](**kwargs)
