"""Judges by name: one class + one decorator, as for objectives.

``@register_judge("gold")`` on a :class:`~preflab.feedback.judge.Judge` subclass adds it to :data:`JUDGES`.
Configs (``online.judge``, ``eval.judge``) and the CLI find it by that name, and :func:`make_judge` builds it
with the class's :meth:`~preflab.feedback.judge.Judge.from_config` from the config's ``judge_args`` and the
run's tasks (gold-scored prompts). An unknown name is a one-line ConfigError naming the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ...errors import ConfigError
from ..judge import Judge

__all__ = ["JUDGES", "get_judge", "judge_name", "make_judge", "register_judge"]

J = TypeVar("J", bound=type[Judge])

JUDGES: dict[str, type[Judge]] = {}


def register_judge(name: str) -> Callable[[J], J]:
    """Class decorator: ``@register_judge("llm")`` makes the judge class buildable by ``name``."""

    def deco(cls: J) -> J:
        if name in JUDGES:
            raise ValueError(f"judge '{name}' registered twice")
        JUDGES[name] = cls
        return cls

    return deco


def get_judge(name: str, *, field: str = "judge") -> type[Judge]:
    """The judge class registered as ``name``; an unknown name is a ConfigError naming the closest one."""
    from . import gold, llm, preference_model, reward_model, simulated  # noqa: F401  (they register the built-ins)

    if name not in JUDGES:
        close = difflib.get_close_matches(name, list(JUDGES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown judge '{name}'{hint} (known: {', '.join(sorted(JUDGES))})", field=field)
    return JUDGES[name]


def judge_name(name: str) -> str:
    """``name`` if a judge is registered under it; else a ValueError (for config validators: the config
    loader adds the file, line and key) saying the closest name."""
    try:
        get_judge(name)
    except ConfigError as err:
        raise ValueError(err.message) from None
    return name


def make_judge(name: str, *, tasks: Iterable[Any] = (), **kwargs: Any) -> Judge:
    """Build the judge registered as ``name`` from its keyword arguments (a config's ``judge_args``) and
    ``tasks`` (whose gold scorers the gold and annotator judges use; other judges ignore them)."""
    cls = get_judge(name)
    try:
        return cls.from_config(tasks=list(tasks), **kwargs)
    except TypeError as exc:  # a misspelt judge_args key
        if "keyword argument" not in str(exc):
            raise
        raise ConfigError(f"judge '{name}': {exc}", field="judge_args") from None
