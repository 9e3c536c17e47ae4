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
