"""What the commands share: flags generated from the option declarations of a config dataclass
(`core.config.option`), --db, --json, --mlflow, verbosity, comma lists, JSON lines, and how an interruption
(Ctrl-C, SIGTERM) is said and answered.

A generated flag stores its text under `opt_<field>` for a run option, `<Config>.<field>` for another config's
(None when not given); `given_options` parses the
flags given into config fields and leaves the rest to the config's own defaults, so a default lives only
in its declaration.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from ..core.config import RunConfig, comma_items, declared_default, declared_options
from ..core.errors import ConfigError
from ..core.log import logger
from ..report.tracking import DEFAULT_EXPERIMENT
from ..sweeps.runner import SweepOptions


def add_options(parser: argparse.ArgumentParser | Any, cls: type, *, skip: tuple[str, ...] = (),
                only: tuple[str, ...] | None = None, defaults: dict[str, Any] | None = None) -> None:
    """One flag per option `cls` declares: name, metavar and help (with its default) from the declaration.
    `defaults` are the ones a command puts in place of the declared ones, for the help to say so."""
    for name, opt in declared_options(cls):
        if name in skip or (only is not None and name not in only):
            continue
        default = (defaults or {}).get(name, declared_default(cls, name))
        # argparse formats help with %: a literal one (advise's "20%" budget) is written %%.
        kwargs: dict[str, Any] = {"dest": _dest(cls, name), "default": None, "help": opt.help_text(default).replace("%", "%%")}
        if opt.switch:
            kwargs.update(action="store_const", const=not default)
        else:
            kwargs["metavar"] = opt.metavar or opt.kind.metavar
            if kwargs["metavar"] == "{true,false}":
                # A bare boolean flag means true, as --compile reads; --compile false still turns it off.
                kwargs.update(nargs="?", const="true")
        parser.add_argument(opt.flag_name(name), *opt.aliases, **kwargs)


def _dest(cls: type, name: str) -> str:
    # Each config's flags apart (bench takes BenchConfig's and RunConfig's); run options keep their opt_ names.
    return f"opt_{name}" if cls is RunConfig else f"{cls.__name__}.{name}"


def given_options(args: argparse.Namespace, cls: type, *, grid: bool = False) -> dict[str, Any]:
    """The flags given, parsed into `cls`'s fields; with grid=True a comma-separated value of an option that
    may be a sweep axis becomes a list (the axis)."""
    out: dict[str, Any] = {}
    for name, opt in declared_options(cls):
        value = getattr(args, _dest(cls, name), None)
        if value is None:
            continue
        if opt.switch:
            out[name] = value
            continue
        try:
            if grid and opt.grid and "," in value:
                out[name] = [opt.kind.parse(t) for t in comma_items(value)]
            else:
                out[name] = opt.kind.parse(value)
                if cls is not RunConfig:
                    # Checked here against the declaration, so that the message names the flag. Run options are
                    # checked by RunConfig and the sweep planner, which say which grid value was wrong.
                    opt.kind.check(name, out[name])
        except ConfigError as e:
            raise ConfigError(f"{opt.flag_name(name)}: {e}") from None
    return out


def add_db(parser: argparse.ArgumentParser) -> None:
    """--db, as the sweep options declare it (run, report and export read and write the same store)."""
    add_options(parser, SweepOptions, only=("db",))


def db_path(args: argparse.Namespace) -> str:
    return given_options(args, SweepOptions).get("db", declared_default(SweepOptions, "db"))


def add_run_options(parser: argparse.ArgumentParser, *, grid: bool, skip: tuple[str, ...] = (),
                    defaults: dict[str, Any] | None = None) -> None:
    """RunConfig's options, in a group of their own."""
    group = parser.add_argument_group("run options" + (" (a comma-separated value makes a grid axis)" if grid else ""))
    add_options(group, RunConfig, skip=skip, defaults=defaults)


def add_json(parser: argparse.ArgumentParser, help: str = "print each result as one JSON object per line on stdout") -> None:  # noqa: A002
    parser.add_argument("--json", action="store_true", help=help)


def add_mlflow(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="log each finished run to MLflow (pip install 'resizelab[mlflow]'); URI default: "
                        "$MLFLOW_TRACKING_URI, else sqlite:///<folder of --db>/mlflow.db")
    parser.add_argument("--mlflow-experiment", default=None, metavar="NAME",
                        help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")


def mlflow_logger(args: argparse.Namespace, sweep: str | None):
    """The MLflow logger `--mlflow` asks for, set up before anything trains; None without the flag."""
    if args.mlflow is None:
        if args.mlflow_experiment is not None:
            raise ConfigError("--mlflow-experiment names where --mlflow logs; add --mlflow (or drop --mlflow-experiment)")
        return None
    # A URI needs a scheme: this also catches `sweep --mlflow FILE.toml`, where the file was taken for the URI.
    if args.mlflow and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", args.mlflow):
        from ..report.tracking import FILE_STORE_REFUSED

        hint = "a sweep file goes before --mlflow" if args.mlflow.endswith(".toml") else FILE_STORE_REFUSED
        raise ConfigError(f"--mlflow: {args.mlflow!r} is not a tracking URI ({hint}); give one such as sqlite:///path/mlflow.db or "
                          "http://host:5000, or --mlflow alone for the store beside --db")
    from ..report.tracking import MlflowLogger, resolve_tracking_uri

    uri = resolve_tracking_uri(args.mlflow or None, db_path(args))
    experiment = args.mlflow_experiment or DEFAULT_EXPERIMENT
    logger.info("MLflow: logging to %s, experiment %s", uri, experiment)
    return MlflowLogger(uri, experiment, sweep=sweep)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only on stderr (no progress)")
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages too on stderr")


def comma_flag(flag: str, text: str) -> list[str]:
    try:
        return comma_items(text)
    except ConfigError as e:
        raise ConfigError(f"{flag}: {e}") from None


def print_json(obj: dict) -> None:
    print(json.dumps(obj, default=str), flush=True)


# --- interruptions ---------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so a terminated run is given back and says how to resume."""


def on_sigterm(signum, frame) -> None:
    raise Terminated()


def interruption(error: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"


def interrupted_code(error: BaseException) -> int:
    return 143 if isinstance(error, Terminated) else 130
