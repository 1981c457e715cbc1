"""Analysis studies (toy problems and figures from the LICA paper)."""

from __future__ import annotations

from typing import Any


def split_options(args: list[str], defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An analysis CLI's ``key=value`` arguments: those whose key is in ``defaults`` as its
    options (converted to the default's type), the rest as Hydra overrides."""
    options, overrides = dict(defaults), []
    for arg in args:
        key, _, value = arg.partition("=")
        if key in options:
            options[key] = type(defaults[key])(value)
        else:
            overrides.append(arg)
    return options, overrides
