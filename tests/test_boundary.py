"""Property tests over the config / TOML / command-line boundary: whatever comes in, the answer is a
config, a ConfigError, or an exit status of 0, 1 or 2 with one line; never a traceback.

Nothing here trains: `sweep` and `study` are asked for --dry-run, which plans (precision, digests) and
reads the store but runs nothing; data that would have to be downloaded is reported as not planned.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")  # the dev extra installs it
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from resizelab.cli import main  # noqa: E402
from resizelab.core.config import CONFIG_FIELDS, RunConfig  # noqa: E402
from resizelab.core.errors import ConfigError  # noqa: E402
from resizelab.sweeps.plan import SWEEP_FILE_KEYS, expand_spec, load_sweep_file  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# Values a user (or a TOML file) can put anywhere: edge numbers, text that looks like other types, nesting.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, 1, 4, 8, 16, 1024, 2**31, 10**8]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 1e300]),
    st.text(max_size=12), st.sampled_from(["auto", "native", "true", "none", "cifar10", "synthetic", "imagefolder:", "tensor",
                                           "pil", "lanczos", "cuda:0", "16", "8,16", ""]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=8)
option_names = st.one_of(st.sampled_from(CONFIG_FIELDS), st.text(max_size=10))


@SETTINGS
@given(st.dictionaries(option_names, values, max_size=6))
def test_any_dict_is_a_config_or_a_config_error(d):
    try:
        RunConfig.from_dict(d)
    except ConfigError as e:
        assert "\n" not in str(e)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML's basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    return '"none"'  # TOML has no null


toml_tables = st.dictionaries(option_names, values, max_size=4)


@SETTINGS
@given(top=st.dictionaries(st.sampled_from(SWEEP_FILE_KEYS + ("nmae",)), values, max_size=3),
       base=st.one_of(st.none(), toml_tables), grid=st.one_of(st.none(), toml_tables),
       variants=st.one_of(st.none(), st.lists(toml_tables, max_size=2)))
def test_any_sweep_file_is_a_plan_or_a_config_error(top, base, grid, variants):
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items() if v is not None and k not in ("base", "grid", "variants")]
    for name, table in (("base", base), ("grid", grid)):
        if table is not None:
            lines.append(f"[{name}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    for table in variants or []:
        lines.append("[[variants]]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text("\n".join(lines) + "\n")
        try:
            spec, name = load_sweep_file(path)
            expand_spec(spec, name, max_runs=1000)
        except ConfigError as e:
            assert "\n" not in str(e)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_sweep_file_are_a_plan_or_a_config_error(blob):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_bytes(blob)
        try:
            load_sweep_file(path)
        except ConfigError as e:
            assert "\n" not in str(e)


FLAGS = ["--" + name.replace("_", "-") for name in CONFIG_FIELDS] + ["--size"] * 3 + ["--data"] * 2 + ["--seeds", "--seed", "--lease-seconds", "--name", "--executor",
                                                                     "--retry-failed", "--yes", "--bogus"]
# Mostly values a flag can take (so that many command lines get as far as planning), some that it cannot.
PLAUSIBLE = {
    "--size": ["8", "16,32", "native", "native,8", "1024"], "--test-sizes": ["16", "8,32", ""], "--interpolation": ["bilinear", "nearest,lanczos"],
    "--backend": ["pil", "tensor,opencv"], "--data": ["synthetic", "cifar10", "imagefolder:/nonexistent", "cifar100"],
    "--weights": ["none", "imagenet", "/nonexistent.pt"], "--precision": ["auto", "fp32,bf16"], "--seeds": ["1", "3", "100000000", "0"],
    "--seed": ["0", "1,2", "-1"], "--lr": ["0.1", "nan", "1e9", "0.01,0.1"], "--epochs": ["1", "0", "2,3"], "--device": ["cpu", "auto", "cuda:7"],
    "--augment": ["crop-flip", "none"], "--stem": ["cifar", "imagenet"], "--arch": ["mobilenet_v2", "resnet50"], "--lease-seconds": ["0", "nan", "10"],
}
flag_values = st.one_of(st.text(max_size=12), st.sampled_from(["8", "8,16", ",", "native", "-1", "0", "nan", "1e9", "100000000",
                                                               "true", "auto", "2**31"]))


@st.composite
def flag_and_value(draw):
    flag = draw(st.sampled_from(FLAGS))
    if flag in PLAUSIBLE and draw(st.integers(0, 9)) < 8:
        return flag, draw(st.sampled_from(PLAUSIBLE[flag]))
    return flag, draw(flag_values)


@settings(SETTINGS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # capsys is read per example
@given(command=st.sampled_from(["sweep", "study"]), args=st.lists(flag_and_value(), max_size=5))
def test_any_command_line_exits_0_1_or_2_with_one_line(command, args, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        argv = [command, "--dry-run", "--db", str(Path(tmp) / "r.db")]
        if command == "study":
            argv += ["--preset", "seed"]
        for flag, value in args:
            argv += [flag] if flag in ("--retry-failed", "--yes") else [flag, value]
        parsed = True
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: an unknown flag or a value it cannot take
            code, parsed = e.code, False
        err = capsys.readouterr().err
        assert code in (0, 1, 2), (argv, err)
        if code == 2:
            assert "Traceback" not in err and err.strip(), (argv, err)
            if parsed:  # refused by resizelab: exactly one error line, whatever progress lines came before
                assert len([line for line in err.splitlines() if line.startswith("resizelab: error: ")]) == 1, (argv, err)
            else:  # refused by argparse: its usage, then one error line that names the subcommand
                assert err.splitlines()[-1].startswith(f"resizelab {command}: error: "), (argv, err)
        assert not (Path(tmp) / "r.db").exists()  # a dry run stores nothing


