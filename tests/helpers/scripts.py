"""Load or run a demo script (its folder name starts with a digit, so it is not importable by name)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script(folder: str, name: str):
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}".replace("-", "_"), ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(folder: str, name: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python <folder>/<name>.py ARGS`` from the repo root; output captured as text."""
    return subprocess.run([sys.executable, str(ROOT / folder / f"{name}.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def run_main(folder: str, name: str, *args) -> subprocess.CompletedProcess:
    """``python <folder>/<name>.py ARGS`` in this process (no torch import per case): the script's get_args and
    main through ``common.errors.cli_main``, as its ``__main__`` block runs them; exit status and output captured."""
    import contextlib
    import io

    from common.errors import cli_main

    module = load_script(folder, name)
    argv = list(map(str, args))
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main(module.main, module.get_args(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return subprocess.CompletedProcess([folder, name, *argv], code, out.getvalue(), err.getvalue())
