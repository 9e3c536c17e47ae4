import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from resizelab.cli import main
from resizelab.core.errors import ConfigError
from resizelab.analysis.probe import STAGES, ProbeConfig, ResidualRatios, band_shares, linear_cka, run_probe

from conftest import write_imagefolder


@pytest.mark.parametrize("n, p", [(40, 12), (12, 40)])  # the feature and the Gram formula
def test_cka_is_one_for_itself_and_invariant_to_rotation_and_scale(n, p):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, p, generator=gen, dtype=torch.float64), torch.randn(n, p, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q * 3.7) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x @ q, 0.2 * y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    # Not invariant to any invertible map, only orthogonal ones and isotropic scaling.
    stretch = torch.diag(torch.linspace(0.1, 3.0, p, dtype=torch.float64))
    assert linear_cka(x, x @ stretch) < 0.95


def test_cka_of_single_features_is_the_squared_correlation_and_both_formulas_agree():
    x, y = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [4.0], [9.0]])
    # centred: (-1, 0, 1) and (-11/3, -2/3, 13/3); covariance 8, variances 2 and 98/3
    assert linear_cka(x, y) == pytest.approx(64 / (2 * 98 / 3), rel=1e-12)
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(30, 10, generator=gen, dtype=torch.float64)
    b = torch.randn(30, 50, generator=gen, dtype=torch.float64)  # more features than inputs: the Gram formula
    ac, bc = a - a.mean(0), b - b.mean(0)
    by_features = (bc.T @ ac).square().sum() / torch.sqrt((ac.T @ ac).square().sum() * (bc.T @ bc).square().sum())
    assert linear_cka(a, b) == pytest.approx(by_features.item(), rel=1e-10)


def test_block_ratio_matches_a_hand_computation():
    torch.manual_seed(0)
    basic = BasicBlock(8, 8)
    bottleneck = Bottleneck(8, 4, stride=2, downsample=nn.Sequential(conv1x1(8, 16, 2), nn.BatchNorm2d(16)))
    model = nn.Sequential(basic, bottleneck)
    for m in model.modules():  # BN that does something, so a hook on the wrong tensor shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    model.eval()
    x = torch.randn(5, 8, 12, 12)

    def ratio(branch, skip):
        return (branch.flatten(1).norm(dim=1) / skip.flatten(1).norm(dim=1)).mean().item()

    with torch.no_grad():
        branch = basic.bn2(basic.conv2(F.relu(basic.bn1(basic.conv1(x)))))
        expected0 = ratio(branch, x)
        y = F.relu(branch + x)
        b = bottleneck
        branch = b.bn3(b.conv3(F.relu(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(y))))))))
        expected1 = ratio(branch, b.downsample(y))
        hooks = ResidualRatios(model)
        model(x)
        hooks.close()
    got = hooks.ratios()
    assert list(got) == ["0", "1"]
    assert got["0"] == pytest.approx(expected0, rel=1e-6) and got["1"] == pytest.approx(expected1, rel=1e-6)
    assert abs(expected0 - expected1) > 0.01  # two different numbers, each in its place


def test_conv1_band_shares_put_a_slow_wave_low_and_a_checkerboard_high():
    i = torch.arange(16.0)
    slow = torch.cos(2 * torch.pi * i / 16).view(1, 16).expand(16, 16)  # 1 cycle per 16 px
    checker = (-1.0) ** (i.view(-1, 1) + i.view(1, -1))  # the Nyquist frequency on both axes
    for maps, band in ((slow, 0), (checker, 2)):
        sums, total = band_shares(maps.expand(2, 3, 16, 16))
        assert sums.sum().item() == pytest.approx(total)
        assert sums[band] / total > 0.99


def test_probe_at_native_size_is_identity_and_at_16_px_is_measured(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=4)
    base = dict(data=f"imagefolder:{root}", weights="none", interpolations=("nearest", "bilinear"), limit=12,
                out=str(tmp_path / "out"))
    same = run_probe(ProbeConfig(size=32, **base))
    for m in same.methods:
        assert all(m.cka[s] == pytest.approx(1.0, abs=1e-9) for s in STAGES)
        assert m.residual_ratio == pytest.approx(same.native.residual_ratio)
    result = run_probe(ProbeConfig(size=16, **base))
    assert result.weights_tag == "none" and result.images == 12 and len(result.native.residual_ratio) == 8
    assert result.grids["stem"] == (4, 4) and result.grids["layer4"] == (1, 1)
    for m in result.methods:
        assert all(0 < m.cka[s] <= 1 for s in STAGES) and m.cka["stem"] < 0.9999
        assert m.cka["pooled"] == pytest.approx(m.cka["layer4"])  # layer4 is 1x1 at 16 and 32 px: pooling is a no-op
        assert sum(m.conv1_bands[b] for b in ("low", "mid", "high")) == pytest.approx(1.0)
    assert result.methods[0].conv1_bands != result.methods[1].conv1_bands
    data = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert data["methods"][1]["input"] == "bilinear" and data["methods"][1]["antialias"] is True


def test_a_weights_file_is_loaded(tmp_path):
    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=3)
    torch.manual_seed(1)
    path = tmp_path / "r18.pt"
    torch.save(resnet18(num_classes=3).state_dict(), path)
    base = dict(data=f"imagefolder:{root}", size=16, interpolations=("bilinear",), limit=9, out=str(tmp_path / "out"))
    from_file = run_probe(ProbeConfig(weights=str(path), **base))
    random = run_probe(ProbeConfig(weights="none", **base))
    assert from_file.weights_tag.startswith("file:r18.pt@")
    # Same seed for the random init: only the loaded tensors can make these differ.
    assert from_file.native.residual_ratio != pytest.approx(random.native.residual_ratio)


def test_cli_probe_json_and_one_line_errors(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=3)
    assert main(["probe", "--data", f"imagefolder:{root}", "--weights", "none", "--size", "16", "--limit", "9",
                 "--out", str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["input"] for m in data["methods"]] == ["nearest", "bilinear", "bicubic"]
    assert set(data["methods"][0]["cka"]) == set(STAGES)
    for argv, message in ((["--arch", "resnt18"], "closest: resnet18"),
                          (["--weights", str(tmp_path / "missing.pt")], "is not a file"),
                          (["--interpolation", "lanczos", "--backend", "tensor"], "use backend 'pil' for lanczos"),
                          (["--size", "16px"], "--size: expected a whole number")):
        assert main(["probe", "--data", f"imagefolder:{root}", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err


def test_probe_config_refuses_what_it_cannot_probe():
    with pytest.raises(ConfigError, match="interpolations must list at least one value"):
        ProbeConfig(data="synthetic", interpolations=())
    with pytest.raises(ConfigError, match="limit must be at least 1"):
        ProbeConfig(data="synthetic", weights="none", limit=0)


def test_probe_json_writes_null_not_bare_nan(tmp_path, capsys):
    from PIL import Image

    root = write_imagefolder(tmp_path / "imgs", n_train=1, n_val=3)
    for path in (root / "val").rglob("*.png"):  # every test image alike: no spread, so CKA is 0/0
        Image.new("RGB", (32, 32), (90, 90, 90)).save(path)

    def no_nan(token):
        raise AssertionError(f"bare {token} in JSON")
    assert main(["probe", "--data", f"imagefolder:{root}", "--weights", "none", "--size", "16", "--interpolation", "bilinear",
                 "--out", str(tmp_path / "out"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    assert None in data["methods"][0]["cka"].values()
    json.loads((tmp_path / "out" / "probe.json").read_text(), parse_constant=no_nan)
