"""Run every registered demo on the built-in phantoms and write results/REPORT.md with tables and figures.

Each demo is a standalone script run as a subprocess (``python <script> --out results/<name> ...``);
its ``metrics.json`` and ``report.md`` are gathered into ``results/REPORT.md`` and
``results/<name>.json`` together with the exact command and its duration. A failing demo is reported
and the run goes on; the exit code is non-zero if any demo failed.

Run into the default ``--out`` (results/), it then rewrites every README's results blocks
(``<!-- results:DEMO/TABLE -->``, see common/report.py) from the tables the demos saved, and
``results/reproduce/tables.json`` with the run's durations.

Usage: python reproduce.py --quick            (every demo, CPU-sized; its duration is in README.md)
       python reproduce.py --only NAME[,NAME]  (some demos; --list shows the names)
       python reproduce.py --tables            (only rewrite the READMEs' results blocks from results/)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from common.cli import OneLineErrorParser  # noqa: E402
from common.io.atomic import atomic_path, save_json  # noqa: E402
from common.report import markdown_table, update_blocks  # noqa: E402
from common.report import write_report as write_demo_report  # noqa: E402


@dataclass
class Demo:
    script: str  # relative to the repository root
    about: str
    # Extra flags with --quick / without it; "{results}" stands for the run's results folder (another demo's output).
    quick: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)  # extra flags without it


# Each technique adds its demos here, in the order a reader would follow them.
DEMOS: dict[str, Demo] = {
    "gallery": Demo("MedicalImages/gallery.py", "imaging modalities from files that ship with the installed "
                    "packages, and the three built-in phantoms with their ground truth"),
    "interpretability-train": Demo("00_Interpretability/train.py", "DenseNet normal/abnormal classifier, MURA "
                                   "protocol, on the bone phantom"),
    "interpretability-gradcam": Demo("00_Interpretability/gradcam.py", "CAM and Grad-CAM on the four dense blocks "
                                     "of the demo model (the one train.py --quick cached)"),
    "interpretability-evaluate": Demo("00_Interpretability/evaluate.py", "explanations scored against the true "
                                      "lesion masks: pointing game, IoU, deletion/insertion"),
    "interpretability-shortcut": Demo("00_Interpretability/shortcut.py", "a classifier that learns the L/R marker "
                                      "instead of the lesion, exposed by CAM"),
    "wss-weak-labels": Demo("01_WeaklySupervised/weak_labels.py", "weak labels (eroded mask, random point, "
                            "centroid, box) drawn from the cardiac phantom's LV masks, Kervadec et al. 2019"),
    "wss-size-table": Demo("01_WeaklySupervised/train_sizeloss.py", "ENet LV segmentation from weak labels with size "
                           "constraints (Kervadec et al. 2019): the paper's ACDC rows on the cardiac phantom",
                           quick=["--table"], full=["--table"]),
    "wss-pseudolabel": Demo("01_WeaklySupervised/train_pseudolabel.py", "pseudo masks (region growing) from weak "
                            "labels -> ENet -> DenseCRF / polar graph search / GrabCut, the survey's framework",
                            quick=["--table", "--compare-sizeloss", "{results}/wss-size-table/table.json"],
                            full=["--table", "--compare-sizeloss", "{results}/wss-size-table/table.json"]),
    "wsol-localize": Demo("01_WeaklySupervised/localize.py", "lesion boxes from CAM thresholds, scored against "
                          "the true lesions"),
    "interpretability-segmentation": Demo("00_Interpretability/explain_segmentation.py", "where an LV ENet looks: "
                                          "SEG-Grad-CAM and the CAM family scored by energy inside LV + myocardium"),
    "transfer-domain": Demo("02_TransferLearning/domain_adaptation.py", "optic disc / cup across two fundus cameras: "
                            "source only, AdaBN, histogram matching, adversarial (pOSAL, DANN) vs the target oracle"),
    "active-learning": Demo("03_ActiveLearning/active_learning.py", "pool-based active learning on the bone phantom: "
                            "random, uncertainty, BALD / BatchBALD, core-set, BADGE, TypiClust ... by the labels they "
                            "need to reach 95 % of the full-pool AUROC"),
    "misc-augmentation": Demo("04_Miscellaneous/augmentation.py", "geometric / intensity (MONAI bias field, gamma) / "
                              "mixup-CutMix augmentation vs none across n: SmallCNN on bone, U-Net on the LV"),
    "misc-domain-knowledge": Demo("04_Miscellaneous/domain_knowledge.py", "clinicians' priors (one LV component, "
                                  "convexity, size, compactness, cup in disc, polar transform) vs a plain U-Net"),
    "misc-shallow": Demo("04_Miscellaneous/shallow_methods.py", "hand-crafted features + SVM / random forest vs a "
                         "CNN from scratch across n; classic unsupervised segmentation by Dice"),
    "misc-attention": Demo("04_Miscellaneous/attention.py", "squeeze-and-excitation / CBAM in a small CNN (bone) and "
                           "attention gates in a U-Net (LV) across n; attention maps vs CAM by pointing game"),
}


def get_args(argv=None):
    p = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized settings for every demo")
    p.add_argument("--only", default=None, help="comma-separated demo names to run (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "results", help="where results and REPORT.md go")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--resume", action="store_true",
                   help="keep demos that already finished ok (same mode) and rerun only the others")
    p.add_argument("--list", action="store_true", help="list the demos and exit")
    p.add_argument("--tables", action="store_true",
                   help="run nothing: rewrite the READMEs' results blocks from the results under --out")
    args = p.parse_args(argv)
    if args.only is not None:  # checked here, before anything under --out is written
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in DEMOS]
        if unknown or not names:
            what = f"unknown demo(s) {', '.join(unknown)}" if unknown else f"no demo names in {args.only!r}"
            p.error(f"argument --only: {what}; choose from {', '.join(DEMOS)}")
    return args


def _relink(markdown: str, prefix: str) -> str:
    """Make a demo's relative links (figures) relative to REPORT.md."""
    return re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({prefix}/{m.group(1)})", markdown)


