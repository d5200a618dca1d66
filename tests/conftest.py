"""Session fixtures shared by every test module: one tiny corpus, its features, and tiny
trained models, each built once per test session (CI-sized: seconds to a minute each).

Contract with the pipeline modules (each fixture calls one public function):
    pipeline.corpus.build.build_corpus(out_dir, scale="tiny", jobs=2) -> Path (the corpus root)
    pipeline.features.dump_features(dataset_root, out_dir, config, jobs=...) -> list[Path] (.h5 files)
    pipeline.train.vqvae.train(features_dir, out_dir, config) -> Path (checkpoint.pt)
    pipeline.train.melgan.train(features_dir, dataset_root, out_dir, config) -> Path (checkpoint.pt)
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_config():
    from pipeline.core.config import load_config
    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from pipeline.corpus.build import build_corpus
    return build_corpus(tmp_path_factory.mktemp("corpus") / "corpus", scale="tiny", jobs=2)


@pytest.fixture(scope="session")
def tiny_features(tiny_corpus, tiny_config, tmp_path_factory):
    from pipeline.features import dump_features
    out = tmp_path_factory.mktemp("run") / "features"
    dump_features(tiny_corpus, out, tiny_config, jobs=2)
    return out


@pytest.fixture(scope="session")
def tiny_vqvae(tiny_features, tiny_config):
    from pipeline.train.vqvae import train
    return train(tiny_features, tiny_features.parent / "vqvae", tiny_config)


@pytest.fixture(scope="session")
def tiny_melgan(tiny_features, tiny_corpus, tiny_config):
    from pipeline.train.melgan import train
    return train(tiny_features, tiny_corpus, tiny_features.parent / "melgan", tiny_config)


@pytest.fixture(scope="session")
def tiny_run(tiny_vqvae, tiny_melgan):
    """The run folder holding features/, vqvae/checkpoint.pt and melgan/checkpoint.pt."""
    return tiny_vqvae.parent.parent
