"""Report figures from a mixed store (several sweeps, many settings differing): legends that say only what differs,
wrapped, and drawn inside the figure, never over the data or cut at its edges."""

from __future__ import annotations

import itertools

import pytest

from resizelab.report import figures
from resizelab.store.runs import Group

SIZES = (16, 32, 64)


def mixed_groups() -> list[Group]:
    """What `resizelab report` over a store of several sweeps groups: methods x backends x epochs x test subsets."""
    groups = []
    settings = itertools.product(("nearest", "bilinear", "bicubic"), ("tensor", "pil"), (1, 2), (200, None))
    for k, (method, backend, epochs, limit_test) in enumerate(settings):
        if k % 3 == 2:  # not every combination: as sweeps run at different times leave it
            continue
        for size in SIZES:
            config = {"size": size, "interpolation": method, "backend": backend, "epochs": epochs, "limit_test": limit_test,
                      "antialias": method != "nearest", "data": "imagefolder:/data/cifar10-sample", "weights": "none",
                      "lr": 0.01, "arch": "resnet18"}
            runs = [{"config": {**config, "seed": seed}, "result": {}, "seed": seed,
                     "test_accuracy": 20.0 + k + size / 16 + seed, "train_seconds": size / 8 + seed,
                     "images_per_second": 4000 / size, "macs_per_image": 37e6 * (size / 32) ** 2, "params": 11.2e6}
                    for seed in range(2)]
            groups.append(Group(config, runs, {}))
    return groups


@pytest.mark.parametrize("draw", [figures.figure_accuracy_vs_size, figures.figure_cost_vs_size])
def test_a_mixed_store_s_legends_are_short_wrapped_and_inside_the_figure(draw, tmp_path, monkeypatch):
    drawn = []
    real = figures.legend_below

    def keep(fig, handles, labels, **kwargs):  # the real layout, and the figure and legend it made, to measure
        legend = real(fig, handles, labels, **kwargs)
        drawn.append((fig, legend))
        return legend

    monkeypatch.setattr(figures, "legend_below", keep)
    assert draw(mixed_groups(), tmp_path / "f.png")
    (fig, legend), = drawn
    box, frame = legend.get_window_extent(), fig.bbox
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1, (box, frame)
    # Below every plot: it covers no data.
    for ax in fig.axes:
        assert box.y1 <= ax.get_window_extent().y0 + 1, (box, ax.get_window_extent())
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 8 * (2 if draw is figures.figure_accuracy_vs_size else 1) or len(texts) >= 8
    assert all(len(line) <= figures.LEGEND_WRAP for t in texts for line in t.splitlines())
    # Only what differs, without key=value noise; what is the same everywhere (data, weights, lr) is not repeated.
    assert not any("=" in t or "cifar10-sample" in t or "lr" in t for t in texts), texts
    assert any("epochs 2" in t and "test 200" in t for t in texts), texts


def test_labels_name_what_differs_in_few_words():
    cfg = {"size": 16, "interpolation": "bilinear", "backend": "tensor", "epochs": 1, "limit_test": 200, "antialias": True}
    assert figures.short_label(cfg, ["size", "interpolation", "backend", "epochs", "limit_test"]) == "bilinear, tensor, epochs 1, test 200"
    assert figures.short_label(cfg, ["size"]) == "bilinear"
