"""Shared plumbing for the absl entry points: turn input errors into one line and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable

from hofam_tf.errors import HOFAMInputError


def guarded(main: Callable[[list], int | None]) -> Callable[[list], None]:
    """Wraps an absl ``main(argv)`` so a HOFAMInputError prints ``error: ...`` and exits 2."""

    def wrapper(argv):
        try:
            code = main(argv)
        except HOFAMInputError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        sys.exit(code or 0)

    return wrapper


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise HOFAMInputError(f"--{name}: expected comma-separated integers, got {text!r}") from None


def run_tool(define_flags: Callable[[], None], main: Callable[[list], int | None]) -> None:
    """Entry point of a data_prep tool: define its flags (only when it runs), then run ``main``."""
    from absl import app

    define_flags()
    app.run(guarded(main))
