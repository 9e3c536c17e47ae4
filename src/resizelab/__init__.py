"""resizelab: measure how resizing the input changes what a ResNet achieves on CIFAR-10, and what it costs."""

__version__ = "0.1.0"

# The public API, imported on first use (PEP 562) so that `import resizelab` stays instant and
# imports neither torch nor pandas: a notebook that only reads results never loads the training stack.
_LAZY = {
    "RunConfig": "core.config",
    "RunResult": "core.results",
    "ConfigError": "core.errors",
    "ResizelabError": "core.errors",
    "plan": "training.planning",
    "run_hash": "training.planning",
    "train": "training.engine",
    "expand": "sweeps.plan",
    "run_sweep": "sweeps.runner",
    "sweep": "api",
    "advise": "api",
    "load_runs": "api",
    "load_evals": "api",
    "load_epochs": "api",
    "load_serving": "api",
    "serve": "analysis.serve",
    "ServeConfig": "analysis.serve",
}
__all__ = ["RunConfig", "RunResult", "plan", "run_hash", "train", "sweep", "advise", "expand", "run_sweep", "load_runs", "load_evals",
           "load_epochs", "load_serving", "serve", "ServeConfig", "ConfigError", "ResizelabError", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # resolved once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
