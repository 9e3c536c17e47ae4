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
