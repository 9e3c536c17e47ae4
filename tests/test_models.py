import urllib.error

import pytest
import torch

from resizelab.core.errors import WeightsError
from resizelab.training.models import build_model, count_macs


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "mobilenet_v2"])
def test_head_is_replaced_for_the_class_count(arch):
    model, info = build_model(arch, 7, "none")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert info.weights_tag == "none" and info.params > 1e6


def test_cifar_stem_keeps_resolution():
    model, _ = build_model("resnet18", 10, "none", stem="cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    # layer1 sees 32x32 with the CIFAR stem at 32 px, as the ImageNet stem does at 128 px: similar cost
    cifar = count_macs(model, (3, 32, 32))
    imagenet = count_macs(build_model("resnet18", 10, "none")[0], (3, 128, 128))
    assert 0.8 < cifar / imagenet < 1.1


def test_macs_match_the_published_resnet18_count():
    model, _ = build_model("resnet18", 1000, "none")
    assert abs(count_macs(model, (3, 224, 224)) / 1e9 - 1.82) < 0.03  # torchvision lists 1.81 GFLOPS (MACs)


def test_backbone_only_file_loads_and_says_what(tmp_path):
    source, _ = build_model("resnet18", 1000, "none")
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "backbone.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    model, info = build_model("resnet18", 10, str(path))
    assert info.loaded_keys == len(state) and info.weights_tag.startswith("file:backbone.pt@")
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 10


def test_mismatched_weights_are_a_clear_error(tmp_path):
    path = tmp_path / "r34.pt"
    torch.save(build_model("resnet34", 10, "none")[0].state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit this architecture: .*missing|unexpected"):
        build_model("resnet18", 10, str(path))
    wrong_shape = build_model("resnet18", 10, "none")[0].state_dict()
    wrong_shape["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(wrong_shape, path)
    with pytest.raises(WeightsError, match="wrong shape .*layer1.0.conv1.weight"):
        build_model("resnet18", 10, str(path))
    # A text file (torch.load raised a bare KeyError for "hello"), a cut pickle, a file that is not there: one line each.
    for content, message in ((b"hello", r"is not a file torch.save wrote \(it starts with b'hell'\); give a file written by "
                                         r"torch.save\(model.state_dict\(\), path\), or --weights none or imagenet"),
                             (b"garbage", "is not a file torch.save wrote"),
                             (b"\x80\x02garbage", r"is not a readable state_dict \(torch.load\(weights_only=True\) cannot read it\)")):
        path.write_bytes(content)
        with pytest.raises(WeightsError, match=message) as info:
            build_model("resnet18", 10, str(path))
        assert "\n" not in str(info.value) and "weights_only` set to `False`" not in str(info.value)


def test_cifar_stem_with_backbone_weights_reinitialises_only_conv1(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(build_model("resnet18", 1000, "none")[0].state_dict(), path)
    model, info = build_model("resnet18", 10, str(path), stem="cifar")
    assert "conv1.weight" in info.skipped_keys


def test_offline_imagenet_weights_name_the_cache_path(monkeypatch, isolated_cache):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError) as info:
        build_model("resnet18", 10, "imagenet")
    message = str(info.value)
    assert str(isolated_cache / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--weights none" in message and "\n" not in message


def test_a_weights_file_full_of_nan_is_refused_before_training(tmp_path, capsys):
    from resizelab.cli import main

    state = build_model("resnet18", 10, "none")[0].state_dict()
    state["layer1.0.conv1.weight"] = torch.full_like(state["layer1.0.conv1.weight"], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"holds NaN or infinite values in 1 tensor \(e.g. layer1.0.conv1.weight\)"):
        build_model("resnet18", 10, str(path))
    db = tmp_path / "r.db"
    assert main(["run", "--data", "synthetic:40:20", "--size", "8", "--epochs", "1", "--weights", str(path), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "holds NaN or infinite values" in err[-1] and "learning rate" not in "\n".join(err)
