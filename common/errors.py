"""One error type for bad user input, and the guard that turns it into one line on stderr.

Scripts wrap ``main`` with :func:`cli_main` so that a missing file, a corrupt image or a wrong
checkpoint ends with ``error: <what> -- <fix>`` and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad input from the user: the message names the file (or argument) and what to do."""

    def __init__(self, message: str, path: Any = None, hint: str | None = None):
        self.path = path
        self.hint = hint
        text = f"{path}: {message}" if path is not None else message
        if hint:
            text = f"{text} -- {hint}"
        super().__init__(text)


def cli_main(main: Callable[[Any], Any], args: Any) -> Any:
    """Run ``main(args)``; on :class:`InputError` print one line to stderr and exit with code 2."""
    try:
        return main(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        print("interrupted: rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        raise SystemExit(130) from None
