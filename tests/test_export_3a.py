"""Every issue-3a model exports with torch.export and the exported program matches eager outputs."""

import pytest
import torch

import zoo

MODELS = ["linear_regression", "logistic_regression", "softmax_regression", "perceptron"]


@pytest.mark.parametrize("name", MODELS)
def test_torch_export_round_trip(name):
    torch.manual_seed(0)
    info = zoo.model_info(name)
    model = zoo.create_model(name).eval()
    x = torch.randn(5, *info["input_shape"])
    exported = torch.export.export(model, (x,))
    out = exported.module()(x)
    assert out.shape == (5, info["num_classes"])
    torch.testing.assert_close(out, model(x))
    # a different batch of the same shape still matches (the program is not specialised to x's values)
    x2 = torch.randn(5, *info["input_shape"])
    torch.testing.assert_close(exported.module()(x2), model(x2))


def test_all_3a_models_are_registered_with_cards():
    for name in MODELS:
        info = zoo.model_info(name)
        assert info["paper"] and info["default_config"] and info["num_params"] > 0
