"""Every SimpleConvNet / VGG / ResNet / RNN-family model exports through ``torch.export`` and the
exported program gives the eager model's outputs on a fresh random input."""

import pytest
import torch

import zoo

FAMILIES = {"simple_convnet", "vgg", "resnet", "rnn"}
MINE = [n for n in zoo.list_models() if zoo._registry._REGISTRY[n].family in FAMILIES]


def test_every_family_is_covered():
    fams = {zoo._registry._REGISTRY[n].family for n in MINE}
    assert fams == FAMILIES
    assert {"vgg11", "vgg19_bn", "vgg_small", "resnet18", "resnet50", "resnet20", "resnet56", "rnn", "lstm", "gru", "simple_convnet"} <= set(MINE)


@pytest.mark.parametrize("name", MINE)
def test_torch_export_round_trip(name):
    torch.manual_seed(0)
    info = zoo.model_info(name)
    model = zoo.create_model(name).eval()  # eval: batch norm uses running stats, dropout is off
    example = torch.randn(2, *info["input_shape"])
    ep = torch.export.export(model, (example,))
    x = torch.randn(2, *info["input_shape"])  # a different input than the one traced
    with torch.no_grad():
        expected = model(x)
    got = ep.module()(x)
    assert got.shape == expected.shape == (2, info["num_classes"])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
