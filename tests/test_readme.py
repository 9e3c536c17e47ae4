"""The README and the pages under docs/ as a user follows them: every shell command names only paths a clone of the
repository has, every resizelab command parses (a study, sweep or run is also planned with --dry-run), and every Python
block runs.

What a command may name that a clone does not hold is a placeholder the page explains: `PATH` (an ImageFolder tree:
here a tiny one is written), `HASH` (a run's hash: here a made-up one, parsed only), `FILE`. Python blocks run as
written with one documented scaling: the built-in synthetic task shrinks to a few dozen images (SCALED_DOWN), so
a block that trains takes seconds, not the minutes it takes a user.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from resizelab.cli import COMMANDS, build_parser, main

from conftest import write_cifar10, write_imagefolder

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_WORDS = ("resizelab", ".venv/bin/resizelab", "make", "python", "mlflow", "bash", "source", "pip")
# Text replaced in a Python block before it runs: the synthetic task at a few dozen images instead of 6,000.
SCALED_DOWN = {'"synthetic"': '"synthetic:48:24"', "seeds=3": "seeds=1"}


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a Markdown page."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL)]


def shell_commands() -> list[tuple[str, list[str]]]:
    """(page, words) of every command line in the pages' untagged or shell blocks (continuations joined)."""
    out = []
    for page in PAGES:
        for language, body in fenced_blocks(page):
            if language not in ("", "sh", "bash", "shell", "console"):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True) if line.strip() else []
                if words and words[0] in COMMAND_WORDS:
                    out.append((page.name, words))
    return out


def resizelab_commands() -> list[tuple[str, list[str]]]:
    """The resizelab arguments of every command, `make study ARGS="..."` included (as the study's)."""
    out = []
    for page, words in shell_commands():
        if words[0] in ("resizelab", ".venv/bin/resizelab"):
            out.append((page, words[1:]))
        elif words[:2] == ["make", "study"]:
            extra = [w.removeprefix("ARGS=") for w in words[2:] if w.startswith("ARGS=")]
            out.append((page, ["study", "--preset", "seed", *(shlex.split(extra[0]) if extra else [])]))
    return out


def outside_paths(words: list[str]) -> list[str]:
    """The words (or a word's value after `:` or `=`) that name a path outside the repository."""
    bad = []
    for word in words:
        if re.match(r"^[a-z][a-z0-9+.-]*://", word):  # a URL (sqlite:///mlflow.db is a file beside the command)
            continue
        for part in re.split(r"[:=]", word):
            if part.startswith(("/", "..", "~")) or "/shared/" in part:
                bad.append(word)
    return bad


def test_the_pages_have_commands_and_python_to_check():
    assert len(resizelab_commands()) >= 20
    assert sum(language == "python" for page in PAGES for language, _ in fenced_blocks(page)) >= 3


def test_no_command_names_a_path_outside_the_repository():
    bad = [f"{page}: {' '.join(words)}" for page, words in shell_commands() if outside_paths(words)]
    assert not bad, "\n".join(bad)


def test_paths_the_commands_name_are_explained_where_they_are_used():
    for page in PAGES:
        text = page.read_text()
        if "imagefolder:PATH" in text:
            assert "PATH/train/<class>" in text or "ImageFolder layout" in text, f"{page.name} uses PATH without saying what it is"


def _concrete(words: list[str], images: Path) -> list[str]:
    return [w.replace("imagefolder:PATH", f"imagefolder:{images}").replace("HASH", "0123abcd") for w in words]


def test_every_resizelab_command_parses(tmp_path):
    images = tmp_path / "images"
    for page, words in resizelab_commands():
        if words == ["--help"]:
            continue
        assert words and words[0] in COMMANDS, f"{page}: unknown command in `resizelab {' '.join(words)}`"
        if "--help" in words:
            continue
        commands: dict = {}
        parser = build_parser(commands, only=words[0])
        try:
            parser.parse_args(_concrete(words, images))
        except SystemExit:
            pytest.fail(f"{page}: `resizelab {' '.join(words)}` does not parse")


