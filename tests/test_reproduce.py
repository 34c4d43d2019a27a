"""reproduce.py: runs demos as subprocesses, survives a failing one, writes REPORT.md, resumes."""

import json
import sys

import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import reproduce  # noqa: E402

GOOD = '''
import argparse, json, pathlib
p = argparse.ArgumentParser(); p.add_argument("--out"); p.add_argument("--device")
p.add_argument("--quick", action="store_true")
a = p.parse_args(); out = pathlib.Path(a.out); out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"dice": 0.9, "quick": a.quick}))
(out / "report.md").write_text("## good\\n\\n![fig](fig.png)\\n")
print("progress line")
'''
BAD = "import sys; print('boom', file=sys.stderr); sys.exit(3)"


@pytest.fixture
def demos(tmp_path, monkeypatch):
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    monkeypatch.setattr(reproduce, "DEMOS", {
        "bad": reproduce.Demo(str(tmp_path / "bad.py"), "fails on purpose"),
        "good": reproduce.Demo(str(tmp_path / "good.py"), "works"),
    })
    return tmp_path


def test_failing_demo_is_reported_and_the_rest_runs(demos, capsys):
    out = demos / "results"
    code = reproduce.main(reproduce.get_args(["--quick", "--out", str(out), "--device", "cpu"]))
    assert code == 1
    report = (out / "REPORT.md").read_text()
    assert "| bad | failed (3) |" in report and "| good | ok |" in report
    assert "](good/fig.png)" in report  # the demo's relative figure link now points into its folder
    good = json.loads((out / "good.json").read_text())
    assert good["metrics"] == {"dice": 0.9, "quick": True} and "--quick" in good["command"]
    assert "boom" in (out / "bad" / "log.txt").read_text()
    assert "progress line" in capsys.readouterr().out


def test_only_resume_and_unknown_names(demos, capsys):
    out = demos / "results"
    assert reproduce.main(reproduce.get_args(["--only", "good", "--out", str(out)])) == 0
    assert reproduce.main(reproduce.get_args(["--only", "good", "--out", str(out), "--resume"])) == 0
    assert "kept from the previous run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:  # refused while parsing, before anything is written
        reproduce.get_args(["--only", "nope", "--out", str(out / "never")])
    assert stop.value.code == 2
    assert "argument --only: unknown demo(s) nope; choose from bad, good" in capsys.readouterr().err
    assert not (out / "never").exists()


def test_every_registered_script_exists():
    for name, demo in reproduce.DEMOS.items():
        assert (reproduce.ROOT / demo.script).is_file(), name


def test_every_demo_s_flags_parse_in_both_modes(tmp_path):
    """A typo in a DEMOS flag list would only show as a failed demo after minutes of reproduce.py; parse them now."""
    from tests.helpers.scripts import load_script

    for name, demo in reproduce.DEMOS.items():
        folder, script = demo.script.rsplit("/", 1)
        module = load_script(folder, script.removesuffix(".py"))
        for flags in (["--quick", *demo.quick], demo.full):
            flags = [f.replace("{results}", str(tmp_path)) for f in flags]
            args = module.get_args(["--out", str(tmp_path / name), "--device", "cpu", *flags])
            assert args.quick == ("--quick" in flags), name
