"""The closed lists of choices a run option takes, in one leaf module that imports nothing.

The modules that implement a choice (training.resize, training.models, ...) import their list from here, and
so does the option declaration (core.config), which therefore validates a value without importing torch.
"""

from __future__ import annotations

DATASETS = ("cifar10", "cifar100", "synthetic", "synthetic:N[:M][@PX]", "imagefolder:PATH")

# Learned resizers (training.learned): modules trained with the classifier, on a bilinear resize in torch ops.
LEARNED_INTERPOLATIONS = ("muller", "talebi")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos", *LEARNED_INTERPOLATIONS)
BACKENDS = ("pil", "tensor", "opencv")
# What each backend can do; anything else is refused with this list in the message.
BACKEND_INTERPOLATIONS = {
    "pil": ("nearest", "bilinear", "bicubic", "area", "lanczos"),
    "tensor": ("nearest", "bilinear", "bicubic", "area", *LEARNED_INTERPOLATIONS),
    "opencv": ("nearest", "bilinear", "bicubic", "area", "lanczos"),
}

ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")
RESNETS = ("resnet18", "resnet34", "resnet50")
STEMS = ("imagenet", "cifar")
# The inputs' normalisation: the seed study's Normalize(0.5, 0.5), or the mean/std the model's weights were trained with.
NORMALIZATIONS = ("seed", "weights")
ARCH_FORMS = "a torchvision classification model (resnet18, efficientnet_b0, vit_b_16, ...), timm:NAME or package.module:callable"


def arch_form(spec: str) -> str | None:
    """Which of the three forms an --arch spec is written in ("torchvision", "timm", "callable"), from its spelling
    alone (nothing imported); None when it is none of them. A callable is `package.module:callable` or
    `path/to/file.py:callable`; `timm:` is timm's prefix, not a module named timm."""
    import re

    if spec.startswith("timm:"):
        return "timm" if re.fullmatch(r"[\w.\-]+", spec[5:]) else None
    if ":" in spec:
        where, _, name = spec.rpartition(":")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            return None
        if where.endswith(".py") or re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", where):
            return "callable"
        return None
    return "torchvision" if re.fullmatch(r"[a-z][a-z0-9_]*", spec) else None

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine")
AUGMENTS = ("none", "crop-flip")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
GRAPHS = ("auto", "off", "capture", "reduce-overhead")

EXECUTORS = ("auto", "local", "packed", "ray")

# The resize calls people put in front of a trained model, each as its library is really called
# (training.recipes implements them; `resizelab serve` and `--serve` evaluate a model under them).
SERVE_RECIPES = ("pil-bilinear", "pil-bicubic", "pil-default", "tensor-bilinear-aa", "tensor-bilinear",
                 "torch-interpolate", "torch-interpolate-corners", "cv2-linear", "cv2-area", "cv2-cubic", "cv2-nearest",
                 "cv2-nearest-exact")


def effective_antialias(interpolation: str, backend: str, requested: bool) -> bool:
    """The antialias that actually happens, which torchvision does not always tell you.

    Nearest never filters (torchvision ignores the flag); area is a box filter over each output
    pixel's footprint, so it always antialiases; PIL's filters always widen their support when
    downsampling, so PIL bilinear/bicubic/lanczos always antialias whatever is requested. OpenCV's
    linear/cubic/lanczos never widen their kernel (they alias when downsampling; only INTER_AREA
    averages), so a request for antialias there is recorded as the False that happens. The value
    describes the filter; it only matters when the resize is a downsample.
    """
    if interpolation == "nearest":
        return False
    if interpolation == "area" or backend == "pil":
        return True
    if backend == "opencv":
        return False
    return bool(requested)


# Recipes that need an optional package, by name prefix: (module, extra, library as users name it).
OPTIONAL_RECIPES = {"cv2-": ("cv2", "opencv", "OpenCV")}


def unavailable_recipes(recipes: tuple[str, ...] | list[str] = SERVE_RECIPES) -> dict[str, tuple[str, str, str]]:
    """The recipes whose library is not installed here, each with (module, extra, library); imports nothing."""
    import importlib.util

    out = {}
    for name in recipes:
        for prefix, needed in OPTIONAL_RECIPES.items():
            if name.startswith(prefix) and importlib.util.find_spec(needed[0]) is None:
                out[name] = needed
    return out


def available_recipes() -> tuple[str, ...]:
    """Every serving recipe whose library is installed here, in catalogue order."""
    missing = unavailable_recipes()
    return tuple(r for r in SERVE_RECIPES if r not in missing)
