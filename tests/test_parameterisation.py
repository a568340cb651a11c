"""The one conversion module: closed-form round trips for every prediction and sampler space."""

import pytest
import torch

from samplers import parameterisation as P


@pytest.mark.parametrize("prediction", P.PREDICTIONS)
def test_target_maps_back_to_the_clean_latent(prediction):
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9]) if prediction == "flow" else torch.tensor([0.1, 2.0, 30.0])
    x = P.add_noise(x0, n, sigma, prediction)
    pred = P.target(x0, n, sigma, prediction)
    torch.testing.assert_close(P.prediction_to_denoised(x, pred, sigma, prediction), x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(P.denoised_to_prediction(x, x0, sigma, prediction), pred, rtol=1e-4, atol=1e-4)
    space = P.space_of(prediction)
    torch.testing.assert_close(P.denoised_to_eps(x, x0, sigma, space), n, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(P.eps_to_denoised(x, n, sigma, space), x0, rtol=1e-4, atol=1e-4)


def test_closed_forms():
    x0, n, s = torch.tensor([2.0]), torch.tensor([-1.0]), 0.25
    assert float(P.add_noise(x0, n, s, "flow")) == pytest.approx(0.75 * 2 - 0.25)
    assert float(P.add_noise(x0, n, s, "eps")) == pytest.approx(2 - 0.25)
    assert float(P.target(x0, n, s, "v")) == pytest.approx((-1 - 0.25 * 2) / (1 + 0.0625) ** 0.5)
    assert float(P.target(x0, n, s, "flow")) == pytest.approx(-3.0)
    with pytest.raises(ValueError):
        P.space_of("x0")
