"""Winograd F(4,3) against PyTorch's direct convolution (the reference every algorithm must equal)."""
import pytest
import torch
import torch.nn.functional as F

from common import winograd


@pytest.mark.parametrize("n, cin, cout, h, w", [
    (1, 8, 16, 26, 26),   # a multiple of 4 plus 2: the last tile is half outside
    (1, 3, 5, 13, 13),    # yolov3-tiny's 13×13 head size: 4 tiles, 3 columns cropped
    (2, 4, 6, 7, 10),     # a batch, non-square, both sides cropped
    (1, 5, 3, 4, 4),      # exactly one tile
    (1, 2, 2, 1, 3),      # smaller than a tile
])
@pytest.mark.parametrize("bias, slope", [(True, 0.1), (False, None)])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn-product", "mkl-bmm"])
def test_conv3x3_equals_a_direct_convolution(n, cin, cout, h, w, bias, slope, onednn, monkeypatch):
    if onednn and not winograd.ONEDNN:
        pytest.skip("this torch has no oneDNN")
    monkeypatch.setattr(winograd, "ONEDNN", onednn)
    torch.manual_seed(0)
    x = torch.randn(n, cin, h, w)
    weight = torch.randn(cout, cin, 3, 3)
    b = torch.randn(cout) if bias else None
    expected = F.conv2d(x, weight, b, padding=1)
    if slope is not None:
        expected = F.leaky_relu(expected, slope)
    filters = winograd.Filters(weight)
    assert winograd.transform_weights(weight).shape == (36, cout, cin)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = winograd.conv3x3(x.contiguous(memory_format=layout), filters, b, slope)
        assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
        # float32 transforms with entries up to 8 and 1/24: errors of a few 1e-6 of the output's range
        assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max().item(), rtol=0), (got - expected).abs().max()


def test_a_reused_workspace_gives_each_call_its_own_answer():
    torch.manual_seed(1)
    weight, bias = torch.randn(6, 4, 3, 3), torch.randn(6)
    filters = winograd.Filters(weight)
    workspace = winograd.Workspace(1, 4, 13, 11, 6)
    outputs = []
    for scale in (1.0, -3.0, 0.5):  # the padded border must stay zero and nothing may leak between calls
        x = scale * torch.randn(1, 4, 13, 11)
        got = winograd.conv3x3(x, filters, bias, None, workspace)
        outputs.append(got)
        assert torch.allclose(got, F.conv2d(x, weight, bias, padding=1), atol=1e-4, rtol=1e-4)
    assert outputs[0].data_ptr() != outputs[1].data_ptr()  # outputs are new tensors, not the workspace's


def test_it_claims_only_the_convolutions_it_computes():
    w3, w1 = torch.zeros(4, 4, 3, 3), torch.zeros(4, 4, 1, 1)
    assert winograd.applies(w3, [1, 1], [1, 1])
    assert not winograd.applies(w3, [2, 2], [1, 1])  # stride 2
    assert not winograd.applies(w3, [1, 1], [0, 0])  # no padding: other output size
    assert not winograd.applies(w1, [1, 1], [0, 0])  # 1×1


def test_the_timed_choice_offers_each_algorithm_only_where_it_may_pay():
    from common.yolo import InferenceConv

    def offered(cin, size, kernel=3):
        block = torch.nn.Sequential(torch.nn.Conv2d(cin, 8, kernel, padding=kernel // 2, bias=False),
                                    torch.nn.BatchNorm2d(8), torch.nn.LeakyReLU(0.1))
        conv = InferenceConv(block.eval())
        return set(conv._candidates(torch.zeros(1, cin, size, size)))

    nnpack = {"nnpack"} if torch._nnpack_available() else set()
    assert offered(64, 26) == {"onednn", "winograd"} | nnpack  # yolov3-tiny's 26×26 and 52×52 layers
    assert offered(512, 13) == {"onednn", "winograd"}  # its 13×13 ones: NNPACK only loses there
    assert offered(32, 104) == {"onednn"} | nnpack  # too few channels for our transforms to pay
    assert offered(64, 26, kernel=1) == {"onednn"}  # not a 3×3 convolution


def test_winograd_filters_are_freed_when_no_shape_chose_them():
    from common.yolo import InferenceConv

    block = torch.nn.Sequential(torch.nn.Conv2d(64, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                                torch.nn.LeakyReLU(0.1))
    conv = InferenceConv(block.eval())
    conv._candidates = lambda x: {"onednn": conv._onednn, "winograd": conv._winograd}
    import common.yolo as yolo

    for fastest, kept in (("onednn", False), ("winograd", True)):
        conv._algorithm, conv._winograd_filters, conv._workspaces = {}, None, {}
        original = yolo._best_of
        yolo._best_of = lambda run, x, name=fastest: (run(x), 0.0 if run == conv._candidates(x)[name] else 1.0)[1]
        try:
            with torch.inference_mode():
                conv(torch.randn(1, 64, 16, 16))
        finally:
            yolo._best_of = original
        assert (conv._winograd_filters is not None) == kept and bool(conv._workspaces) == kept
