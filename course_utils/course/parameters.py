"""A notebook parameter's type and range, read from its parameters cell, so that a bad ``-p`` value is refused before
any kernel starts.

The type is the default's (an ``int`` default takes whole numbers, a ``float`` one any number, a list the element
type of its default's first element, ``None`` anything). The range, where a parameter has one, opens its trailing
comment in interval notation, for a number or for every number in a list::

    noise_levels = [250, 500, 750]  # [0, 999] timesteps shown in the forward process
    blur_sigma = 1.0  # (0, ∞) Gaussian blur std, in pixels
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from course_utils.errors import CourseError

__all__ = ["Interval", "Parameter", "check_value"]

_BOUND = r"-?∞|-?inf|[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?"
INTERVAL = re.compile(rf"^\s*([\[(])\s*({_BOUND})\s*,\s*({_BOUND})\s*([\])])", re.IGNORECASE)


def _bound(text: str) -> float:
    return float(text.replace("∞", "inf"))


@dataclass(frozen=True)
class Interval:
    """``[low, high]``, ``(low, high)`` or half-open: where a parameter's numbers must lie."""

    low: float
    high: float
    closed_low: bool = True
    closed_high: bool = True

    @classmethod
    def parse(cls, text: str) -> tuple[Interval | None, str]:
        """The interval opening ``text`` (a parameter's comment) and the rest of the text; ``None`` if none opens it."""
        match = INTERVAL.match(text)
        if not match:
            return None, text.strip()
        interval = cls(_bound(match[2]), _bound(match[3]), match[1] == "[", match[4] == "]")
        return interval, text[match.end() :].strip()

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.closed_low else value > self.low
        below = value <= self.high if self.closed_high else value < self.high
        return above and below

    def __str__(self) -> str:
        def show(v: float) -> str:
            return ("∞" if v > 0 else "-∞") if math.isinf(v) else f"{v:g}"

        left, right = "[" if self.closed_low else "(", "]" if self.closed_high else ")"
        return f"{left}{show(self.low)}, {show(self.high)}{right}"


@dataclass(frozen=True)
class Parameter:
    """One parameter of a notebook: its name, default value, range (if declared) and what it is for."""

    name: str
    default: Any
    interval: Interval | None
    help: str

    @classmethod
    def from_papermill(cls, info: dict[str, Any]) -> Parameter:
        """From one entry of ``papermill.inspect_notebook`` (``name``, ``default`` as source text, ``help``)."""
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):  # an expression, not a literal: no type to check against
            default = None
        interval, text = Interval.parse(info.get("help") or "")
        return cls(info["name"], default, interval, text)


def _kind(template: Any, *, plural: bool = False) -> str:
    """What a value must be to stand where ``template`` stands (``""``: anything)."""
    kinds = [
        (bool, "True or False", "booleans"),
        (int, "a whole number", "whole numbers"),
        (float, "a number", "numbers"),
        (str, "a string", "strings"),
        (list, "a list", "lists"),
        (dict, "a dict", "dicts"),
    ]
    for kind, one, many in kinds:
        if isinstance(template, kind):
            return many if plural else one
    return ""


def _fits(value: Any, template: Any) -> bool:
    if template is None:
        return True
    if isinstance(template, bool):
        return isinstance(value, bool)
    if isinstance(template, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(template, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(template, list):
        return isinstance(value, list) and (not template or all(_fits(v, template[0]) for v in value))
    return isinstance(value, type(template))


def _numbers(value: Any) -> list[float]:
    """Every number in ``value`` (a number, or lists of them)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def check_value(parameter: Parameter, value: Any, *, where: str) -> None:
    """Refuse ``value`` for ``parameter`` (of the notebook ``where``) if its type or a number in it does not fit."""
    about = f" ({parameter.help})" if parameter.help else ""
    if not _fits(value, parameter.default):
        template = parameter.default[0] if isinstance(parameter.default, list) and parameter.default else None
        inner = f" of {_kind(template, plural=True)}" if template is not None else ""
        raise CourseError(
            f"-p {parameter.name}={value!r}: {where} expects {_kind(parameter.default)}{inner},"
            f" like its default {parameter.default!r}{about}"
        )
    if parameter.interval is not None:
        outside = [n for n in _numbers(value) if n not in parameter.interval]
        if outside:
            raise CourseError(
                f"-p {parameter.name}={value!r}: {outside[0]:g} lies outside {parameter.interval}, the range {where}"
                f" allows{about}"
            )