@pytest.mark.slow  # plans every study, sweep and run of the pages (about 30), each loading its data
def test_every_study_sweep_and_run_plans_with_dry_run(tmp_path, monkeypatch, capsys):
    images = write_imagefolder(tmp_path / "images")
    # A user with a connection has CIFAR-10 after the first run; here a small copy in its format stands in for it.
    monkeypatch.setenv("RESIZELAB_DATA_DIR", str(write_cifar10(tmp_path / "cifar")))
    monkeypatch.chdir(tmp_path)
    for page, words in resizelab_commands():
        if words[0] not in ("study", "sweep", "run") or "--help" in words:
            continue
        args = _concrete(words, images)
        if "--db" in args:  # each command plans against an empty store of its own
            i = args.index("--db")
            del args[i:i + 2]
        code = main([*args, "--dry-run", "--db", str(tmp_path / f"plan{len(os.listdir(tmp_path))}.db")])
        captured = capsys.readouterr()
        assert code == 0, f"{page}: `resizelab {' '.join(words)} --dry-run` exited {code}: {captured.err[-400:]}"
        assert re.search(r"^[0-9a-f-]{16}  ", captured.out, re.MULTILINE), f"{page}: {' '.join(words)} listed no run"


def python_blocks() -> list[tuple[str, int, str]]:
    return [(page.name, i, body) for page in PAGES for i, (language, body) in enumerate(fenced_blocks(page)) if language == "python"]


@pytest.mark.slow  # each block trains a few runs on the scaled-down synthetic task
@pytest.mark.parametrize("page,index,code", python_blocks(), ids=lambda v: str(v)[:20] if isinstance(v, str) else str(v))
def test_every_python_block_runs(page, index, code, tmp_path):
    pytest.importorskip("pandas", reason="pandas is not installed: pip install 'resizelab[pandas]'")
    if "mlflow" in code:
        pytest.importorskip("mlflow", reason="mlflow is not installed: pip install 'resizelab[mlflow]'")
    for text, smaller in SCALED_DOWN.items():
        code = code.replace(text, smaller)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{page}, python block {index}:\n{proc.stderr[-2000:]}"


def test_make_study_takes_options_in_ARGS_and_says_how_to_run_resizelab_after(tmp_path):
    """`make study ARGS="..."` runs the classic study's arguments (STUDY_ARGS, which tests/test_online.py runs) with the
    user's after them, then says how to run resizelab from .venv; the README says the same right after the commands."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"  # -n: nothing is built or run, the commands are only printed
    proc = subprocess.run(["make", "-n", "study", f"VENV={venv}", "ARGS=--data imagefolder:images --weights none"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{venv}/bin/resizelab study --preset seed --data imagefolder:images --weights none;" in proc.stdout
    assert f"source {venv}/bin/activate" in proc.stdout
    readme = (ROOT / "README.md").read_text()
    after_commands = readme.split("make test ", 1)[1][:2500]
    assert "make study ARGS=" in after_commands and "source .venv/bin/activate" in after_commands
    assert ".venv/bin/resizelab" in after_commands


def test_runs_lists_every_stored_run_with_its_hash_for_serve_and_probe(tmp_path_factory, capsys):
    from tiny_store import build_tiny_store

    from resizelab.store.read import read_runs

    db, _, _ = build_tiny_store(tmp_path_factory)
    assert main(["runs", "--db", str(db), "--sweep", "other"]) == 0
    captured = capsys.readouterr()
    header, _, *rows = captured.out.splitlines()
    assert header.split()[0] == "run" and header.split()[-2:] == ["status", "weights"]
    stored = {r["config_hash"]: r["status"] for r in read_runs(db, "other", status=None).runs}
    assert {row.split()[0]: row.split()[-2] for row in rows} == stored  # every run, pending and failed too, by full hash
    assert {"done", "failed"} <= set(stored.values())
    assert "resizelab serve --run HASH" in captured.err


def test_the_commands_table_names_every_command_and_json_where_it_is_taken(capsys):
    text = (ROOT / "README.md").read_text()
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    assert {c for c in COMMANDS if f"`resizelab {c}" not in table and f", `resizelab {c}" not in table} == set(), table
    said = re.search(r"the commands that measure \(([^)]*)\) take\s+`--json`", text)
    named = {w.strip("` ") for w in said.group(1).split(",")}
    takes = set()
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        if "--json" in capsys.readouterr().out:
            takes.add(command)
    assert named == takes
