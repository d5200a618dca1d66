"""A config read back from a checkpoint written by an earlier version: keys added since take the
value their schema entry states (``key(added=..., was=...)``), keys retired since are dropped, and
a model whose weights no longer fit fails with one line. Presets and user YAML get none of this."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.core.config import config_from_checkpoint, dump, load_config
from pipeline.core.errors import UserError


def older(config: dict) -> dict:
    """A tiny config as a version before the conversion section stored it: the tract search in the
    model section, the code size per level, the vocoder's rate per network, a few retired switches."""
    data = copy.deepcopy(config)
    search = data.pop("conversion")["tract_search"]
    model = data["vqvae"]["model"]
    model["bottom_dim"] = model["top_dim"] = model.pop("code_dim")
    model.update(tract_search=search, jitter=0.0, decoder_rnn=0, speaker_every_block=False)
    train = data["melgan"]["train"]
    train["lr_generator"] = train["lr_discriminator"] = train.pop("lr")
    train["lr_end"] = 1.0
    data["melgan"]["speaker_conditioned"] = False
    data["vqvae"]["perturb"] = {"warp": 0.0, "tilt": 0.0}
    return data


def test_added_keys_take_their_stored_or_added_value_and_retired_keys_are_dropped():
    tiny = load_config("tiny", ["conversion.tract_search=0.3"])
    config = config_from_checkpoint(older(tiny.to_dict()), "old.pt")
    assert config == tiny                                   # the moved keys come back where they are now
    before_the_search = older(tiny.to_dict())
    del before_the_search["vqvae"]["model"]["tract_search"]
    assert config_from_checkpoint(before_the_search, "old.pt").conversion.tract_search == 0.0   # its added value
    # a key that has neither a stored nor an added value is still one line naming it
    no_rate = older(tiny.to_dict())
    del no_rate["melgan"]["train"]["lr_generator"]
    with pytest.raises(UserError, match="old.pt: its stored config does not fit.*melgan.train.lr is missing"):
        config_from_checkpoint(no_rate, "old.pt")


def test_presets_and_user_yaml_state_every_key(tmp_path):
    data = load_config("tiny").to_dict()
    del data["conversion"]
    path = tmp_path / "mine.yaml"
    path.write_text(dump(data))
    with pytest.raises(UserError, match="config key conversion is missing"):
        load_config(path)
    path.write_text(dump(older(load_config("tiny").to_dict())))
    with pytest.raises(UserError, match="unknown key"):
        load_config(path)
    with pytest.raises(UserError, match="unknown key 'vqvae.model.jitter'"):
        load_config("tiny", ["vqvae.model.jitter=0.5"])


@pytest.fixture(scope="module")
def old_run(tiny_vqvae, tmp_path_factory):
    """The tiny run's VQ-VAE checkpoint with its stored config and model meta rewritten as an
    earlier version wrote them (tract search 0.3 in the model section, retired switches)."""
    run = tmp_path_factory.mktemp("old_run")
    path = run / "vqvae" / "checkpoint.pt"
    path.parent.mkdir()
    payload = torch.load(tiny_vqvae, weights_only=True)
    payload["config"] = older(load_config("tiny", ["conversion.tract_search=0.3"]).to_dict())
    payload["meta"]["model"].update(tract_search=0.3, jitter=0.0, input_norm="global", bottom_sees_top=False,
                                    bottom_encoder="frames", decoder_rnn=0, speaker_every_block=False,
                                    restart_min_hits=1)
    torch.save(payload, path)
    return run


def test_a_checkpoint_from_before_a_key_loads(old_run, tiny_vqvae, tiny_corpus, tmp_path):
    from pipeline.contract.dataset import Dataset
    from pipeline.stages.encode import encode_command
    from pipeline.stages.options import run_config
    from pipeline.systems.unit_systems import load_unit_system
    checkpoint = old_run / "vqvae" / "checkpoint.pt"
    assert run_config(old_run, None).conversion.tract_search == 0.3
    old, new = load_unit_system(checkpoint), load_unit_system(tiny_vqvae)
    audio = Dataset(tiny_corpus).utterances("test")[0].read()
    np.testing.assert_array_equal(old.encode_audio(audio).bottom_ids, new.encode_audio(audio).bottom_ids)
    out = tmp_path / "units"
    result = CliRunner().invoke(encode_command, ["--checkpoint", str(checkpoint), "--dataset", str(tiny_corpus),
                                                 "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.npz"))) == len(Dataset(tiny_corpus).utterances("test"))


def test_a_retired_switch_whose_weights_do_not_fit_is_one_line(old_run, tiny_corpus, tmp_path):
    from pipeline.cli import main
    from pipeline.contract.dataset import Dataset
    broken = tmp_path / "checkpoint.pt"
    payload = torch.load(old_run / "vqvae" / "checkpoint.pt", weights_only=True)
    payload["meta"]["model"]["decoder_rnn"] = 4             # trained with the GRU this version no longer has
    payload["models"]["vqvae"]["decoder_rnn.weight_ih_l0"] = torch.zeros(12, 64)
    torch.save(payload, broken)
    wav = Dataset(tiny_corpus).utterances("test")[0].path
    result = CliRunner().invoke(main, ["encode", "--checkpoint", str(broken), "--wav", str(wav),
                                       "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: {broken}: incompatible VQ-VAE checkpoint"), result.output
