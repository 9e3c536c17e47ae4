"""The command line: parses arguments and calls the library. `resizelab --help` lists the commands.

One module per command group, each with `add_parser(sub)` (its subcommands and their flags) and a `cmd_<name>`
per command: run, sweep (study, sweep, presets), measure (bench, spectrum, probe), results (runs, report,
export, env), serve. A new command group is one entry in GROUPS and one per command in COMMANDS. Flags of options are not
declared here: they are generated from the config dataclasses' option declarations (flags.add_options).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import threading
from typing import Callable

from ..core.errors import ResizelabError
from ..core.log import configure_logging
from . import advise, measure, results, run, serve, sweep
from .flags import add_verbosity, interrupted_code, interruption, on_sigterm

GROUPS = (run, sweep, results, measure, serve, advise)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run.cmd_run, "study": sweep.cmd_study, "sweep": sweep.cmd_sweep, "presets": sweep.cmd_presets,
    "env": results.cmd_env, "runs": results.cmd_runs, "models": results.cmd_models, "report": results.cmd_report,
    "export": results.cmd_export,
    "bench": measure.cmd_bench, "spectrum": measure.cmd_spectrum, "probe": measure.cmd_probe,
    "serve": serve.cmd_serve, "advise": advise.cmd_advise,
}


class _Subcommands:
    """What a command group's `add_parser(sub)` is given: argparse's subparsers, keeping each subcommand's
    parser in `commands` (main answers an unknown flag with the subcommand's own usage). A command whose
    flags need a heavy import (its config lives beside torch code) passes them as `flags`, a function of
    its parser called only when that command is the one parsed, so `resizelab presets` does not load torch."""

    def __init__(self, sub, commands: dict[str, argparse.ArgumentParser], only: str | None):
        self.sub, self.commands, self.only = sub, commands, only

    def add_parser(self, name: str, *, flags: Callable[[argparse.ArgumentParser], None] | None = None,
                   **kwargs) -> argparse.ArgumentParser:
        parser = self.sub.add_parser(name, **kwargs)
        self.commands[name] = parser
        if flags is not None and self.only in (None, name):
            flags(parser)
        return parser


def build_parser(commands: dict[str, argparse.ArgumentParser] | None = None, only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; `commands`, if given, is filled with each subcommand's parser by name.
    With `only`, the commands that declare their flags lazily get them only if named `only`."""
    from .. import __version__

    commands = {} if commands is None else commands
    parser = argparse.ArgumentParser(prog="resizelab", description="How does resizing the input change what a ResNet achieves on CIFAR-10, and what does it cost?")
    parser.add_argument("--version", action="version", version=f"resizelab {__version__}")
    sub = _Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), commands, only)
    for group in GROUPS:
        group.add_parser(sub)
    for command in commands.values():
        add_verbosity(command)
    return parser


def _long_flags(parser: argparse.ArgumentParser) -> list[str]:
    """A parser's long flags, as its usage line lists them (argparse keeps its actions private)."""
    return list(dict.fromkeys(re.findall(r"--[A-Za-z0-9][A-Za-z0-9-]*", parser.format_usage())))


def _reject_unknown(commands: dict[str, argparse.ArgumentParser], command: str, extras: list[str]) -> None:
    """Unknown arguments are answered by the subcommand (its usage, not the top level's), with a suggestion."""
    sub = commands[command]
    known = _long_flags(sub)
    hints = []
    for word in extras:
        match = difflib.get_close_matches(word.split("=", 1)[0], known, n=1)
        if word.startswith("-") and match:
            hints.append(f"{word} (did you mean {match[0]}?)")
        else:
            hints.append(word)
    sub.error(f"unrecognized arguments: {', '.join(hints)}")


def flag_spelling(message: str, words: list[str]) -> str:
    """A config names a bad value by its field (limit_train), as Python and sweep files spell it; on the command
    line, where the user typed the flag, the message names the flag (--limit-train)."""
    match = re.match(r"([a-z][a-z0-9_]*) (must|is) ", message)
    if match:
        flag = "--" + match.group(1).replace("_", "-")
        if any(w == flag or w.startswith(flag + "=") for w in words):
            return flag + message[len(match.group(1)):]
    return message


def main(argv: list[str] | None = None) -> int:
    commands: dict[str, argparse.ArgumentParser] = {}
    words = sys.argv[1:] if argv is None else list(argv)
    # Only the command asked for needs its flags ("" when none is: the top level's help names the commands).
    parser = build_parser(commands, only=words[0] if words and words[0] in COMMANDS else "")
    if words and not words[0].startswith("-") and words[0] not in COMMANDS:
        # argparse (before 3.14) lists the commands without a suggestion: a typo gets one.
        match = difflib.get_close_matches(words[0], list(COMMANDS), n=1)
        parser.error(f"unknown command {words[0]!r}" + (f" (did you mean {match[0]!r}?)" if match else "")
                     + f"; commands: {', '.join(COMMANDS)}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        _reject_unknown(commands, args.command, extras)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    import signal

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        return COMMANDS[args.command](args)
    except ResizelabError as e:
        # One line per problem (offline: one per missing input), each a complete message on its own.
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"resizelab: error: {flag_spelling(line, words)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(interruption(e), file=sys.stderr)
        return interrupted_code(e)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
