"""Optional dependencies, imported only when a feature that needs one is used."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import `module`, or stop with one line that names the extra to install.

    Only a missing package becomes MissingDependency: an installed package that fails to import
    (a broken build, a binary mismatch) keeps its own error, which is the one worth reading.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependency(f"{feature} needs {module.split('.')[0]}, which is not installed: "
                                f"pip install 'resizelab[{extra}]'") from None


# Each optional package: the module imported, the extra that installs it, and what it is for.
OPTIONAL_PACKAGES = (
    ("pandas", "pandas", "resizelab.load_runs and the other DataFrames"),
    ("mlflow", "mlflow", "--mlflow, resizelab export mlflow"),
    ("pyarrow", "parquet", "runs.parquet in reports"),
    ("cv2", "opencv", "--backend opencv"),
    ("ray", "ray", "--executor ray"),
    ("timm", "timm", "--arch timm:NAME"),
    ("optuna", "advise", "resizelab advise"),
)


def optional_status() -> list[tuple[str, str, str]]:
    """(module, 'present VERSION' or the install command, what it is for), without importing anything."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    distributions = packages_distributions()
    out = []
    for module, extra, purpose in OPTIONAL_PACKAGES:
        if importlib.util.find_spec(module) is None:
            out.append((module, f"missing: pip install 'resizelab[{extra}]'", purpose))
            continue
        try:
            text = "present " + version(distributions.get(module, [module])[0])
        except PackageNotFoundError:
            text = "present"
        out.append((module, text, purpose))
    return out
