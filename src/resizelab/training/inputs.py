"""The inputs a run reads from disk or the network, found or fetched before anything is planned or trained."""

from __future__ import annotations

from ..core.config import preflight
from ..core.errors import DataUnavailable, WeightsError
from ..core.log import logger



def ensure_inputs(configs, checked: set | None = None) -> None:
    """Fetch (or find) every dataset and set of weights the configs need, before any is planned or trained.

    Offline, this is where a study stops: one error with a line per missing input, each naming where
    it was looked for, where it is downloaded from and how to point resizelab at a copy. `checked` holds
    the inputs found already (by an earlier call of the same sweep), which are not looked for again.
    """
    from .data import load_dataset
    from .sources import ensure_imagenet_weights

    problems = []
    for cfg in configs:
        preflight(cfg)
    if any(c.backend == "opencv" or any(r.startswith("cv2-") for r in c.serve) for c in configs):
        from .resize import cv2_module

        cv2_module()  # without OpenCV every opencv run would fail alike: stop here, once, naming the install command
    checked = set() if checked is None else checked
    datasets = [k for k in dict.fromkeys(("data", c.resolved().data, c.data_dir) for c in configs if c.data != "synthetic")
                if k not in checked]
    weights = [k for k in dict.fromkeys(("weights", c.arch) for c in configs if c.weights == "imagenet") if k not in checked]
    if not datasets and not weights:
        return
    logger.info("checking data and weights")
    for key in datasets:
        try:
            load_dataset(key[1], key[2])
            checked.add(key)
        except DataUnavailable as e:
            problems.append(str(e))
    for key in weights:
        try:
            ensure_imagenet_weights(key[1])
            checked.add(key)
        except WeightsError as e:
            problems.append(str(e))
    if problems:
        raise DataUnavailable("\n".join(problems))


