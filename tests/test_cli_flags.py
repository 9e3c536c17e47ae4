"""The command line's flags come from the configs' option declarations: one declaration per option, its
default said in the help, its value parsed into the config; every command module registered by its table."""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resizelab import api
from resizelab.analysis.bench import BenchConfig
from resizelab.analysis.probe import ProbeConfig
from resizelab.analysis.serve import ServeConfig
from resizelab.analysis.spectrum import SpectrumConfig
from resizelab.cli import COMMANDS, GROUPS, build_parser, main
from resizelab.cli.flags import given_options
from resizelab.core.config import declared_default, declared_options, default_text
from resizelab.core.errors import ConfigError
from resizelab.store.database import DEFAULT_DB
from resizelab.sweeps.claim import SweepOutcome
from resizelab.sweeps.runner import SweepOptions


def _commands() -> dict[str, argparse.ArgumentParser]:
    commands: dict[str, argparse.ArgumentParser] = {}
    build_parser(commands)
    return commands


def test_every_command_parser_has_a_handler_and_every_group_registers_by_add_parser():
    commands = _commands()
    assert set(commands) == set(COMMANDS)
    assert all(callable(getattr(group, "add_parser", None)) for group in GROUPS)
    handlers = {f"cmd_{name}" for name in COMMANDS}
    assert handlers == {handler.__name__ for handler in COMMANDS.values()}


@pytest.mark.parametrize("command, cls", [("sweep", SweepOptions), ("study", SweepOptions), ("bench", BenchConfig),
                                          ("spectrum", SpectrumConfig), ("probe", ProbeConfig), ("serve", ServeConfig)])
def test_each_declared_option_is_a_flag_whose_help_says_the_declared_default(command, cls):
    usage = _commands()[command].format_help()
    declared = list(declared_options(cls))
    assert declared, cls
    for name, opt in declared:
        flag = opt.flag_name(name)
        assert flag in usage, (command, flag)
        if opt.help_text(declared_default(cls, name)) != opt.help:  # not a help that says its default in its own words
            # The help text generated from the declaration, default included (argparse may wrap it).
            shown = f"(default {default_text(declared_default(cls, name), opt.kind)})"
            assert shown in " ".join(usage.split()), (command, flag, shown)


def test_flags_parse_into_the_config_and_leave_the_rest_to_its_defaults():
    parser = build_parser()
    args = parser.parse_args(["spectrum", "--size", "8,16", "--antialias", "false", "--backend", "pil", "--limit", "20"])
    cfg = SpectrumConfig(**given_options(args, SpectrumConfig))
    assert (cfg.sizes, cfg.antialias, cfg.backends, cfg.limit) == ((8, 16), (False,), ("pil",), 20)
    assert cfg.interpolations == declared_default(SpectrumConfig, "interpolations") and cfg.out == "reports/spectrum"
    args = parser.parse_args(["bench", "--sizes", "16,32", "--no-ablation", "--steps", "3"])
    assert given_options(args, BenchConfig) == {"sizes": (16, 32), "ablation": False, "steps": 3}
    args = parser.parse_args(["sweep", "--retry-failed", "--executor", "packed", "--pack", "2"])
    options = SweepOptions(**given_options(args, SweepOptions))
    assert (options.retry_failed, options.executor, options.pack, options.db) == (True, "packed", 2, DEFAULT_DB)
    with pytest.raises(ConfigError, match="^--pack: expected a whole number; got 'two'$"):
        given_options(parser.parse_args(["sweep", "--pack", "two"]), SweepOptions)


def test_one_default_for_the_store_and_the_sweep_options():
    assert declared_default(ProbeConfig, "db") == DEFAULT_DB == declared_default(SweepOptions, "db") == declared_default(ServeConfig, "db")
    signature = inspect.signature(api.sweep).parameters
    for name, _ in declared_options(SweepOptions):
        assert signature[name].default == declared_default(SweepOptions, name), name


def test_bad_flag_values_of_generated_flags_are_one_line(capsys):
    assert main(["sweep", "--data", "synthetic", "--size", "8", "--dry-run", "--executor", "lokal"]) == 2
    assert capsys.readouterr().err == ("resizelab: error: --executor: executor must be one of auto, local, packed, ray; "
                                       "got 'lokal' (did you mean 'local'?)\n")
    assert main(["spectrum", "--limit", "many"]) == 2
    assert capsys.readouterr().err == "resizelab: error: --limit-test: expected a whole number; got 'many'\n"


def test_the_command_line_and_the_api_plan_a_sweep_alike(tmp_path, capsys):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text('name = "filed"\n[base]\ndata = "synthetic"\n[grid]\nsize = [8, 12]\n')
    assert main(["sweep", "--data", "synthetic", "--size", "8,16", "--dry-run", "--db", str(tmp_path / "r.db")]) == 0
    plan = api.plan_sweep({"data": "synthetic", "size": [8, 16]})
    assert f"2 runs in sweep {plan.name}" in capsys.readouterr().err and plan.name.startswith("sweep-")
    assert main(["sweep", str(sweep_file), "--seeds", "2", "--dry-run", "--db", str(tmp_path / "r.db")]) == 0
    assert "4 runs in sweep filed" in capsys.readouterr().err
    assert len(api.plan_sweep({"seed": [0, 1]}, file=sweep_file).configs) == 4
    with pytest.raises(ConfigError, match="not several"):
        api.plan_sweep(preset="seed", file=sweep_file)


def test_report_folder_is_checked_before_the_sweep_and_written_only_with_a_finished_run(tmp_path):
    plan = api.plan_sweep({"data": "synthetic", "size": [8]}, name="one")
    assert api.report_folder(False, plan) is None
    assert api.report_folder(True, plan) == "reports/one"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--report-dir"):
        api.report_folder(str(blocker), plan, "--report-dir")
    outcome = SweepOutcome("one", 1, db=str(tmp_path / "r.db"))
    assert api.write_sweep_report(outcome, tmp_path / "out") is None and not (tmp_path / "out").exists()


def test_a_command_without_torch_does_not_load_it_for_the_flags_of_others():
    # bench, spectrum and probe declare their flags beside torch code: only the command parsed builds them.
    code = ("import sys\nfrom resizelab.cli import main\nassert main(['presets']) == 0\n"
            "assert 'torch' not in sys.modules, 'presets loaded torch'\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
