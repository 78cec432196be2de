"""Every registered model exports through ``torch.export`` and the exported program gives the eager
model's outputs on a fresh random input (not the one traced)."""

import pytest
import torch

import zoo


@pytest.mark.parametrize("name", zoo.list_models())
def test_torch_export_round_trip(name):
    torch.manual_seed(0)
    info = zoo.model_info(name)
    model = zoo.create_model(name).eval()  # eval: batch norm uses running stats, dropout is off
    ep = torch.export.export(model, (torch.randn(2, *info["input_shape"]),))
    x = torch.randn(2, *info["input_shape"])
    with torch.no_grad():
        expected = model(x)
    got = ep.module()(x)
    # models that output images (generators) declare output_shape; the rest output num_classes numbers
    assert got.shape == expected.shape == (2, *(getattr(model, "output_shape", None) or (info["num_classes"],)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
