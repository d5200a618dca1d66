"""An output is only ever replaced if it is one (pipeline.core.outputs).

Each stage that writes a folder is given, through the real command line, an ``--out`` that is
one of its inputs, holds one, or is a folder of someone else's; each must exit 1 with one
``Error:`` line and leave every file as it was. Then the same stages write, and rewrite with
``--force``, their own folders.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.core.outputs import MARKER_NAME, Input, claim_folder, marker_path, read_marker, write_marker
from tests.fixtures_submission import handmade_submission  # noqa: F401 (a fixture)
from tests.test_bad_inputs import assert_refused, evaluate_args, invoke


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) by its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def notes(tmp_path) -> Path:
    """A user's folder that has nothing to do with zs2020."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("\\chapter{Units}\n")
    return folder


@pytest.fixture
def dataset_copy(tiny_corpus, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_corpus, tmp_path / "dataset"))


def submit_args(dataset: Path, run: Path, out: Path, *extra) -> list:
    return ["submit", "--dataset", dataset, "--run", run, "--out", out, "--quiet", "--jobs", "1", *extra]


# ============================================================================ the rule itself
def test_a_foreign_non_empty_folder_is_refused_and_left_alone(notes):
    before = tree_digest(notes)
    with pytest.raises(UserError, match="did not write"):
        claim_folder(notes, "evaluate", replaces=True)
    assert tree_digest(notes) == before


def test_an_empty_folder_and_a_new_path_are_claimed(tmp_path):
    (tmp_path / "empty").mkdir()
    claim_folder(tmp_path / "empty", "evaluate", replaces=True)
    claim_folder(tmp_path / "new" / "deeper", "evaluate", replaces=True)


def test_a_marked_folder_is_claimed_until_it_holds_a_foreign_file(tmp_path):
    out = tmp_path / "evaluation"
    out.mkdir()
    (out / "scores.json").write_text("{}")
    write_marker(out, "evaluate")
    assert read_marker(out, "evaluate") == {"stage": "evaluate", "entries": ["scores.json"]}
    claim_folder(out, "evaluate", replaces=True)
    (out / "my_notes.txt").write_text("listened on Monday")
    with pytest.raises(UserError, match="my_notes.txt"):
        claim_folder(out, "evaluate", replaces=True)
    claim_folder(out, "evaluate")          # a stage that only adds files may go on
    with pytest.raises(UserError, match="did not write"):
        claim_folder(out, "submit", replaces=True)     # another stage's folder


def test_the_submission_marker_lies_beside_the_folder(tmp_path):
    """The official layout admits no extra entry in the submission folder."""
    out = tmp_path / "submission"
    (out / "2019").mkdir(parents=True)
    write_marker(out, "submit")
    assert marker_path(out, "submit") == tmp_path / f".submission{MARKER_NAME}"
    assert sorted(p.name for p in out.iterdir()) == ["2019"]
    claim_folder(out, "submit", replaces=True)


@pytest.mark.parametrize("relation, expected", [("equal", "which this command reads"),
                                                 ("around", "holds --dataset"),
                                                 ("inside", "lies inside --dataset")])
def test_an_output_may_not_overlap_an_input(relation, expected, tmp_path):
    dataset = tmp_path / "data" / "set"
    dataset.mkdir(parents=True)
    out = {"equal": dataset, "around": tmp_path / "data", "inside": dataset / "out"}[relation]
    with pytest.raises(UserError, match=expected):
        claim_folder(out, "features", [Input("--dataset", dataset)])


def test_a_run_folder_holds_outputs_but_is_not_one(tmp_path):
    run = tmp_path / "run"
    claim_folder(run / "evaluation", "evaluate", [Input("--run", run, holds_outputs=True)])
    with pytest.raises(UserError, match="which this command reads"):
        claim_folder(run, "evaluate", [Input("--run", run, holds_outputs=True)])


# ============================================================================ every stage
def test_submit_into_its_own_dataset_is_refused(tiny_run, dataset_copy):
    before = tree_digest(dataset_copy)
    assert_refused(invoke(*submit_args(dataset_copy, tiny_run, dataset_copy)), "--dataset")
    assert tree_digest(dataset_copy) == before


def test_submit_into_another_dataset_is_refused(tiny_run, tiny_corpus, dataset_copy):
    before = tree_digest(dataset_copy)
    assert_refused(invoke(*submit_args(tiny_corpus, tiny_run, dataset_copy, "--force")), "did not write")
    assert tree_digest(dataset_copy) == before


def test_submit_into_the_run_or_a_model_folder_is_refused(tiny_run, tiny_corpus):
    checkpoint = tiny_run / "vqvae" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    assert_refused(invoke(*submit_args(tiny_corpus, tiny_run, tiny_run)), "--run")
    assert_refused(invoke(*submit_args(tiny_corpus, tiny_run, tiny_run / "vqvae")), "checkpoint")
    assert checkpoint.read_bytes() == before


def test_submit_zip_inside_its_folder_or_onto_a_foreign_file_is_refused(tiny_run, tiny_corpus, tmp_path, notes):
    out = tmp_path / "submission"
    assert_refused(invoke(*submit_args(tiny_corpus, tiny_run, out, "--zip", out / "s.zip")), "lies inside --out")
    assert not out.exists()
    assert_refused(invoke(*submit_args(tiny_corpus, tiny_run, out, "--zip", notes / "thesis.tex")),
                   "was not written by zs2020")
    assert (notes / "thesis.tex").read_text() == "\\chapter{Units}\n"


