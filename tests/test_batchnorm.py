"""--bn-recalibrate: BatchNorm's running statistics estimated afresh after training (precise BN)."""

import logging

import pytest
import torch

from resizelab.core.config import RunConfig, identity_payload
from resizelab.training.engine import BATCH_NORMS, Run, train


def test_the_statistics_are_the_plain_average_over_exactly_n_training_batches():
    # More batches than an epoch holds (8 of 32 images): the count wraps into a second pass.
    cfg = RunConfig(data="synthetic:256:64", size=8, epochs=1, weights="none", precision="fp32", device="cpu",
                    batch_size=32, bn_recalibrate=12)
    run = Run(cfg).setup()
    run.begin_epoch()
    for _ in range(run.steps_per_epoch):
        run.step()
    first = next(m for m in run.model.modules() if isinstance(m, BATCH_NORMS))
    means = []
    hook = first.register_forward_pre_hook(lambda module, args: means.append(args[0].float().mean(dim=(0, 2, 3))))
    try:
        done = run.recalibrate_batchnorm()
    finally:
        hook.remove()
    assert done["batches"] == 12 and len(means) == 12 and done["layers"] == sum(isinstance(m, BATCH_NORMS) for m in run.model.modules())
    torch.testing.assert_close(first.running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)
    assert first.momentum == 0.1 and first.num_batches_tracked.item() == 12  # the layer's own momentum given back


@pytest.mark.slow  # two trainings of a MobileNet: 2.6 s
def test_a_mobilenet_that_tests_at_chance_after_a_short_run_learns_to_test_with_fresh_statistics(caplog):
    """MobileNetV3's BatchNorm momentum is 0.01: after 16 steps its running statistics are mostly their initial
    values, and every test image lands in one class although training learned (measured: 10 % against 71 %)."""
    base = dict(data="synthetic:512:256", arch="mobilenet_v3_small", size=32, weights="none", epochs=1,
                optimizer="adamw", lr=0.003, device="cpu", batch_size=32)
    with caplog.at_level(logging.WARNING, logger="resizelab"):
        plain = train(RunConfig(**base, save_weights=True), progress=False)
    # The run that tested at chance says why it likely did and what to do.
    assert any("every test image was put in one class" in r.getMessage() and "--bn-recalibrate 50" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    fresh = train(RunConfig(**base, save_weights=True, bn_recalibrate=30), progress=False)
    assert plain.test_accuracy < 20 and plain.epochs[-1].train_accuracy > 25
    assert fresh.test_accuracy > 50 and not any("one class" in r.getMessage() for r in caplog.records)
    assert fresh.provenance["bn_recalibrated"]["batches"] == 30 and plain.provenance["bn_recalibrated"] is None
    # Another experiment, so another name; off adds nothing to the name (runs stored before it keep theirs).
    assert fresh.config_hash != plain.config_hash
    assert "bn_recalibrate" not in identity_payload(RunConfig(**base).to_dict())
    # What is stored is the model that was tested: its state_dict carries the fresh statistics.
    key = next(k for k in fresh.state_dict if k.endswith("running_var"))
    assert not torch.equal(fresh.state_dict[key], plain.state_dict[key])
