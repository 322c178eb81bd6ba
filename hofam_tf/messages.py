"""``warning:`` and ``error:`` lines on stderr, each on a line of its own even while a progress
bar is drawn (a bar's line has no newline until the bar closes: a message printed after it would
be glued to its end)."""
from __future__ import annotations

import sys


def _bars() -> list:
    from tqdm import tqdm

    return list(getattr(tqdm, "_instances", ()) or ())


def warn(message: str) -> None:
    """A non-fatal problem, where the user sees it: open bars are cleared, the line printed on a
    line of its own, the bars redrawn below it."""
    if _bars():
        from tqdm import tqdm

        tqdm.write(f"warning: {message}", file=sys.stderr)
    else:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def error_line(message: str) -> None:
    """The one ``error:`` line of a failing command. Open bars are closed first: each ends its
    own line, so the error starts a line of its own."""
    for bar in _bars():
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a broken bar must not hide the error
            pass
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
