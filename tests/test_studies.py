"""Studies as data (benchmarks/study.py): a tiny study runs end to end, its rows are cached by
resolved config and commit, and its page is rendered from its JSON alone."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks.study import render, render_all, run_study
from benchmarks.study_measures import MEASURES, Data, compare_units, mfcc_abx_by_kind
from benchmarks.studylib import STUDY_DIR, Results, Study, mean_range, parse_table

TINY_STUDY = """
title: Tiny bottom codebooks
question: Does a smaller bottom codebook change the tiny units?
measure: units
preset: tiny
seeds: [3]
base: {vqvae.train.steps: 20}
variants:
  default: {}
  vqvae.model.bottom_codes=8: {vqvae.model.bottom_codes: 8}
"""


@pytest.fixture(scope="module")
def tiny_study(tiny_corpus, tiny_features, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "tiny_codebooks.yaml"
    path.write_text(TINY_STUDY)
    study = Study.load(path)
    data = Data(tiny_corpus, tiny_features, folder / "work", jobs=1)
    return study, data, run_study(study, data, log=lambda text: None)


def test_a_study_measures_every_variant_and_seed(tiny_study):
    study, _, results = tiny_study
    assert sorted((r["variant"], r["seed"]) for r in results.rows) == [("default", 3), ("vqvae.model.bottom_codes=8", 3)]
    small = results.find("vqvae.model.bottom_codes=8", 3)
    assert small["overlay"] == {"vqvae.train.steps": 20, "vqvae.model.bottom_codes": 8}
    assert small["measures"]["codes_used"] <= 8 < results.find("default", 3)["measures"]["codes_used"] + 8
    assert 0 < small["measures"]["abx_codes"] < 100 and small["measures"]["bitrate"] > 0
    assert json.loads(study.results_path.read_text())["rows"] == results.rows


def test_a_current_row_is_not_measured_again(tiny_study):
    study, data, results = tiny_study
    said = []
    again = run_study(study, data, log=said.append)
    assert again.rows == results.rows
    assert all("current" in line for line in said) and len(said) == 2


def test_compare_pairs_two_trained_rows_over_the_same_phone_pairs(tiny_study, tmp_path):
    from pipeline.contract.dataset import Dataset
    from tests.test_speaker_kinds import with_recorded
    study, data, _ = tiny_study
    tests = sorted({u.speaker for u in Dataset(data.dataset).utterances("test")})
    recorded = dataclasses.replace(data, dataset=with_recorded(data.dataset, tmp_path / "corpus", tests))
    [row] = compare_units(study, "default", "vqvae.model.bottom_codes=8", 3, recorded)   # no synthetic pair
    assert row["kind"] == "real" and row["pairs"] > 0 and row["low"] <= row["difference"] <= row["high"]
    [same] = compare_units(study, "default", "default", 3, recorded)
    assert same["difference"] == same["low"] == same["high"] == 0.0
    with pytest.raises(SystemExit, match="measure the row first"):
        compare_units(study, "default", "default", 4, recorded)


def test_the_mfcc_baseline_is_cached_for_the_items_it_was_computed_on(tiny_study, tmp_path):
    import shutil
    from pipeline.contract.dataset import Dataset
    from pipeline.evaluation.evaluate import LanguageTask
    study, data, _ = tiny_study
    task = LanguageTask(Dataset(data.dataset), "excerpt", None)
    error, _ = mfcc_abx_by_kind(study, task, data)
    cache = data.work / "mfcc_abx.json"
    tampered = {**json.loads(cache.read_text()), "abx": -1.0}
    cache.write_text(json.dumps(tampered))
    assert mfcc_abx_by_kind(study, task, data)[0] == -1.0             # the same items: the cached value
    rebuilt = Path(shutil.copytree(data.dataset, tmp_path / "rebuilt"))  # another item file: computed again
    assert mfcc_abx_by_kind(study, LanguageTask(Dataset(rebuilt), "excerpt", None), data)[0] == pytest.approx(error)
    cache.write_text(json.dumps({**tampered, "abx": error}))


def test_the_page_is_the_json_rendered(tiny_study, tmp_path):
    study, _, results = tiny_study
    page = render(study, tmp_path).read_text()
    _, columns = MEASURES[study.measure]
    table = parse_table(page)
    assert [row[0] for row in table] == list(study.variants)
    for row in table:
        measured = [r for r in results.rows if r["variant"] == row[0]]
        assert row[2] == ",".join(str(r["seed"]) for r in measured)
        assert row[4:] == [mean_range([r["measures"].get(c.key) for r in measured], c.digits) for c in columns]
    assert "do not edit it" in page and "`vqvae.model.bottom_codes=8`" in page


def test_a_recorded_row_of_a_retired_variant_stays_on_the_page(tiny_study, tmp_path):
    study, _, results = tiny_study
    copy = Results(tmp_path / "copy.json", [dict(r) for r in results.rows])
    copy.put({"variant": "vqvae.model.decoder_rnn=64", "seed": 1234, "overlay": {"vqvae.model.decoder_rnn": 64},
              "config": "old", "commit": "a000487", "measures": {"abx_codes": 12.5}})
    study.path = tmp_path / "copy.yaml"
    try:
        copy.save()
        page = render(study, tmp_path / "pages").read_text()
    finally:
        study.path = Path(results.path).with_suffix(".yaml")
    row = next(r for r in parse_table(page) if r[0] == "vqvae.model.decoder_rnn=64")
    assert row[3] == "a000487" and row[4] == "12.50"


def test_every_committed_study_renders_to_its_committed_page(tmp_path):
    """The pages under docs/results are exactly what the runner renders from the JSON."""
    pages = render_all(STUDY_DIR, tmp_path)
    for page in pages:
        committed = STUDY_DIR.parents[1] / "docs" / "results" / page.name
        assert committed.read_text() == page.read_text(), f"{committed} is not its JSON rendered"


RECORD = """
title: A diagnosis kept as data
measure: recorded
command: .venv/bin/python benchmarks/diagnose_conversion.py --runs A B
columns:
  - {key: cer, label: CER, digits: 3}
  - {key: dnsmos, label: DNSMOS, digits: 2}
variants: {}
"""


def test_a_record_renders_its_rows_and_refuses_to_run(tmp_path):
    """A table measured by another command is data too: rendered row by row with the commit that
    published it, and never silently re-measured by the runner."""
    path = tmp_path / "diagnosis.yaml"
    path.write_text(RECORD)
    rows = [{"variant": "(a) own wav", "seeds": [1234, 7], "commit": "4ac2097", "measures": {"cer": "0.109", "dnsmos": 3.14}},
            {"variant": "(b) vocoder", "seeds": [1234, 7], "commit": "4ac2097", "measures": {"cer": "0.574 (0.564-0.585)"}}]
    path.with_suffix(".json").write_text(json.dumps({"rows": rows}))
    study = Study.load(path)
    page = render(study, tmp_path / "pages").read_text()
    assert "diagnose_conversion.py --runs A B" in page
    assert parse_table(page) == [["(a) own wav", "1234,7", "4ac2097", "0.109", "3.14"],
                                 ["(b) vocoder", "1234,7", "4ac2097", "0.574 (0.564-0.585)", "–"]]
    with pytest.raises(SystemExit, match="re-run it: .*diagnose_conversion"):
        run_study(study, Data(tmp_path, tmp_path, tmp_path), log=lambda text: None)
