"""Behaviour of the MLP and LeNet-5 families and of the weight initialisers."""

import math

import pytest
import torch
import torch.nn as nn

import zoo
from zoo.layers import Maxout
from zoo.lenet import LeNet5
from zoo.mlp import MLP


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "prelu", "selu", "maxout"])
def test_mlp_every_activation(act):
    m = MLP((1, 8, 8), 10, hidden=[32, 16], act=act, dropout=0.1, batch_norm=True)
    assert m(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_mlp_depth_width_dropout_batchnorm():
    m = MLP((20,), 3, hidden=[7, 5, 4], act="relu", dropout=0.5, batch_norm=True)
    linears = [l for l in m.modules() if isinstance(l, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(20, 7), (7, 5), (5, 4), (4, 3)]
    assert sum(isinstance(l, nn.BatchNorm1d) for l in m.modules()) == 3
    assert sum(isinstance(l, nn.Dropout) for l in m.modules()) == 3
    assert isinstance(MLP((4,), 2, hidden=[8], act="selu", dropout=0.1).features[1][-1], nn.AlphaDropout)
    assert MLP((4,), 2, hidden=[]).num_features == 4  # a linear model


def test_maxout_takes_max_of_pieces():
    mo = Maxout(3, 2, pieces=3)
    x = torch.randn(4, 3)
    z = mo.linear(x).view(4, 2, 3)
    torch.testing.assert_close(mo(x), z.max(-1).values)


def test_lenet5_matches_the_paper_layout():
    m = LeNet5((1, 32, 32), 10)
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    fcs = [l for l in m.modules() if isinstance(l, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 6, (5, 5)), (6, 16, (5, 5))]
    assert [(l.in_features, l.out_features) for l in fcs] == [(400, 120), (120, 84), (84, 10)]
    # one bias per output unit (feature map or neuron)
    assert all(c.bias.shape == (c.out_channels,) for c in convs)
    assert all(l.bias.shape == (l.out_features,) for l in fcs)
    # 61,706 parameters with full C3 connectivity
    assert sum(p.numel() for p in m.parameters()) == 61706


def test_lenet5_configurable_channels_and_widths():
    m = LeNet5((3, 28, 28), 5, widths=(8, 20), act="relu", pool="max")
    assert m(torch.randn(2, 3, 28, 28)).shape == (2, 5)
    assert m.features[0][0].out_channels == 8 and m.features[1][0].out_channels == 20


@pytest.mark.parametrize("scheme", zoo.INIT_SCHEMES)
def test_init_schemes_variance_and_zero_bias(scheme):
    torch.manual_seed(0)
    lin = nn.Linear(400, 300)
    zoo.init_weights(lin, scheme)
    fan_in, fan_out = 400, 300
    expected = {"lecun": 1 / fan_in, "xavier": 2 / (fan_in + fan_out), "he": 2 / fan_in}[scheme.split("_")[0]]
    assert lin.weight.var().item() == pytest.approx(expected, rel=0.05)
    assert torch.all(lin.bias == 0)
    if scheme.endswith("uniform"):
        assert lin.weight.abs().max().item() <= math.sqrt(3 * expected) + 1e-6


def test_unknown_init_scheme():
    with pytest.raises(ValueError, match="unknown init scheme 'glorot'"):
        zoo.init_weights(nn.Linear(2, 2), "glorot")
