"""`resizelab bench`, `spectrum` and `probe`: measurements that store no run. Their flags are generated from
BenchConfig, SpectrumConfig and ProbeConfig (analysis/), each option declared there once."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from ..core.config import CONFIG_FIELDS, RunConfig
from ..core.errors import ConfigError
from ..core.log import logger
from .flags import add_json, add_options, add_run_options, given_options, print_json

# Column b of the benchmark runs a recipe as `resizelab run` takes it, at each of --sizes: these run options
# belong to the benchmark's own rows, not to the recipe.
BENCH_SETS = ("size", "test_size", "test_sizes", "test_interpolation", "limit_test", "epochs")
# Run options a benchmark has no use for: it times steps, it keeps no weights and serves nothing.
BENCH_IGNORES = ("serve", "save_weights")


def add_parser(sub) -> None:
    # The configs live beside the torch code that runs them: their flags are added only for the command parsed.
    sub.add_parser("bench", help="images/s of the plain PIL+DataLoader pipeline vs resizelab vs the model alone",
                   flags=_bench_flags)
    sub.add_parser("spectrum", help="what each resize does to the signal: spectra, zone-plate aliasing, round trip",
                   flags=_spectrum_flags)
    sub.add_parser("probe", help="what each resize does inside a ResNet: CKA per stage, residual/skip ratios, conv1 bands",
                   flags=_probe_flags)


def _bench_flags(p: argparse.ArgumentParser) -> None:
    from ..analysis.bench import BenchConfig, default_recipe

    add_options(p, BenchConfig)
    p.add_argument("--json-out", default="bench.json", metavar="PATH", help="where to write the JSON record (default bench.json)")
    recipe = default_recipe()
    add_run_options(p, grid=False, skip=BENCH_SETS + BENCH_IGNORES,
                    defaults={name: getattr(recipe, name) for name in CONFIG_FIELDS if name not in BENCH_SETS + BENCH_IGNORES})


def _spectrum_flags(p: argparse.ArgumentParser) -> None:
    from ..analysis.spectrum import SpectrumConfig

    add_options(p, SpectrumConfig)
    add_json(p, help="print the result as one JSON object on stdout instead of the table")


def _probe_flags(p: argparse.ArgumentParser) -> None:
    from ..analysis.probe import ProbeConfig

    add_options(p, ProbeConfig)
    add_json(p, help="print the result as one JSON object on stdout instead of the table")


def cmd_bench(args: argparse.Namespace) -> int:
    from ..analysis.bench import BenchConfig, default_recipe, format_bench, run_bench

    folder = os.path.dirname(os.path.abspath(args.json_out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        # Checked before the benchmark, not after its minutes of timing.
        raise ConfigError(f"--json-out {args.json_out}: folder {folder} does not exist or is not writable")
    if os.path.exists(args.json_out) and not os.path.isfile(args.json_out):
        raise ConfigError(f"--json-out {args.json_out} is a folder; give the path of a file, e.g. {os.path.join(args.json_out, 'bench.json')}")
    recipe = dataclasses.replace(default_recipe(), **given_options(args, RunConfig))
    config = BenchConfig(run=recipe, **given_options(args, BenchConfig))
    result = run_bench(config, progress=logger.info)
    print(format_bench(result))
    with open(args.json_out, "w") as f:
        json.dump(result.to_json_dict(), f, indent=2)
    logger.info("wrote %s", args.json_out)
    return 0


def cmd_spectrum(args: argparse.Namespace) -> int:
    from ..analysis.spectrum import SpectrumConfig, format_spectrum, run_spectrum

    cfg = SpectrumConfig(**given_options(args, SpectrumConfig))
    return _print_measurement(args, run_spectrum(cfg, progress=logger.info), format_spectrum)


def cmd_probe(args: argparse.Namespace) -> int:
    from ..analysis.probe import ProbeConfig, format_probe, run_probe

    options = given_options(args, ProbeConfig)
    # --arch with --run only names again a run's Python code (package.module:callable), which the config checks.
    clash = [f"--{name.replace('_', '-')}" for name in ("weights", "stem", "data", "data_dir") if name in options]
    if "run" in options and clash:
        raise ConfigError(f"--run brings the run's own weights, arch, stem and data; drop {', '.join(clash)}")
    if "db" in options and "run" not in options:
        raise ConfigError("--db names the store that holds --run; add --run HASH, or drop --db")
    return _print_measurement(args, run_probe(ProbeConfig(**options), progress=logger.info), format_probe)


def _print_measurement(args: argparse.Namespace, result, format_table) -> int:
    """A spectrum or probe result: its JSON or its table on stdout, the files it wrote on stderr."""
    if args.json:
        print_json(result.to_json_dict())
    else:
        print(format_table(result))
    logger.info("wrote %s", ", ".join(result.files))
    return 0
