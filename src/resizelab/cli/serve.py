"""`resizelab serve`: the flags (generated from ServeConfig's option declarations) into a ServeConfig, then
analysis.serve; the table or the JSON on stdout."""

from __future__ import annotations

import argparse

from ..core.errors import ConfigError
from .flags import add_json, add_options, given_options, print_json


def add_parser(sub) -> None:
    sub.add_parser("serve", help="evaluate a trained model under many serving resizes (PIL, tensor, cv2, ...) without training",
                   flags=_serve_flags)


def _serve_flags(p: argparse.ArgumentParser) -> None:
    from ..analysis.serve import ServeConfig

    add_options(p, ServeConfig)
    add_json(p, help="print the result as one JSON object on stdout instead of the table")


def cmd_serve(args: argparse.Namespace) -> int:
    from ..analysis.serve import ServeConfig, format_serve, serve

    options = given_options(args, ServeConfig)
    if "db" in options and "run" not in options:
        raise ConfigError("--db names the store that holds --run; add --run HASH, or drop --db")
    result = serve(ServeConfig(**options))
    if args.json:
        print_json(result.to_json_dict())
    else:
        print(format_serve(result))
    return 0
