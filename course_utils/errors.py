"""User-facing errors: one line, naming the valid choices, exit code 2.

Everything a person can get wrong (a profile, a week, a parameter, a model path, a device) is refused
with :class:`CourseError`. Command-line faces catch it in :func:`main_guard` and print one line
instead of a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

EXIT_USAGE = 2


class CourseError(Exception):
    """A mistake in the user's input, reported as one line (see :func:`main_guard`)."""


def check_choice(kind: str, value: Any, valid: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``valid``; else raise a one-line :class:`CourseError`.

    >>> check_choice("profile", "offline", ["offline", "gpu"])
    'offline'
    """
    valid = list(valid)
    if value not in valid:
        raise CourseError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(map(str, valid))}")
    return value


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with :data:`EXIT_USAGE`."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def main_guard(main: Callable[..., int | None]) -> Callable[..., int | None]:
    """Wrap a command-line ``main`` so a :class:`CourseError` becomes one line and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int | None:
        try:
            return main(*args, **kwargs)
        except CourseError as err:
            fail(str(err))

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``error: …``) and exit code 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse hook
        fail(f"{self.prog}: {message} (see --help)")

    def parse_strict(self, argv=None) -> argparse.Namespace:
        """Parse ``argv``; an unknown option is one line naming the valid ones (argparse would only say
        "unrecognized arguments")."""
        args, unknown = self.parse_known_args(argv)
        if unknown:
            parser = self  # the subcommand's parser, when there is one: its options are those to name
            for action in self._actions:
                chosen = getattr(args, action.dest, None)
                if isinstance(action, argparse._SubParsersAction) and chosen in action.choices:
                    parser = action.choices[chosen]
            valid = [action.option_strings[0] for action in parser._actions if action.option_strings]
            spellings = [name for action in parser._actions for name in action.option_strings if name.startswith("--")]
            guess = suggest(unknown[0].split("=", 1)[0], spellings)
            hint = f" (did you mean {guess}?)" if guess else ""
            raise CourseError(f"unknown option {unknown[0]!r}; valid options: {', '.join(valid)}{hint}")
        return args


def suggest(word: str, valid: Iterable[str]) -> str | None:
    """The one of ``valid`` that ``word`` most likely meant: one naming it whole (``--steps`` →
    ``--max-steps``), else the closest spelling (``--rnak`` → ``--rank``), else ``None``."""
    valid = list(valid)
    bare = word.lstrip("-").replace("-", "_").lower()
    if not bare:
        return None
    named = [v for v in valid if bare in v.lstrip("-").replace("-", "_").lower()]
    if named:
        return min(named, key=len)
    close = difflib.get_close_matches(word, valid, n=1, cutoff=0.75)
    return close[0] if close else None
