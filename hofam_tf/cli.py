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
            _fail(str(err))
        except OSError as err:  # unwritable output folder, full disk, ...
            _fail(os_error_message(err))
        except Exception as err:  # noqa: BLE001 - TensorFlow's I/O errors, by class name below
            if type(err).__name__ in _TF_IO_ERRORS:
                _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
            raise
        sys.exit(code or 0)

    return wrapper


def os_error_message(err: OSError) -> str:
    """One line for an OSError: the path and what is wrong; a full disk names the folder."""
    import errno
    from pathlib import Path

    where = err.filename or ""
    if err.errno == errno.ENOSPC and where:
        return f"{Path(where).parent}: no space left on device while writing {Path(where).name}"
    return f"{where}: {err.strerror or err}" if where else str(err)


# tf.errors classes that mean bad input or an unusable path, not a bug in this program
_TF_IO_ERRORS = {"PermissionDeniedError", "NotFoundError", "DataLossError", "FailedPreconditionError",
                 "AlreadyExistsError", "ResourceExhaustedError"}


def _fail(message: str) -> None:
    from hofam_tf.messages import error_line

    error_line(message)
    sys.exit(2)


HELP_ARGS = ("help", "helpshort", "h", "?")


def _asks_for_help(argv: list[str]) -> bool:
    return any(a.startswith("-") and a.lstrip("-").split("=")[0] in HELP_ARGS for a in argv[1:])


def grouped_help(title: str, groups: dict[str, list[str]], flag_values=None) -> str:
    """The usage text of the flags ``groups`` names (group title -> flag names), in that order:
    each flag with its help and default, as absl prints them."""
    from absl import flags

    fv = flag_values or flags.FLAGS
    lines = [title]
    for group, names in groups.items():
        lines.append(f"\n{group}:")
        for name in names:
            flag = fv[name]
            lines.append(f"  --{name}: {flag.help}")
            lines.append(f"    (default: {flag.default_as_str or 'none'})")
    return "\n".join(lines) + "\n"


def parse_flags(argv: list[str], phase_help: Callable[[list[str]], str] | None = None) -> list[str]:
    """absl flag parsing with this project's conventions: a bad flag or value is one ``error:``
    line and exit code 2 (absl's own parser exits 1); ``--help`` prints the usage and exits 0.
    ``phase_help(argv)``, when given, supplies the text of ``--help`` (``--helpfull`` keeps
    absl's list of every flag)."""
    from absl import flags

    if phase_help is not None and _asks_for_help(argv):
        print(phase_help(argv), end="")
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        _fail(f"{err} (pass --help for the flags)")
    except SystemExit:  # absl's --help / --helpfull exit 1 after printing the usage
        if any(a.lstrip("-").split("=")[0] in ("help", "helpfull", "helpshort", "h", "?") for a in argv[1:]):
            sys.exit(0)
        raise


def run_tool(define_flags: Callable[[], None], main: Callable[[list], int | None]) -> None:
    """Entry point of a data_prep tool: define its flags (only when it runs), then run ``main``."""
    from absl import app

    define_flags()
    app.run(guarded(main), flags_parser=parse_flags)
