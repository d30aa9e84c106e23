"""Components chosen by name from config, with their arguments (``{name: neural_ndcg, args: {k: 10}}``):
looked up in the package's registry (``ranking.losses.LOSSES``, ``visual.losses.LOSSES``) and bound to
their arguments, or a ConfigError naming the key, before any training starts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from retrieval.config import ConfigError


def resolve(
    name: str, args: Mapping[str, Any], registry: Mapping[str, Callable[..., Any]], key: str
) -> Callable[..., Any]:
    """``registry[name]`` with ``args`` bound as keyword arguments.

    Raises:
        ConfigError: ``name`` is not in the registry, or the function takes no argument of that name.
    """
    if name not in registry:
        raise ConfigError(f"{key}.name: unknown {name!r}; choose one of {', '.join(sorted(registry))}")
    fn = registry[name]
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{key}.args: {name} takes no {', '.join(unknown)} (it takes {', '.join(accepted)})"
        )
    return functools.partial(fn, **args)
