"""One error type for bad user input, and the guard that turns it into one line on stderr.

Scripts wrap ``main`` with :func:`cli_main` so that a missing file, a corrupt image or a wrong
checkpoint ends with ``error: <what> -- <fix>`` and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

EXIT_BAD_INPUT = 2
# A library's own message is quoted up to this many characters (pydicom's list of missing decoders fits).
LIBRARY_MESSAGE_LIMIT = 300
# Safety net for any message: the hint after it must stay readable on one terminal line or two.
MESSAGE_LIMIT = 1000


def one_line(text: Any, limit: int | None = None) -> str:
    """``text`` as one line: each line's whitespace collapsed, lines joined by "; " (by a space after ":" or ".").

    Multi-line library messages (pydicom lists its decoders one per line, nibabel adds "\\n - could the file be
    damaged?") so read as one sentence. Longer than ``limit`` characters: cut at a word and ended with "...".
    """
    out = ""
    for line in str(text).splitlines():
        part = " ".join(line.split())
        if not part:
            continue
        if out:
            part = part.removeprefix("- ")  # bullets of continuation lines
            out += (" " if out.endswith((":", ".", ",", ";", "(")) else "; ") + part
        else:
            out = part
    if limit is not None and len(out) > limit:
        cut = out[: limit - 3]
        space = cut.rfind(" ")
        out = (cut[:space] if space > limit // 2 else cut).rstrip(" ;:,") + "..."
    return out


def describe(exc: BaseException, limit: int = LIBRARY_MESSAGE_LIMIT) -> str:
    """A library exception as ``"Type: message"`` on one line, its message cut to ``limit`` characters."""
    message = one_line(exc, limit)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class InputError(Exception):
    """Bad input from the user: the message names the file (or argument) and what to do.

    The text is always one line (see :func:`one_line`), however many lines a quoted library message had.
    """

    def __init__(self, message: str, path: Any = None, hint: str | None = None):
        self.path = path
        self.message = one_line(message, MESSAGE_LIMIT)
        self.hint = one_line(hint) if hint else hint
        text = f"{one_line(path)}: {self.message}" if path is not None else self.message
        if self.hint:
            text = f"{text} -- {self.hint}"
        super().__init__(text)


def cli_main(main: Callable[[Any], Any], args: Any) -> Any:
    """Run ``main(args)``; on :class:`InputError` print one line to stderr and exit with code 2."""
    try:
        return main(args)
    except InputError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        print(f"interrupted: {_after_interrupt(args)}", file=sys.stderr)
        raise SystemExit(130) from None


def _after_interrupt(args: Any) -> str:
    """What to do after Ctrl-C: resume only where a script can and a checkpoint was written."""
    out = getattr(args, "out", None)
    if not hasattr(args, "resume") or out is None:
        return "rerun the same command (a demo model in training resumes from its last epoch by itself)"
    if any(Path(out).rglob("last.pt")):
        return "rerun with --resume to continue from the last checkpoint"
    return "no checkpoint was written yet; rerun to start again"
