"""The search space of `advise`: training size × resize method × antialias × backend, generated from the run
options' declarations (`Kind.domain`) and narrowed by flags or a sweep-format TOML file; its points are the
distinct runs those choices make (antialias that a method or backend ignores folds into one point)."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, fields
from typing import Any

from ..core.choices import BACKEND_INTERPOLATIONS, effective_antialias
from ..core.config import MAX_SIZE_PX, MIN_SIZE_PX, RunConfig, check_whole
from ..core.errors import ConfigError

AXES = ("size", "interpolation", "antialias", "backend")
# Sizes are an open kind (any px); the default axis brackets CIFAR's native 32 px from well below.
DEFAULT_SIZES = (16, 24, 32)


def domain(name: str) -> tuple:
    """The values the option `name` may take, from its declaration in RunConfig."""
    declared = next(f for f in fields(RunConfig) if f.name == name)
    return declared.metadata["option"].kind.domain


@dataclass(frozen=True, order=True)
class Point:
    """One training pipeline the search can propose, with antialias as it takes effect."""

    size: int
    interpolation: str
    antialias: bool
    backend: str

    def label(self) -> str:
        return f"{self.size}px {self.interpolation}/{'aa' if self.antialias else 'no-aa'}/{self.backend}"

    def options(self) -> dict[str, Any]:
        return {"size": self.size, "interpolation": self.interpolation, "antialias": self.antialias, "backend": self.backend}


@dataclass(frozen=True)
class SearchSpace:
    sizes: tuple[int, ...]
    interpolations: tuple[str, ...]
    antialias: tuple[bool, ...]
    backends: tuple[str, ...]

    def axes(self) -> dict[str, tuple]:
        return {"size": self.sizes, "interpolation": self.interpolations, "antialias": self.antialias, "backend": self.backends}

    def canonical(self, size: int, interpolation: str, antialias: bool, backend: str) -> Point | None:
        """The point these choices run as, None when the backend lacks the method."""
        if interpolation not in BACKEND_INTERPOLATIONS[backend]:
            return None
        return Point(size, interpolation, effective_antialias(interpolation, backend, antialias), backend)

    def points(self) -> list[Point]:
        out = {self.canonical(s, m, a, b) for s in self.sizes for m in self.interpolations for a in self.antialias
               for b in self.backends}
        return sorted(p for p in out if p is not None)

    def distributions(self) -> dict:
        """Optuna's distributions, one categorical per axis: TPE models each axis, so what it learns about a
        size carries over to the methods it has not tried at that size."""
        from optuna.distributions import CategoricalDistribution

        return {name: CategoricalDistribution(list(values)) for name, values in self.axes().items()}

    def describe(self) -> str:
        return (f"{len(self.points())} pipelines: sizes {','.join(map(str, self.sizes))} × {','.join(self.interpolations)} × "
                f"antialias {','.join(str(a).lower() for a in self.antialias)} × {','.join(self.backends)}")


def _checked(axis: str, values: Any, valid: tuple) -> tuple:
    if not isinstance(values, (list, tuple)):
        values = [values]
    out = []
    for v in values:
        if v not in valid:
            close = difflib.get_close_matches(str(v), [str(x) for x in valid], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"search space: {axis} {v!r} is not one of {', '.join(str(x).lower() for x in valid)}{hint}")
        out.append(v)
    return tuple(dict.fromkeys(out))


def default_backends() -> tuple[str, ...]:
    """Every declared backend whose library is installed (OpenCV is an optional extra)."""
    return tuple(b for b in domain("backend") if b != "opencv" or importlib.util.find_spec("cv2") is not None)


def make_space(sizes: Any = None, interpolations: Any = None, antialias: Any = None, backends: Any = None) -> SearchSpace:
    """A space from the declared domains, each axis narrowed to the values given; every value is checked, and a
    space of one point is refused (there is nothing to search)."""
    if sizes is None:
        sizes = DEFAULT_SIZES
    sizes = tuple(sizes) if isinstance(sizes, (list, tuple)) else (sizes,)
    for s in sizes:
        check_whole("search space: size", s, MIN_SIZE_PX, MAX_SIZE_PX)
    space = SearchSpace(
        tuple(dict.fromkeys(sizes)),
        _checked("interpolation", interpolations, domain("interpolation")) if interpolations is not None else domain("interpolation"),
        _checked("antialias", antialias, domain("antialias")) if antialias is not None else domain("antialias"),
        _checked("backend", backends, domain("backend")) if backends is not None else default_backends(),
    )
    points = space.points()
    if not points:
        raise ConfigError(f"search space: no backend among {', '.join(space.backends)} offers {', '.join(space.interpolations)}; "
                          "add a backend or a method it supports")
    if len(points) == 1:
        raise ConfigError(f"search space has one point ({points[0].label()}): nothing to search; give two or more values "
                          "to --size, --interpolation, --antialias or --backend, or run it with `resizelab run`")
    return space


def space_from_file(path: str, **flags: Any) -> tuple[SearchSpace, dict[str, Any]]:
    """A space from a sweep-format TOML file (its [grid] axes over size, interpolation, antialias and backend),
    with flags given beating the file; also the file's other options ([base], other axes' first values)."""
    from ..sweeps.plan import load_sweep_file  # noqa: F401 (sweeps sits below search)

    spec, _ = load_sweep_file(path)
    values = {**spec.base, **spec.grid}
    axes = {"size": "sizes", "interpolation": "interpolations", "antialias": "antialias", "backend": "backends"}
    given = {axes[k]: values.pop(k) for k in list(values) if k in axes}
    given.update({k: v for k, v in flags.items() if v is not None})
    others = {k: (v[0] if isinstance(v, list) else v) for k, v in values.items()}
    return make_space(**given), others