def run_demo(name: str, demo: Demo, args) -> dict:
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    flags = (["--quick"] + demo.quick) if args.quick else demo.full
    results = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    flags = [f.replace("{results}", str(results)) for f in flags]  # another demo's output, e.g. a table to compare
    cmd = [sys.executable, demo.script, "--out", str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
           "--device", args.device, *flags]
    shown = "python " + " ".join(shlex.quote(c) for c in cmd[1:])
    print(f"\n=== {name}: {shown}", flush=True)
    cache_before = _demo_cache_state()
    started = time.strftime("%Y-%m-%d %H:%M")
    t0 = time.perf_counter()
    with atomic_path(out / "log.txt") as tmp, open(tmp, "w") as log:
        # progress bars stay, but refresh every few seconds so log.txt stays readable
        env = {"TQDM_MININTERVAL": "5", **os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # stream so the demo's own progress bars show
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
    seconds = time.perf_counter() - t0
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if code == 0 and metrics_file.exists() else None
    report = out / "report.md"
    summary = {"name": name, "about": demo.about, "command": shown, "quick": args.quick,
               "status": "ok" if code == 0 else f"failed ({code})",
               "seconds": round(seconds, 1), "started": started, "finished": time.strftime("%Y-%m-%d %H:%M"),
               "machine": MACHINE, "demo_model_cache": cache_before, "metrics": metrics,
               "report": _relink(report.read_text(), name) if code == 0 and report.exists() else None}
    save_json(args.out / f"{name}.json", summary)
    print(f"=== {name}: {summary['status']} in {seconds:.0f} s", flush=True)
    return summary


MACHINE = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def _demo_cache_state() -> str:
    """Whether the interpretability demo model was cached when a demo started ("empty": it may train it)."""
    from common.tasks.bone_demo import demo_path

    return "cached" if demo_path().exists() else "empty"


def write_report(summaries: list[dict], args) -> Path:
    """REPORT.md over every registered demo: this run's summaries, and earlier ones for demos not run now; and
    ``<out>/reproduce/tables.json`` (the per-demo durations and the total, for the READMEs' blocks)."""
    fresh = {s["name"]: s for s in summaries}
    for name in DEMOS:
        previous = args.out / f"{name}.json"
        if name not in fresh and previous.exists():
            fresh[name] = json.loads(previous.read_text())
    summaries = [fresh[name] for name in DEMOS if name in fresh]
    modes = sorted({"quick" if s.get("quick") else "full" for s in summaries})
    total = sum(s["seconds"] for s in summaries)
    days = sorted({s.get("finished", "unknown")[:10] for s in summaries})
    rows = [{"demo": s["name"], "status": s["status"], "minutes": s["seconds"] / 60, "mode":
             "quick" if s.get("quick") else "full", "finished": s.get("finished", "unknown"),
             "demo model at start": s.get("demo_model_cache", "unknown")} for s in summaries]
    demos = markdown_table(rows, list(rows[0]) if rows else None, digits=1, name="demos")
    machines = sorted({s.get("machine", "unknown") for s in summaries})
    totals = markdown_table([{"demos": len(summaries), "minutes": total / 60, "mode": " + ".join(modes),
                              "run on": " to ".join([days[0], days[-1]] if len(days) > 1 else days),
                              "machine": "; ".join(machines)}], digits=1, name="total")
    # the durations as tables the READMEs cite (results/reproduce/tables.json)
    write_demo_report(args.out / "reproduce", "reproduce.py: durations", [demos, totals])
    lines = ["# MIADeepSSL results", "",
             f"Made by `python reproduce.py{' --quick' if args.quick else ''}` ({' + '.join(modes)} mode). Each demo "
             "below is its own subprocess; the table says when each finished and whether the interpretability demo "
             "model was already cached when it started (the first demo to need it trains it). Demos not run in the "
             "last invocation keep their earlier result.", "", totals, "", demos]
    for s in summaries:
        lines += ["", "---", "", f"_{s['name']}: {s['about']}_ — `{s['command']}` ({s['seconds']:.0f} s)", ""]
        missing = "(no report)" if s["status"] == "ok" else f"**{s['status']}**: see {s['name']}/log.txt"
        lines.append(s["report"] or missing)
    path = args.out / "REPORT.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def readmes() -> list[Path]:
    """Every README.md of the repository that may hold results blocks."""
    skip = {".git", "runs", ".cache", "results", "node_modules"}
    return sorted(p for p in ROOT.rglob("README.md") if not skip & set(p.relative_to(ROOT).parts[:-1]))


def update_readmes(results: Path) -> list[Path]:
    """Rewrite every README's results blocks from ``results``; returns the files that changed."""
    changed = []
    for path in readmes():
        text = path.read_text()
        new = update_blocks(text, results)
        if new != text:
            with atomic_path(path) as tmp:
                tmp.write_text(new)
            changed.append(path)
    return changed


def main(args) -> int:
    if args.list:
        for name, demo in DEMOS.items():
            print(f"{name:28s} {demo.script:45s} {demo.about}")
        return 0
    names = list(DEMOS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        print(f"error: unknown demo(s) {', '.join(unknown)} -- choose from {', '.join(DEMOS)}", file=sys.stderr)
        return 2
    args.out = args.out.resolve()
    if args.tables:
        try:
            changed = update_readmes(args.out)
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
        print("rewrote " + (", ".join(str(p.relative_to(ROOT)) for p in changed) or "nothing (every block is current)"))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summaries = []
    for k, name in enumerate(names, 1):
        print(f"\n[{k}/{len(names)}] {name}", flush=True)
        done = args.out / f"{name}.json"
        if args.resume and done.exists():
            previous = json.loads(done.read_text())
            if previous["status"] == "ok" and previous.get("quick") == args.quick:
                print(f"=== {name}: kept from the previous run (--resume)", flush=True)
                summaries.append(previous)
                continue
        summaries.append(run_demo(name, DEMOS[name], args))
    total = time.perf_counter() - t0
    report = write_report(summaries, args)
    if args.out == (ROOT / "results").resolve():  # the committed results: the READMEs cite them
        try:
            for path in update_readmes(args.out):
                print(f"rewrote the results blocks of {path.relative_to(ROOT)}")
        except KeyError as exc:
            print(f"warning: README block not rewritten: {exc.args[0]}", file=sys.stderr)
    failed = [s["name"] for s in summaries if s["status"] != "ok"]
    print(f"\nwrote {report} ({len(summaries) - len(failed)}/{len(summaries)} demos ok, {total / 60:.1f} min)")
    if failed:
        print(f"failed: {', '.join(failed)} (see their log.txt under {args.out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args()))
