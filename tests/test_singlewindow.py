import itertools

import pytest
import torch
import torch.nn as nn

from resizelab.training.models import build_model
from resizelab.training.singlewindow import SingleWindowConv2d, single_window, use_single_window_matmul


def _pair(ref: nn.Conv2d) -> nn.Conv2d:
    twin = nn.Conv2d(ref.in_channels, ref.out_channels, ref.kernel_size, ref.stride, ref.padding, bias=ref.bias is not None).double()
    twin.load_state_dict(ref.state_dict())
    use_single_window_matmul(twin)
    return twin


# Maps of 1-3 px, kernels 1-5, strides 1-2, paddings 0-2: single windows and ordinary convolutions alike.
GRID = [case for case in itertools.product([1, 2, 3], [1, 3, 5], [1, 2], [0, 1, 2], [False, True], [False, True])
        if case[0] + 2 * case[3] >= case[1]]


@pytest.mark.parametrize("size,kernel,stride,padding,bias,channels_last", GRID)
def test_matches_conv2d_in_value_and_gradients(size, kernel, stride, padding, bias, channels_last):
    torch.manual_seed(0)
    ref = nn.Conv2d(6, 5, kernel, stride=stride, padding=padding, bias=bias).double()
    x = torch.randn(3, 6, size, size, dtype=torch.double)
    twin = _pair(ref)
    if channels_last:
        ref, twin = ref.to(memory_format=torch.channels_last), twin.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x_ref, x_twin = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_twin = ref(x_ref), twin(x_twin)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y_twin.backward(grad)
    torch.testing.assert_close(y_twin, y_ref)
    torch.testing.assert_close(x_twin.grad, x_ref.grad)
    torch.testing.assert_close(twin.weight.grad, ref.weight.grad)
    if bias:
        torch.testing.assert_close(twin.bias.grad, ref.bias.grad)
    # The gradient arrives in the parameter's own layout, so AccumulateGrad need not copy it.
    assert twin.weight.grad.stride() == twin.weight.stride()


def test_single_window_reads_only_the_pixels_that_meet_taps():
    assert single_window((1, 1), (3, 3), (1, 1), (1, 1)) == (1, 1)  # layer4 at 32 px: the centre tap
    assert single_window((2, 2), (3, 3), (2, 2), (1, 1)) == (2, 2)  # layer4.0.conv1 at 32 px
    assert single_window((2, 2), (1, 1), (2, 2), (0, 0)) == (1, 1)  # its 1x1 stride-2 shortcut: pixel (0, 0)
    assert single_window((2, 2), (3, 3), (1, 1), (1, 1)) is None  # a 2x2 output: an ordinary convolution
    assert single_window((1, 1), (1, 1), (1, 1), (1, 1)) is None  # three output positions


def test_resnet18_at_32px_is_the_same_function_with_its_layer4_as_matmuls():
    torch.manual_seed(0)
    ref, _ = build_model("resnet18", 10, "none")
    twin, _ = build_model("resnet18", 10, "none")
    twin.load_state_dict(ref.state_dict())
    assert use_single_window_matmul(twin) == 20
    assert list(twin.state_dict()) == list(ref.state_dict())
    used = []
    for name, module in twin.named_modules():
        if isinstance(module, SingleWindowConv2d):
            module.register_forward_pre_hook(lambda m, args, name=name: used.append(name) if m._window(args[0]) else None)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for model in (ref, twin):
        nn.functional.cross_entropy(model(x), y).backward()
    assert sorted(used) == ["layer4.0.conv1", "layer4.0.conv2", "layer4.0.downsample.0", "layer4.1.conv1", "layer4.1.conv2"]
    torch.testing.assert_close(twin(x), ref(x), rtol=1e-4, atol=1e-4)
    for (name, p_ref), p_twin in zip(ref.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p_twin.grad, p_ref.grad, rtol=1e-3, atol=1e-4, msg=name)


def test_bf16_autocast_keeps_fp32_parameters_and_gradients():
    model = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1))
    assert use_single_window_matmul(model) == 1
    x = torch.randn(2, 8, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 4, 1, 1)
    y.float().sum().backward()
    assert model[0].weight.grad.dtype == torch.float32