def test_submit_rewrites_its_own_folder_and_zip_with_force(tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "submission"
    for _ in range(2):
        result = invoke(*submit_args(tiny_corpus, tiny_run, out, "--force"))
        assert result.exit_code == 0, result.output
    assert read_marker(out, "submit")["entries"] == ["2019", "metadata.yaml"]
    (out / "2017").mkdir()          # the user adds the other track by hand: it is never replaced
    assert_refused(invoke(*submit_args(tiny_corpus, tiny_run, out, "--force")), "2017")
    assert (out / "2017").is_dir()


def test_evaluate_never_replaces_a_run_a_submission_or_a_users_folder(handmade_submission, tiny_corpus,
                                                                      tmp_path, notes):
    run = tmp_path / "run"
    sub = Path(shutil.copytree(handmade_submission, run / "submission"))
    (run / "vqvae").mkdir()
    (run / "vqvae" / "checkpoint.pt").write_bytes(b"weights")
    before = tree_digest(run)
    for out, expected in [(run, "holds the submission"), (sub, "is the submission"), (run / "vqvae", "checkpoint"),
                          (notes, "did not write"), (tiny_corpus, "--dataset")]:
        assert_refused(invoke(*evaluate_args(sub, tiny_corpus, out), "--run", run), expected)
    assert tree_digest(run) == before
    assert (notes / "thesis.tex").is_file()


def test_evaluate_rewrites_its_own_folder_but_keeps_a_foreign_file(handmade_submission, tiny_corpus, tmp_path):
    sub = Path(shutil.copytree(handmade_submission, tmp_path / "submission"))
    out = tmp_path / "evaluation"
    first = invoke(*evaluate_args(sub, tiny_corpus, out))
    assert first.exit_code == 0, first.output
    assert "scores.json" in read_marker(out, "evaluate")["entries"]
    again = invoke(*evaluate_args(sub, tiny_corpus, out), "--force")
    assert again.exit_code == 0, again.output
    (out / "listening_notes.txt").write_text("line 3 sounds robotic\n")
    assert_refused(invoke(*evaluate_args(sub, tiny_corpus, out), "--force"), "listening_notes.txt")
    assert (out / "listening_notes.txt").is_file()


def test_corpus_refuses_a_users_folder(notes):
    before = tree_digest(notes)
    assert_refused(invoke("corpus", "--out", notes, "--scale", "tiny"), "did not write")
    assert tree_digest(notes) == before


def test_features_refuses_its_dataset_and_a_users_folder(tiny_corpus, notes):
    before = tree_digest(tiny_corpus)
    assert_refused(invoke("features", "--dataset", tiny_corpus, "--out", tiny_corpus / "features",
                          "--config", "tiny"), "lies inside --dataset")
    assert_refused(invoke("features", "--dataset", tiny_corpus, "--out", notes, "--config", "tiny"),
                   "did not write")
    assert tree_digest(tiny_corpus) == before
    assert (notes / "thesis.tex").is_file()


def test_training_refuses_its_features_a_checkpoint_folder_and_a_users_folder(tiny_run, tiny_corpus, notes):
    features = tiny_run / "features"
    before = tree_digest(tiny_run)
    assert_refused(invoke("train-vqvae", "--features", features, "--out", features, "--config", "tiny"),
                   "--features")
    assert_refused(invoke("train-vqvae", "--features", features, "--out", notes, "--config", "tiny"),
                   "did not write")
    assert_refused(invoke("train-melgan", "--features", features, "--dataset", tiny_corpus, "--out",
                          tiny_run / "vqvae", "--vqvae", tiny_run / "vqvae" / "checkpoint.pt", "--config", "tiny"),
                   "--vqvae")
    assert tree_digest(tiny_run) == before
    assert (notes / "thesis.tex").is_file()


def test_encode_refuses_its_input_folder_and_a_users_folder(tiny_vqvae, tiny_corpus, notes, tmp_path):
    wavs = Path(shutil.copytree(tiny_corpus / "2019" / "english" / "test", tmp_path / "wavs"))
    before = tree_digest(wavs)
    assert_refused(invoke("encode", "--checkpoint", tiny_vqvae, "--folder", wavs, "--out", wavs), "--folder")
    assert_refused(invoke("encode", "--checkpoint", tiny_vqvae, "--folder", wavs, "--out", notes), "did not write")
    assert tree_digest(wavs) == before
    assert sorted(p.name for p in notes.iterdir()) == ["thesis.tex"]


def test_convert_refuses_its_source_its_dataset_and_a_users_folder(tiny_run, dataset_copy, notes):
    source = next((dataset_copy / "2019" / "english" / "test").glob("*.wav"))
    before = tree_digest(dataset_copy)
    assert_refused(invoke("convert", "--run", tiny_run, "--source", source, "--target", "V001", "--out", source),
                   "--source")
    assert_refused(invoke("convert", "--run", tiny_run, "--dataset", dataset_copy, "--out", dataset_copy),
                   "--dataset")
    assert_refused(invoke("convert", "--run", tiny_run, "--dataset", dataset_copy, "--out", notes), "did not write")
    assert tree_digest(dataset_copy) == before
    assert sorted(p.name for p in notes.iterdir()) == ["thesis.tex"]


def test_units_pictures_refuse_a_users_folder(tiny_run, tiny_corpus, notes):
    assert_refused(invoke("units", "stats", "--run", tiny_run, "--dataset", tiny_corpus, "--splits", "test",
                          "--out", notes), "did not write", alone=False)
    assert sorted(p.name for p in notes.iterdir()) == ["thesis.tex"]
