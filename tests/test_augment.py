"""Speaker perturbation of log-mels (models/augment.py): the warp moves spectral peaks by the
amount the mel scale says, one factor per utterance, and its draws are seeded."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from models.augment import stretch_factors, warp_frequency


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
