"""The command line: parses arguments and calls the library. `resizelab --help` lists the commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from .config import RunConfig, parse_auto_bool, parse_bool
from .errors import ConfigError, ResizelabError


def _size(text: str) -> int | None:
    if text.strip().lower() in ("native", "none"):
        return None
    return _int(text)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"expected a whole number; got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"expected a number; got {text!r}") from None


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(_int(t) for t in text.split(",") if t.strip())


def _optional_str(text: str) -> str | None:
    return None if text.strip().lower() in ("", "none", "same") else text


# flag name -> (field, value parser, help). Every run option is a flag; nothing is config-file-only.
RUN_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--data": ("data", str, "cifar10, cifar100, synthetic or imagefolder:PATH (default cifar10)"),
    "--data-dir": ("data_dir", str, "where CIFAR is found or downloaded (default $RESIZELAB_DATA_DIR or ~/.cache/resizelab/data)"),
    "--size": ("size", _size, "train input size in px, shorter edge (default native: no resize)"),
    "--test-size": ("test_size", _size, "size for the headline test accuracy (default: the train size)"),
    "--test-sizes": ("test_sizes", _int_tuple, "extra test sizes, comma-separated (train at A, test at B)"),
    "--interpolation": ("interpolation", str, "nearest, bilinear, bicubic, area or lanczos (default bilinear)"),
    "--test-interpolation": ("test_interpolation", _optional_str, "interpolation for test images (default: same)"),
    "--antialias": ("antialias", parse_bool, "true or false (default true); the effective value is recorded"),
    "--backend": ("backend", str, "pil (torchvision Resize on PIL images), tensor (batched, on the device) or opencv "
                  "(cv2.resize per image; pip install 'resizelab[opencv]'); default tensor"),
    "--arch": ("arch", str, "resnet18, resnet34, resnet50 or mobilenet_v2 (default resnet18)"),
    "--weights": ("weights", str, "imagenet, none, or a path to a state_dict file (default imagenet)"),
    "--stem": ("stem", str, "imagenet or cifar (3x3 stride-1 conv, no max-pool); default imagenet"),
    "--epochs": ("epochs", _int, "training epochs (default 2)"),
    "--batch-size": ("batch_size", _int, "training batch size (default 32)"),
    "--lr": ("lr", _float, "learning rate (default 0.001)"),
    "--momentum": ("momentum", _float, "SGD momentum (default 0.9)"),
    "--weight-decay": ("weight_decay", _float, "weight decay (default 0)"),
    "--optimizer": ("optimizer", str, "sgd or adamw (default sgd)"),
    "--schedule": ("schedule", str, "constant or cosine (default constant)"),
    "--label-smoothing": ("label_smoothing", _float, "label smoothing (default 0)"),
    "--augment": ("augment", str, "none or crop-flip (random crop + flip before the resize; needs --backend tensor)"),
    "--precision": ("precision", str, "auto, fp32, bf16 or fp16 (default auto: bf16 on CUDA and on a CPU with native bf16, "
                    "fp32 on other CPUs)"),
    "--seed": ("seed", _int, "random seed (default 0)"),
    "--limit-train": ("limit_train", _int, "train on a class-balanced subset of N images"),
    "--limit-test": ("limit_test", _int, "test on a class-balanced subset of N images"),
    "--device": ("device", str, "auto, cpu, cuda or cuda:N (default auto)"),
    "--compile": ("compile", parse_bool, "torch.compile the model (default false)"),
    "--deterministic": ("deterministic", parse_bool, "torch.use_deterministic_algorithms (default false: fast mode)"),
    "--channels-last": ("channels_last", parse_auto_bool, "auto, true or false (default auto: channels_last, except "
                        "NCHW for fp32 on a CPU with --single-window-matmul false, where oneDNN runs it faster)"),
    "--single-window-matmul": ("single_window_matmul", parse_bool, "true or false (default true): run a convolution whose "
                               "output is 1x1 (layer4 of a ResNet at 32 px) as the matrix product it is; same result, "
                               "several times faster on a CPU"),
    "--eval-batch-size": ("eval_batch_size", _int, "evaluation batch size (default 1024)"),
}
BOOL_FLAGS = {"--compile", "--deterministic"}


def _add_run_options(parser: argparse.ArgumentParser, grid: bool) -> None:
    group = parser.add_argument_group("run options" + (" (comma-separated lists make a grid)" if grid else ""))
    for flag, (field, _, help_text) in RUN_OPTIONS.items():
        kwargs: dict[str, Any] = {"dest": f"opt_{field}", "default": None, "help": help_text}
        if flag in BOOL_FLAGS:
            kwargs.update(nargs="?", const="true")
        group.add_argument(flag, **kwargs)


def _run_options(args: argparse.Namespace, grid: bool) -> dict[str, Any]:
    """Flag values as config fields; with grid=True a comma-separated value becomes a list (an axis)."""
    out: dict[str, Any] = {}
    for flag, (field, parse, _) in RUN_OPTIONS.items():
        text = getattr(args, f"opt_{field}")
        if text is None:
            continue
        try:
            if grid and field != "test_sizes" and "," in text:
                out[field] = [parse(t.strip()) for t in text.split(",") if t.strip()]
            else:
                out[field] = parse(text)
        except ConfigError as e:
            raise ConfigError(f"{flag}: {e}") from None
    return out


def _add_sweep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 (overrides --seed)")
    parser.add_argument("--name", default=None, help="sweep name in the store (default: from the preset/file)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run and what is already done, then stop")
    parser.add_argument("--retry-failed", action="store_true", help="run again the configs that failed before")
    parser.add_argument("--executor", default="local", choices=("local", "ray"), help="local (this process) or ray (a Ray cluster)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: start or join a local one)")
    parser.add_argument("--lease-seconds", type=float, default=60.0, help="how long a claimed run stays reserved without a heartbeat")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default="resizelab.db", help="SQLite results store (default ./resizelab.db)")
    parser.add_argument("--json", action="store_true", help="print each result as one JSON object per line on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resizelab", description="How does resizing the input change what a ResNet achieves on CIFAR-10, and what does it cost?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train and evaluate one configuration, store it, print the result")
    _add_common(p)
    _add_run_options(p, grid=False)

    p = sub.add_parser("study", help="run a named preset study, print its table and write its report")
    p.add_argument("--preset", required=True, help="preset name (see `resizelab presets`)")
    _add_common(p)
    _add_sweep_options(p)
    p.add_argument("--report-dir", default=None, help="where to write the report (default reports/<sweep name>)")
    p.add_argument("--no-report", action="store_true", help="print the table only")
    _add_run_options(p, grid=True)

    p = sub.add_parser("sweep", help="run a grid of configurations from flags or a TOML file; re-running resumes")
    p.add_argument("file", nargs="?", default=None, help="TOML sweep file (see README); flags override its values")
    _add_common(p)
    _add_sweep_options(p)
    _add_run_options(p, grid=True)

    sub.add_parser("presets", help="list the preset studies with their run counts")

    p = sub.add_parser("env", help="versions, device, cache paths, and whether data and weights are present")
    p.add_argument("--data-dir", default=None)

    p = sub.add_parser("report", help="write tables and figures (md, html, png, csv) from the store")
    p.add_argument("--db", default="resizelab.db")
    p.add_argument("--sweep", default=None, help="only this sweep or preset study (default: every done run)")
    p.add_argument("--out", default=None, help="output folder (default reports/<sweep or 'all'>)")

    p = sub.add_parser("bench", help="images/s of the plain PIL+DataLoader pipeline vs resizelab vs the model alone")
    p.add_argument("--sizes", default="16,32,64,128,224", help="comma-separated input sizes (default 16,32,64,128,224)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data", default="synthetic", help="dataset for the benchmark (default synthetic)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", help="resizelab's precision, auto as in `run` (the plain pipeline is always fp32)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per window at <= 32 px, fewer by area above (default 20)")
    p.add_argument("--windows", type=int, default=7, help="rounds of one timed window per pipeline; medians are reported (default 7)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain pipeline (default 2)")
    p.add_argument("--compile", action="store_true", help="torch.compile resizelab's model")
    p.add_argument("--no-ablation", action="store_true", help="skip timing resizelab's pipeline with each of its settings changed")
    p.add_argument("--json-out", default="bench.json", help="where to write the JSON record (default bench.json)")
    _add_table_parser(sub, "spectrum", "what each resize does to the signal: spectra, zone-plate aliasing, round trip",
                      SPECTRUM_OPTIONS)
    _add_table_parser(sub, "probe", "what each resize does inside a ResNet: CKA per stage, residual/skip ratios, conv1 bands",
                      PROBE_OPTIONS)
    return parser


# --- commands --------------------------------------------------------------------------------

def _print_json(obj: dict) -> None:
    print(json.dumps(obj, default=str), flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .store import Store, new_owner_id
    from .train import train

    cfg = RunConfig.from_dict(_run_options(args, grid=False))
    store = Store(args.db)
    store.register([cfg])
    owner = new_owner_id()
    h = cfg.config_hash()
    if not store.claim(h, owner, force=True):
        raise ConfigError(f"run {h} is being trained by another process ({store.get(h)['owner']}); wait for it or use another --db")
    try:
        result = train(cfg, progress=not args.quiet)
    except KeyboardInterrupt:
        store.release(h, owner)
        print("interrupted; nothing stored", file=sys.stderr)
        return 130
    except ResizelabError:
        store.release(h, owner)
        raise
    except Exception as e:
        store.fail(h, owner, f"{type(e).__name__}: {e}")
        raise
    store.complete(result, owner)
    store.close()
    if args.json:
        _print_json(result.to_json_dict())
    else:
        from .report import format_run

        print(format_run(result))
        print(f"stored as {h} in {args.db}")
    return 0


def _execute(plan, args: argparse.Namespace) -> tuple[int, Any]:
    from .report import results_table
    from .sweep import SweepOptions, describe, run_sweep

    if args.dry_run:
        for h, status, label in describe(plan, args.db):
            print(f"{h}  {status:8s}  {label}")
        for values, reason in plan.invalid:
            print(f"{'-' * 16}  invalid   {reason}")
        print(f"{len(plan.configs)} runs in sweep {plan.name}", file=sys.stderr)
        return 0, None
    options = SweepOptions(db=args.db, executor=args.executor, retry_failed=args.retry_failed,
                           lease_seconds=args.lease_seconds, progress=not args.quiet, ray_address=args.ray_address)
    outcome = run_sweep(plan, options, quiet=args.quiet, on_result=(lambda r: _print_json(r.to_json_dict())) if args.json else None)
    if args.json:
        # Runs finished before this invocation are reported too, from the store.
        ran = {r.config_hash for r in outcome.ran}
        for row in outcome.rows:
            if row["status"] == "done" and row["config_hash"] not in ran and row["result_json"]:
                _print_json(json.loads(row["result_json"]))
    else:
        print(results_table(outcome.rows))
    done = sum(1 for r in outcome.rows if r["status"] == "done")
    if outcome.interrupted:
        print(f"interrupted: {done} of {outcome.planned} runs done; run the same command again to resume", file=sys.stderr)
        return 130, outcome
    if outcome.failed or outcome.invalid:
        print(f"{len(outcome.failed) + outcome.invalid} run(s) failed (reasons in the store: resizelab report)", file=sys.stderr)
    if outcome.held_elsewhere:
        print(f"{len(outcome.held_elsewhere)} run(s) are being trained by another process", file=sys.stderr)
    return (1 if outcome.failed else 0), outcome


def cmd_study(args: argparse.Namespace) -> int:
    from .presets import get_preset
    from .sweep import parse_seeds

    preset = get_preset(args.preset)
    overrides = _run_options(args, grid=True)
    seeds = parse_seeds(args.seeds, overrides.pop("seed") if isinstance(overrides.get("seed"), list) else None)
    plan = preset.plan(overrides, seeds, name=args.name)
    code, outcome = _execute(plan, args)
    if outcome is not None and not args.no_report and any(r["status"] == "done" for r in outcome.rows):
        from .report import ReportConfig, write_report

        out = write_report(ReportConfig(db=args.db, sweep=plan.name, out=args.report_dir or os.path.join("reports", plan.name)))
        print(f"report: {out / 'report.html'}", file=sys.stderr)
    return code


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import expand, load_sweep_file, parse_seeds

    base, grid, seeds, variants, name = ({}, {}, None, None, "sweep")
    if args.file:
        base, grid, seeds, variants, name = load_sweep_file(args.file)
    for key, value in _run_options(args, grid=True).items():
        if isinstance(value, list):
            grid[key] = value
            base.pop(key, None)
        else:
            base[key] = value
            grid.pop(key, None)
    if isinstance(grid.get("seed"), list):
        seeds = grid.pop("seed")
    seeds = parse_seeds(args.seeds, None) or seeds
    plan = expand(base, grid, seeds, variants, name=args.name or name)
    if not plan.configs and not plan.invalid:
        raise ConfigError("the sweep is empty; give a TOML file or run options such as --size 16,32,64")
    return _execute(plan, args)[0]


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name:14s} {len(preset.plan().configs):4d} runs  {preset.description}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import torch
    import torchvision

    from . import provenance
    from .data import cache_root, data_status, default_data_dir
    from .models import IMAGENET_WEIGHTS, imagenet_weights_status
    from .train import resolve_device, resolve_precision

    device = resolve_device("auto")
    auto = resolve_precision("auto", device)
    info = provenance.collect(device)
    lines = [
        f"resizelab      {__import__('resizelab').__version__} (git {info['git_revision']})",
        f"python         {info['python']}",
        f"torch          {torch.__version__} (cuda {torch.version.cuda or 'none'}, available: {torch.cuda.is_available()})",
        f"torchvision    {torchvision.__version__}",
        f"device         {info['device_name']}",
        f"precision auto {auto}",
        f"cache dir      {cache_root()}  ($RESIZELAB_CACHE_DIR)",
        f"data dir       {args.data_dir or default_data_dir()}  ($RESIZELAB_DATA_DIR, --data-dir)",
        f"weights dir    {torch.hub.get_dir()}/checkpoints  ($TORCH_HOME)",
    ]
    for name, status in data_status(args.data_dir).items():
        lines.append(f"data {name:9s} {status}")
    for arch in IMAGENET_WEIGHTS:
        lines.append(f"weights {arch:12s} {imagenet_weights_status(arch)}")
    print("\n".join(lines))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import ReportConfig, write_report

    if not os.path.exists(args.db):
        raise ConfigError(f"no results store at {args.db}; run a study or sweep first, or pass --db PATH")
    out = write_report(ReportConfig(db=args.db, sweep=args.sweep, out=args.out or os.path.join("reports", args.sweep or "all")))
    print(out / "report.md")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, format_bench, run_bench

    config = BenchConfig(sizes=_int_tuple(args.sizes), arch=args.arch, batch_size=args.batch_size, data=args.data,
                         data_dir=args.data_dir, device=args.device, precision=args.precision, steps=args.steps,
                         windows=args.windows, workers=args.workers, compile=args.compile, ablation=not args.no_ablation)
    result = run_bench(config, progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(format_bench(result))
    with open(args.json_out, "w") as f:
        json.dump(result.to_json_dict(), f, indent=2)
    print(f"wrote {args.json_out}", file=sys.stderr)
    return 0


# --- measurement commands without training (spectrum, probe): a flag table each, parsed into their config -------

def _str_tuple(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _bool_tuple(text: str) -> tuple[bool, ...]:
    return tuple(parse_bool(t) for t in text.split(",") if t.strip())


SPECTRUM_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--data": ("data", str, "cifar10, cifar100, synthetic or imagefolder:PATH (default cifar10); its test split is used"),
    "--data-dir": ("data_dir", str, "where CIFAR is found or downloaded"),
    "--size": ("sizes", _int_tuple, "comma-separated sizes in px, shorter edge (default 16,64)"),
    "--interpolation": ("interpolations", _str_tuple, "comma-separated methods (default nearest,bilinear,bicubic)"),
    "--antialias": ("antialias", _bool_tuple, "true, false or true,false (default true,false); the effective value is shown"),
    "--backend": ("backends", _str_tuple, "comma-separated: pil, tensor, opencv (default pil,tensor)"),
    "--limit": ("limit", _int, "class-balanced test images to measure (default 500)"),
    "--out": ("out", str, "folder for spectrum.json, spectrum.csv, psd.csv and the figures (default reports/spectrum)"),
}


PROBE_OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--data": ("data", str, "cifar10, cifar100, synthetic or imagefolder:PATH (default cifar10); its test split is used"),
    "--data-dir": ("data_dir", str, "where CIFAR is found or downloaded"),
    "--arch": ("arch", str, "resnet18, resnet34 or resnet50 (default resnet18)"),
    "--weights": ("weights", str, "imagenet, none (random init by --seed) or a path to a state_dict file (default imagenet)"),
    "--stem": ("stem", str, "imagenet or cifar (default imagenet)"),
    "--size": ("size", _int, "the resized input size S in px, compared with the native images (default 16)"),
    "--interpolation": ("interpolations", _str_tuple, "comma-separated methods (default nearest,bilinear,bicubic)"),
    "--antialias": ("antialias", parse_bool, "true or false (default true); the effective value is shown"),
    "--backend": ("backend", str, "pil, tensor or opencv (default pil)"),
    "--limit": ("limit", _int, "class-balanced test images (default 500)"),
    "--seed": ("seed", _int, "model init with --weights none, and the image subset (default 0)"),
    "--out": ("out", str, "folder for probe.json and probe.csv (default reports/probe)"),
}


def _add_table_parser(sub, name: str, help_text: str, options: dict) -> None:
    p = sub.add_parser(name, help=help_text)
    for flag, (field, _, text) in options.items():
        p.add_argument(flag, dest=f"opt_{field}", default=None, metavar=flag[2:].upper().replace("-", "_"), help=text)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout instead of the table")


def _table_options(args: argparse.Namespace, options: dict) -> dict[str, Any]:
    """The flags given, parsed into config fields; the config's defaults stand for the rest."""
    out: dict[str, Any] = {}
    for flag, (field, parse, _) in options.items():
        text = getattr(args, f"opt_{field}")
        if text is not None:
            try:
                out[field] = parse(text)
            except ConfigError as e:
                raise ConfigError(f"{flag}: {e}") from None
    return out


def cmd_spectrum(args: argparse.Namespace) -> int:
    from .spectrum import SpectrumConfig, format_spectrum, run_spectrum

    cfg = SpectrumConfig(**_table_options(args, SPECTRUM_OPTIONS))
    result = run_spectrum(cfg, progress=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        _print_json(result.to_json_dict())
    else:
        print(format_spectrum(result))
    print(f"wrote {', '.join(result.files)}", file=sys.stderr)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .probe import ProbeConfig, format_probe, run_probe

    cfg = ProbeConfig(**_table_options(args, PROBE_OPTIONS))
    result = run_probe(cfg, progress=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        _print_json(result.to_json_dict())
    else:
        print(format_probe(result))
    print(f"wrote {', '.join(result.files)}", file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "study": cmd_study, "sweep": cmd_sweep, "presets": cmd_presets, "env": cmd_env,
            "report": cmd_report, "bench": cmd_bench, "spectrum": cmd_spectrum, "probe": cmd_probe}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ResizelabError as e:
        print(f"resizelab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
