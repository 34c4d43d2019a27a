"""The sweep runner: runs in worker processes (or in this process), resumable, seed-major; see common.sweep."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import json
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from common.errors import InputError, describe
from common.io.atomic import atomic_path, save_json

METRICS, RUN, ERROR, LOG = "metrics.json", "run.json", "error.txt", "train.log"
_STOP = None  # in a worker: the parent's stop event (Ctrl-C, or a run's bad input)
_RUNNING = False  # in a worker: whether a run is in progress (Ctrl-C interrupts a run, not an idle worker)


def _plain(params: Any) -> Any:
    """``params`` as JSON data (tuples -> lists, paths and other objects -> str), as stored in run.json."""
    return json.loads(json.dumps(params, sort_keys=True,
                                 default=lambda o: asdict(o) if is_dataclass(o) else str(o)))


@dataclass(frozen=True)
class Run:
    """One run: a configuration's name, a seed, optionally a number of labelled samples n, and its settings.

    ``params`` (picklable, JSON-able) is what the run function needs and what makes the run this run: its hash is
    stored with the result, and a finished run is reused only for equal params."""

    config: str
    seed: int
    n: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.config, *([f"n{self.n}"] if self.n is not None else []), f"seed{self.seed}")

    @property
    def label(self) -> str:
        return " / ".join([self.config, *([f"n={self.n}"] if self.n is not None else []), f"seed {self.seed}"])

    def identity(self) -> dict:
        params = _plain(dict(self.params))
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        return {"config": self.config, "seed": self.seed, "n": self.n, "params": params, "params_hash": digest}


@dataclass
class Result:
    """What became of a run: status "ok" (trained now), "reused" (finished earlier), "failed" or "cancelled"."""

    run: Run
    out_dir: Path
    status: str
    metrics: dict | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "reused")


def grid(configs: Mapping[str, Mapping] | Sequence[str], seeds: Iterable[int], ns: Iterable[int] | None = None,
         params: Mapping | None = None) -> list[Run]:
    """Every (config, n, seed), seed-major: each configuration's params are ``params`` updated by its own."""
    configs = configs if isinstance(configs, Mapping) else {name: {} for name in configs}
    return [Run(name, int(seed), n, {**(params or {}), **own}) for seed in seeds for name, own in configs.items()
            for n in (list(ns) if ns is not None else [None])]


def finished(run: Run, out_dir: Path) -> dict | None:
    """The metrics of ``run`` if ``out_dir`` holds it finished; InputError if it holds the run with other settings."""
    if not ((out_dir / RUN).exists() and (out_dir / METRICS).exists()):
        return None
    stored, now = json.loads((out_dir / RUN).read_text()), run.identity()
    if stored.get("params_hash") != now["params_hash"] or any(stored.get(k) != now[k] for k in ("config", "seed",
                                                                                                 "n")):
        old, new = stored.get("params", {}), now["params"]
        diff = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), None)
        what = f"{diff} = {old.get(diff)!r} there, {new.get(diff)!r} now" if diff else "another run identity"
        raise InputError(f"finished earlier with other settings ({what})", path=out_dir,
                         hint="use another --out, or delete that folder to run it again")
    return json.loads((out_dir / METRICS).read_text())


class _Portable:
    """``fn`` by module, file and name (partial arguments pickled apart), so a worker finds it again even where the
    module was loaded from a file rather than imported (a script under a digit-named folder)."""

    def __init__(self, fn: Callable):
        args, keywords = (), {}
        if isinstance(fn, functools.partial):
            fn, args, keywords = fn.func, fn.args, dict(fn.keywords)
        if "<" in fn.__qualname__:
            raise TypeError(f"sweep needs a module-level function (workers get it by name), not {fn.__qualname__}")
        self.module, self.name = fn.__module__, fn.__qualname__
        code = getattr(fn, "__code__", None)  # a module loaded by path need not be in sys.modules
        self.file = getattr(sys.modules.get(self.module), "__file__", None) or getattr(code, "co_filename", None)
        self.partial = pickle.dumps((args, keywords))  # unpickled after the module is loaded: its types may be there
        self.local = functools.partial(fn, *args, **keywords)  # in this process: the function itself (monkeypatched)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "local"}

    def resolve(self) -> Callable:
        if "local" in self.__dict__:
            return self.local
        module = sys.modules.get(self.module)
        if module is None:
            try:
                module = importlib.import_module(self.module)
            except ImportError:
                if self.file is None:
                    raise
                spec = importlib.util.spec_from_file_location(self.module, self.file)
                module = sys.modules[self.module] = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
        fn = functools.reduce(getattr, self.name.split("."), module)
        args, keywords = pickle.loads(self.partial)
        return functools.partial(fn, *args, **keywords)


