"""Speaker perturbation of log-mels (models/augment.py): the warp moves spectral peaks by the
amount the mel scale says, the equaliser leaves loudness and time alone, draws are seeded."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from models.augment import speaker_perturbation, stretch_factors, tilt_spectrum, warp_frequency


def test_stretch_factors_are_seeded_log_uniform_within_the_range():
    factors = stretch_factors(4000, torch.Generator().manual_seed(3), 0.15)
    assert factors.dtype == torch.float64 and factors.shape == (4000,)
    assert float(factors.min()) >= 1 / 1.15 and float(factors.max()) <= 1.15
    logs = torch.log(factors)
    assert abs(float(logs.mean())) < 0.01                        # symmetric in log: as many up as down
    assert float((logs > 0.5 * torch.log(torch.tensor(1.15))).double().mean()) == pytest.approx(0.25, abs=0.03)
    assert torch.equal(factors, stretch_factors(4000, torch.Generator().manual_seed(3), 0.15))


def _peak(n_mels, bin_index, frames=3):
    x = torch.zeros(2, n_mels, frames)
    x[:, bin_index] = 1.0
    return x


@pytest.mark.parametrize("alpha", [0.85, 1.15, 1.3])
def test_warp_moves_a_peak_to_the_bin_of_the_stretched_frequency(alpha):
    n_mels, k = 80, 40
    centres = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=8000.0)[1:-1]
    expected = int(np.argmin(np.abs(centres - centres[k] * alpha)))
    warped = warp_frequency(_peak(n_mels, k), torch.tensor([alpha, alpha]), 0.0, 8000.0)
    assert abs(int(warped[0, :, 1].argmax()) - expected) <= 1
    assert (int(warped[0, :, 1].argmax()) > k) == (alpha > 1)
    assert torch.equal(warped[0], warped[1])


def test_warp_by_one_is_the_identity_and_factors_are_per_utterance():
    mel = torch.randn(3, 80, 20)
    assert torch.allclose(warp_frequency(mel, torch.ones(3), 0.0, 8000.0), mel, atol=1e-6)
    out = warp_frequency(mel, torch.tensor([1.0, 1.2, 1.0]), 0.0, 8000.0)
    assert torch.allclose(out[[0, 2]], mel[[0, 2]], atol=1e-6) and not torch.allclose(out[1], mel[1])
    with pytest.raises(ValueError, match="one factor per utterance"):
        warp_frequency(mel, torch.ones(2), 0.0, 8000.0)


def test_tilt_adds_one_zero_mean_curve_to_every_frame():
    mel = torch.randn(2, 80, 30)
    out = tilt_spectrum(mel, torch.tensor([[0.3, -0.2, 0.1, 0.05], [0.0, 0.0, 0.0, 0.0]]))
    curve = out[0] - mel[0]
    assert torch.allclose(curve, curve[:, :1].expand_as(curve), atol=1e-5)    # the same in every frame
    assert abs(float(curve[:, 0].mean())) < 1e-5 and float(curve[:, 0].abs().max()) > 0.2
    assert torch.allclose(out[1], mel[1])


def test_perturbation_is_seeded_and_zero_settings_change_nothing():
    mel = torch.randn(4, 80, 25)
    a = speaker_perturbation(mel, torch.Generator().manual_seed(5), 0.15, 0.1, 0.0, 8000.0)
    b = speaker_perturbation(mel, torch.Generator().manual_seed(5), 0.15, 0.1, 0.0, 8000.0)
    c = speaker_perturbation(mel, torch.Generator().manual_seed(6), 0.15, 0.1, 0.0, 8000.0)
    assert torch.equal(a, b) and not torch.allclose(a, c) and a.shape == mel.shape
    assert torch.equal(speaker_perturbation(mel, torch.Generator(), 0.0, 0.0, 0.0, 8000.0), mel)
