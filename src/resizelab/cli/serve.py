"""`resizelab serve`: parse the flags into a ServeConfig, call analysis.serve, print the table or the JSON."""

from __future__ import annotations

import argparse
import json

from ..core.choices import SERVE_RECIPES
from ..core.config import parse_int, parse_sizes
from ..core.errors import ConfigError
from ..store.database import DEFAULT_DB

# flag: (ServeConfig field, parser, metavar, help)
FLAGS = {
    "--serve": ("serve", str, "RECIPE[,RECIPE...]|all", f"serving recipes, comma-separated, or all (default): {', '.join(SERVE_RECIPES)}"),
    "--run": ("run", str, "HASH", "a stored run's config hash (or a unique prefix) trained with --save-weights: serve its weights, "
              "with its arch, stem, data, test subset and test size"),
    "--db": ("db", str, "PATH", f"the results store that holds --run (default ./{DEFAULT_DB})"),
    "--weights": ("weights", str, "FILE", "or a state_dict file (torch.save(model.state_dict()), or a checkpoint holding one "
                  "under 'state_dict' or 'model'), with --arch, --stem, --data and --test-size"),
    "--arch": ("arch", str, "ARCH", "the architecture of --weights (default resnet18)"),
    "--stem": ("stem", str, "{imagenet,cifar}", "the stem of --weights (default imagenet)"),
    "--train-recipe": ("train_recipe", str, "RECIPE", "with --weights: the recipe it was trained with, the baseline of the changes"),
    "--data": ("data", str, "{cifar10,cifar100,synthetic[:N[:M]][@PX],imagefolder:PATH}",
               "test data, any resolution (resized from its native size, shorter edge); default: the run's, or cifar10"),
    "--data-dir": ("data_dir", str, "DIR", "where CIFAR is found or downloaded"),
    "--test-size": ("test_sizes", parse_sizes, "PX[,PX...]", "sizes in px, shorter edge (default: the run's test size)"),
    "--limit-test": ("limit_test", parse_int, "N", "a class-balanced subset of N test images (default: the run's)"),
    "--device": ("device", str, "{auto,cpu,cuda,cuda:N}", "where to evaluate (default auto)"),
    "--eval-batch-size": ("eval_batch_size", parse_int, "N", "evaluation batch size (default 1024)"),
}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="evaluate a trained model under many serving resizes (PIL, tensor, cv2, ...) without training")
    for flag, (field, _, metavar, text) in FLAGS.items():
        p.add_argument(flag, dest=f"serve_{field}", default=None, metavar=metavar, help=text)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout instead of the table")
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    from ..analysis.serve import ServeConfig, format_serve, serve

    options = {}
    for flag, (field, parse, _, _) in FLAGS.items():
        text = getattr(args, f"serve_{field}")
        if text is not None:
            try:
                options[field] = parse(text)
            except ConfigError as e:
                raise ConfigError(f"{flag}: {e}") from None
    if "db" in options and "run" not in options:
        raise ConfigError("--db names the store that holds --run; add --run HASH, or drop --db")
    result = serve(ServeConfig(**options))
    if args.json:
        print(json.dumps(result.to_json_dict(), default=str), flush=True)
    else:
        print(format_serve(result))
    return 0