@contextlib.contextmanager
def _torch_threads(threads: int):
    """``threads`` torch CPU threads inside (0: as they are); torch reads OMP_NUM_THREADS if imported later."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if threads and torch is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads and torch is not None:
            torch.set_num_threads(before)


@contextlib.contextmanager
def _run_output(out_dir: Path, log: bool):
    """In a worker: the run's stdout and stderr appended to its train.log (the parent prints a line a run)."""
    if not log:
        yield
        return
    with open(out_dir / LOG, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C in a worker (from the terminal, or from the parent): end the run in progress once; an idle worker
    waits for the parent to shut the pool down (a KeyboardInterrupt there prints tracebacks of the pool's queue)."""
    global _RUNNING
    if _RUNNING:
        _RUNNING = False
        raise KeyboardInterrupt


def _init_worker(threads: int, stop) -> None:
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, _on_interrupt)
    os.environ["TQDM_DISABLE"] = "1"  # no progress bars in train.log (common.engine honours it)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def _in_worker(fn: _Portable, run: Run, out_dir: Path, threads: int) -> Result:
    """:func:`_execute` in a pool worker: output to the run's train.log; Ctrl-C or a stopped sweep cancel it."""
    global _RUNNING
    if _STOP is not None and _STOP.is_set():
        return Result(run, out_dir, "cancelled")
    _RUNNING = True
    try:
        return _execute(fn, run, out_dir, threads, log=True)
    except KeyboardInterrupt:  # the parent stops the sweep; what the run wrote atomically is whole
        return Result(run, out_dir, "cancelled")
    finally:
        _RUNNING = False


def _execute(fn: _Portable, run: Run, out_dir: Path, threads: int, log: bool) -> Result:
    """Run ``fn(run, out_dir)`` and store its metrics; an exception fails this run only (bad input: every run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN).unlink(missing_ok=True)  # not finished until it is written again
    t0 = time.perf_counter()
    with _run_output(out_dir, log), _torch_threads(threads):
        try:
            metrics = fn.resolve()(run, out_dir)
            if not isinstance(metrics, Mapping):
                raise TypeError(f"the run function returned {type(metrics).__name__}, not a dict of metrics")
            save_json(out_dir / METRICS, dict(metrics))
        except InputError:
            raise
        except Exception as exc:
            text = traceback.format_exc()
            if log:
                print(text, file=sys.stderr, flush=True)
            with atomic_path(out_dir / ERROR) as tmp:
                tmp.write_text(text)
            return Result(run, out_dir, "failed", error=describe(exc), seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    save_json(out_dir / RUN, {**run.identity(), "seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d")})
    (out_dir / ERROR).unlink(missing_ok=True)
    return Result(run, out_dir, "ok", dict(metrics), seconds=seconds)


def _describe(metrics: dict) -> str:
    shown = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)][:3]
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown)


def sweep(runs: Sequence[Run], fn: Callable[[Run, Path], dict], out: str | os.PathLike, *, jobs: int = 1,
          threads: int = 0, resume: bool = False, describe_metrics: Callable[[dict], str] | None = None,
          ) -> list[Result]:
    """Train every run and return one :class:`Result` per run, in the order given; runs start seed-major.

    ``jobs`` > 1: that many spawned worker processes, each with ``threads`` torch threads (0: cores // jobs), no
    progress bars and its output in the run's train.log; ``jobs`` = 1 runs in this process. ``resume``: a run that
    finished with the same params is reused, one that finished with other params is refused (InputError naming
    its folder, before anything trains); without it every run trains again. A run that raises is recorded
    (``error.txt`` in its folder) and the others go on, except :class:`InputError` (bad input, the same for every
    run), which stops the sweep. Ctrl-C stops the workers; results are written atomically, so none is half-written.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    folders = [r.folder for r in runs]
    bad = next((r.config for r in runs if not r.config or Path(r.config).name != r.config or r.config == ".."), None)
    if bad is not None or len(set(folders)) != len(folders):
        raise ValueError(f"runs need distinct (config, n, seed) and configs usable as folder names, got {bad!r}")
    order = sorted(range(len(runs)), key=lambda i: runs[i].seed)  # stable: seed 0 of every config first
    results: dict[int, Result] = {}
    for i in order:
        metrics = finished(runs[i], out / runs[i].folder) if resume else None
        if metrics is not None:
            results[i] = Result(runs[i], out / runs[i].folder, "reused", metrics)
    todo = [i for i in order if i not in results]
    portable, threads = _Portable(fn), threads or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0)
    bar = tqdm(total=len(runs), initial=len(results), desc="runs", unit="run", dynamic_ncols=True)
    if results:
        tqdm.write(f"{len(results)} of {len(runs)} runs finished earlier under {out}: reused", file=sys.stdout)

    def report(i: int, res: Result) -> None:
        results[i] = res
        bar.update()
        if res.ok:
            line = f"{res.run.label}: {(describe_metrics or _describe)(res.metrics)} ({res.seconds:.0f} s)"
        else:
            line = f"{res.run.label} failed: {res.out_dir}: {res.error} (traceback in {res.out_dir / ERROR})"
        tqdm.write(f"[{len(results)}/{len(runs)}] {line}", file=sys.stdout)

    try:
        if jobs <= 1:
            for i in todo:
                report(i, _execute(portable, runs[i], out / runs[i].folder, threads, log=False))
        elif todo:
            _run_pool(portable, [(i, runs[i], out / runs[i].folder) for i in todo], jobs, threads, report)
    finally:
        bar.close()
    return [results[i] for i in range(len(runs))]


def _run_pool(portable: _Portable, work: list, jobs: int, threads: int, report: Callable) -> None:
    import concurrent.futures

    from tqdm.auto import tqdm

    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    stop = ctx.Event()
    tqdm.write(f"{len(work)} runs, {jobs} at a time, {threads} CPU thread(s) each; logs in each run's {LOG}",
               file=sys.stdout)
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=ctx,
                                                  initializer=_init_worker, initargs=(threads, stop))
    futures = {pool.submit(_in_worker, portable, run, out_dir, threads): i for i, run, out_dir in work}
    try:
        for future in concurrent.futures.as_completed(futures):
            res = future.result()  # InputError or a broken worker: raised here, and the sweep stops
            if res.status != "cancelled":
                report(futures[future], res)
    except BaseException:
        stop.set()  # queued runs return at once
        for future in futures:
            future.cancel()
        for child in multiprocessing.active_children():  # the pool's workers: unwind the runs in progress
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGINT)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
