"""Every bad input is one clear line and nothing runs away.

A catalogue of inputs users really gave the pipeline, each through the real command line
(``CliRunner`` on ``pipeline.cli.main``, or the ``zs2020`` script where a real process is
needed). Each refused case must exit with status 1, print exactly one ``Error: ...`` line (no
traceback) and leave nothing at its output path: no partial file or folder, no temporary
``*.tmp``. ``zs2020 validate`` reports problems instead: status 1 and the problem in its report.
The last tests kill parallel stages and check that no worker outlives them.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.core.config import PRESET_DIR, load_config
from pipeline.core.errors import UserError
from pipeline.core.io import output_lock
from tests.fixtures_submission import build_handmade_submission

ZS2020 = str(Path(sys.executable).with_name("zs2020"))


# ============================================================================ helpers
def invoke(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(result, *expected: str, alone: bool = True) -> str:
    """Exit status 1 through a handled error (no traceback), exactly one ``Error:`` line, the
    last one (the only line when ``alone``), naming what was expected. Returns that line."""
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}\n{result.output}"
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert not alone or len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def assert_reported(result, *expected: str) -> None:
    """``zs2020 validate``: status 1, an INVALID verdict and the problem in the report."""
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}\n{result.output}"
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "INVALID" in result.output, result.output
    for text in expected:
        assert text in result.output, result.output


def assert_nothing_written(out: Path) -> None:
    """Nothing at ``out``, and beside it no temporary, stamp or lock of it."""
    assert not os.path.lexists(out), f"{out} was written"
    if out.parent.is_dir():
        left = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") or p.name.endswith(".tmp")]
        assert left == []


@pytest.fixture(scope="module")
def submission(tiny_corpus, tmp_path_factory) -> Path:
    """A valid hand-made submission folder for the tiny corpus (tests copy it)."""
    return build_handmade_submission(tmp_path_factory.mktemp("bad_inputs") / "submission", tiny_corpus)


@pytest.fixture
def sub(submission, tmp_path) -> Path:
    return Path(shutil.copytree(submission, tmp_path / "submission"))


def zip_folder(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return zip_path


def first_unit_file(sub: Path) -> str:
    return min(p.relative_to(sub).as_posix() for p in (sub / "2019" / "english" / "test").glob("*.txt"))


def evaluate_args(submission_path: Path, dataset: Path, out: Path) -> list:
    return ["evaluate", submission_path, "--dataset", dataset, "--out", out, "--config", "tiny", "--no-speech",
            "--no-baselines"]


# ============================================================================ config values
@pytest.mark.parametrize("override, named", [
    ("vqvae.train.steps=abc", "vqvae.train.steps"),
    ("seed=abc", "config key seed"),
    ("vqvae.train.lr=abc", "vqvae.train.lr"),
    ("vqvae.train.lr=nan", "vqvae.train.lr"),
    ("vqvae.train.batch_size=0", "vqvae.train.batch_size"),
    ("vqvae.train.checkpoint_every=0", "vqvae.train.checkpoint_every"),
    ("vqvae.train.log_every=0", "vqvae.train.log_every"),
    ("vqvae.model.channels=0", "vqvae.model.channels"),
    ("vqvae.train.segment_frames=2", "vqvae.train.segment_frames"),
    ("melgan.generator.ratios=[5", "melgan.generator.ratios"),
    ("vqvae.train=1", "is a section"),
    ("runtime.device=tpu", "runtime.device"),
])
def test_bad_config_value(override, named, tiny_features, tmp_path):
    out = tmp_path / "run"
    result = invoke("train-vqvae", "--features", tiny_features, "--out", out, "--config", "tiny", "--quiet", override)
    assert_refused(result, named)
    assert_nothing_written(out)


def test_numbers_in_exponent_form_are_numbers():
    """YAML 1.1 reads 1e-3 as a string: the documented override lr=1e-3 was refused."""
    config = load_config("tiny", ["vqvae.train.lr=1e-3", "melgan.loss.stft=1E2", "vqvae.quantizer.decay=9.5e-1"])
    assert (config.vqvae.train.lr, config.melgan.loss.stft, config.vqvae.quantizer.decay) == (1e-3, 100.0, 0.95)
    with pytest.raises(UserError, match="expected an integer"):
        load_config("tiny", ["vqvae.train.steps=1e3"])


def _tiny_text() -> str:
    return (PRESET_DIR / "tiny.yaml").read_text(encoding="utf-8")


def _without_section(text: str, section: str) -> str:
    lines, skipping = [], False
    for line in text.splitlines():
        if line.startswith(f"{section}:"):
            skipping = True
        elif skipping and line and not line.startswith((" ", "#")):
            skipping = False
        if not skipping:
            lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case, named", [
    ("latin1", "not UTF-8"),
    ("missing_section", "config key melgan is missing"),
    ("aliases", "aliases are not allowed"),
    ("deeply_nested", "nested too deeply"),
])
def test_bad_preset_file(case, named, tiny_features, tmp_path):
    preset = tmp_path / "preset.yaml"
    if case == "latin1":
        preset.write_bytes(_tiny_text().encode().replace(b"name: tiny", b"name: caf\xe9"))
    elif case == "missing_section":
        preset.write_text(_without_section(_tiny_text(), "melgan"))
    elif case == "aliases":
        preset.write_text(_tiny_text().replace("seed: 1234", "seed: &s 1234\nextra: [*s, *s]"))
    else:
        preset.write_text("name: " + "[" * 50_000 + "]" * 50_000 + "\n")
    out = tmp_path / "run"
    assert_refused(invoke("train-vqvae", "--features", tiny_features, "--out", out, "--config", preset), named)
    assert_nothing_written(out)


# ============================================================================ hostile zips
def _patch_entry(path: Path, name: str, local: dict[int, int], central: dict[int, int]) -> None:
    """Set 16-bit fields of one entry (offset -> value), in its local header and in its central
    directory record: what a hostile tool would write."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        start = archive.getinfo(name).header_offset
    record = data.find(b"PK\x01\x02")
    while data[record + 46: record + 46 + len(name)] != name.encode():
        record = data.find(b"PK\x01\x02", record + 4)
    for base, fields in ((start, local), (record, central)):
        for offset, value in fields.items():
            data[base + offset: base + offset + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def hostile_zip(sub: Path, kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A zip of the valid submission with one hostile entry; returns it and the expected problem."""
    path = zip_folder(sub, tmp_path / "submission.zip")
    name = first_unit_file(sub)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    if kind == "encrypted":
        _patch_entry(path, name, {6: info.flag_bits | 1}, {8: info.flag_bits | 1})
        return path, "is encrypted"
    if kind == "unsupported_compression":
        _patch_entry(path, name, {8: 93}, {10: 93})
        return path, "unsupported compression (zstandard)"
    data = bytearray(path.read_bytes())          # a corrupt deflate stream
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start, start + info.compress_size):
        data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    return path, "corrupt zip data"


ZIP_CASES = ["encrypted", "unsupported_compression", "corrupt_deflate"]


@pytest.mark.parametrize("kind", ZIP_CASES)
def test_hostile_zip_is_reported_by_validate(kind, sub, tiny_corpus, tmp_path):
    path, problem = hostile_zip(sub, kind, tmp_path)
    assert_reported(invoke("validate", path, "--dataset", tiny_corpus, "--quiet"), problem)


@pytest.mark.parametrize("kind", ZIP_CASES)
def test_hostile_zip_is_refused_by_evaluate(kind, sub, tiny_corpus, tmp_path):
    path, problem = hostile_zip(sub, kind, tmp_path)
    out = tmp_path / "evaluation"
    assert_refused(invoke(*evaluate_args(path, tiny_corpus, out)), "refused, the validator finds", problem)
    assert_nothing_written(out)


def test_zip_bomb_is_refused_without_writing_its_contents(tiny_corpus, tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(12):
            archive.writestr(f"f{i}.txt", b"0" * (3 << 20))
    private_tmp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    private_tmp.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.chdir(cwd)
    assert_reported(invoke("validate", bomb, "--dataset", tiny_corpus, "--quiet"), "looks like a zip bomb")
    out = tmp_path / "evaluation"
    assert_refused(invoke(*evaluate_args(bomb, tiny_corpus, out)), "looks like a zip bomb")
    assert_nothing_written(out)
    assert list(private_tmp.iterdir()) == [] and list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip", "cwd", "tmp"]


# ============================================================================ metadata and unit files
METADATA_CASES = {
    "list_for_a_string": (b"author: [Ada, Grace]\naffiliation: Lab\nopen source: true\n",
                          "entry 'author' must be of type str, got list"),
    "deeply_nested": (b"author: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "malformed YAML"),
    "latin1": ("author: Jos\xe9\naffiliation: Lab\nopen source: true\n".encode("latin-1"), "not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(METADATA_CASES))
def test_bad_metadata(case, sub, tiny_corpus, tmp_path):
    data, problem = METADATA_CASES[case]
    (sub / "metadata.yaml").write_bytes(data)
    assert_reported(invoke("validate", sub, "--dataset", tiny_corpus, "--quiet"), problem)
    out = tmp_path / "evaluation"
    assert_refused(invoke(*evaluate_args(sub, tiny_corpus, out)), problem)
    assert_nothing_written(out)


def test_unit_file_token_with_an_underscore(sub, tiny_corpus, tmp_path):
    unit = sub / first_unit_file(sub)
    lines = unit.read_text().splitlines()
    lines[0] = " ".join(["1_000"] + lines[0].split(" ")[1:])
    unit.write_text("\n".join(lines) + "\n")
    problem = "not a plain decimal number: '1_000'"
    assert_reported(invoke("validate", sub, "--dataset", tiny_corpus, "--quiet"), problem)
    out = tmp_path / "evaluation"
    assert_refused(invoke(*evaluate_args(sub, tiny_corpus, out)), problem)
    assert_nothing_written(out)


# ============================================================================ broken dataset trees
def broken_dataset(corpus: Path, dest: Path, kind: str) -> Path:
    """A copy of the corpus without file lists (as the real dataset) whose test/ holds a
    symbolic link to nowhere, or two links pointing at each other."""
    shutil.copytree(corpus, dest, symlinks=True)
    lang = dest / "2019" / "english"
    shutil.rmtree(lang / "lists")
    test = lang / "test"
    if kind == "dangling":
        (test / "S033_99998.wav").symlink_to(dest / "moved_away.wav")
    else:
        (test / "S033_99998.wav").symlink_to(test / "S033_99999.wav")
        (test / "S033_99999.wav").symlink_to(test / "S033_99998.wav")
    return dest


LINK_PROBLEMS = {"dangling": "broken symbolic link", "loop": "symbolic link loop"}


@pytest.mark.parametrize("kind", sorted(LINK_PROBLEMS))
@pytest.mark.parametrize("command", ["encode", "features", "validate"])
def test_dataset_with_a_broken_link(command, kind, tiny_corpus, tiny_vqvae, submission, tmp_path):
    dataset = broken_dataset(tiny_corpus, tmp_path / "dataset", kind)
    out = tmp_path / "out"
    if command == "encode":
        args = ["encode", "--checkpoint", tiny_vqvae, "--dataset", dataset, "--out", out, "--quiet"]
    elif command == "features":
        args = ["features", "--dataset", dataset, "--out", out, "--config", "tiny", "--quiet"]
    else:
        args = ["validate", submission, "--dataset", dataset, "--quiet"]
    assert_refused(invoke(*args), "test/S033_9999", LINK_PROBLEMS[kind])
    assert_nothing_written(out)


# ============================================================================ output paths
def test_convert_refuses_an_output_it_could_not_write_before_any_work(tiny_vqvae, tiny_corpus, tmp_path, monkeypatch):
    import pipeline.stages.convert as convert_stage

    def no_work(*args, **kwargs):
        raise AssertionError("the converter was built although --out cannot be written")

    monkeypatch.setattr(convert_stage, "Converter", no_work)
    source = next((tiny_corpus / "2019" / "english" / "test").glob("*.wav"))
    base = ["convert", "--vqvae", tiny_vqvae, "--vocoder", "griffinlim", "--source", source, "--target", "V001"]
    folder = tmp_path / "existing"
    folder.mkdir()
    assert_refused(invoke(*base, "--out", folder), "is an existing folder")
    assert list(folder.iterdir()) == []
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for out in (a_file / "out.wav", a_file / "deeper" / "out.wav"):
        assert_refused(invoke(*base, "--out", out), f"{a_file} is not a folder")
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "existing"]


# ============================================================================ code and numbers
class RunsCode:
    """Pickles to a call that writes ``marker``: what a crafted checkpoint hides."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "code ran")


def test_crafted_checkpoint_runs_no_code(tiny_corpus, tmp_path):
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": "zs2020-checkpoint/2", "kind": "vqvae", "models": {"vqvae": RunsCode(marker)}}, crafted)
    wav = next((tiny_corpus / "2019" / "english" / "test").glob("*.wav"))
    out = tmp_path / "units"
    assert_refused(invoke("encode", "--checkpoint", crafted, "--wav", wav, "--out", out, "--quiet"), str(crafted))
    assert not marker.exists()
    assert_nothing_written(out)
    torch.load(crafted, weights_only=False)      # the payload is real: an unsafe load runs it
    assert marker.read_text() == "code ran"


def test_diverged_run_keeps_the_good_checkpoint(tiny_vqvae, tiny_features, tmp_path):
    run = Path(shutil.copytree(tiny_vqvae.parent, tmp_path / "vqvae"))
    good = (run / tiny_vqvae.name).read_bytes()
    result = invoke("train-vqvae", "--features", tiny_features, "--out", run, "--config", "tiny", "--quiet",
                    "vqvae.train.lr=1e6")
    assert_refused(result, "training diverged", alone=False)
    assert (run / tiny_vqvae.name).read_bytes() == good
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


# ============================================================================ real processes
def test_second_submit_on_one_output_fails_at_once(tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "submission"
    args = ["submit", "--dataset", tiny_corpus, "--run", tiny_run, "--out", out, "--no-zip", "--force", "--quiet",
            "--jobs", "1"]
    first = subprocess.Popen([ZS2020, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lock = tmp_path / ".submission.lock"
        deadline = time.monotonic() + 300
        while not lock.exists():
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first submit never took its lock"
            time.sleep(0.02)
        start = time.monotonic()
        second = invoke(*args)
        assert first.poll() is None, "the first submit finished before the second one started"
        assert_refused(second, "another submit run is writing this output now", f"pid {first.pid}")
        assert time.monotonic() - start < 30
        output, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert (out / "2019" / "english" / "test").is_dir()


def test_evaluation_folder_is_locked_while_written(submission, tiny_corpus, tmp_path):
    out = tmp_path / "evaluation"
    with output_lock(out, "evaluation"):          # what a running evaluation holds
        assert_refused(invoke(*evaluate_args(submission, tiny_corpus, out)), "another evaluation is writing")
    assert not out.exists()


def _child_pids(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_lost_sigterm_still_stops_parallel_work_at_the_next_task(jobs):
    """The CLI's SIGTERM handler raises SystemExit and records the signal; raised inside a
    finaliser the exception is dropped, and parallel_map then stops at the next finished task."""
    from pipeline.core.pool import TERMINATION_SIGNALS, parallel_map
    results = parallel_map(_square, range(6), jobs, progress=False)
    assert next(results) == 0
    TERMINATION_SIGNALS.append(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            next(results)
        assert stopped.value.code == 128 + signal.SIGTERM
    finally:
        TERMINATION_SIGNALS.clear()
    assert list(parallel_map(_square, range(3), jobs, progress=False)) == [0, 1, 4]


@pytest.fixture(scope="module")
def slow_dataset(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus with its long wavs linked in twelve more times: features take seconds."""
    root = Path(shutil.copytree(tiny_corpus, tmp_path_factory.mktemp("slow") / "corpus"))
    for split in ("train/unit", "train/voice", "test"):
        folder = root / "2019" / "english" / split
        long_wavs = [p for p in folder.glob("*.wav") if p.stat().st_size > 64_000]
        for copy in range(12):
            for wav in long_wavs:
                os.link(wav, folder / f"{wav.stem}{copy}.wav")
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_parallel_stage_leaves_no_worker_and_no_temporary(signum, slow_dataset, tmp_path):
    out = tmp_path / "features"
    args = [ZS2020, "features", "--dataset", str(slow_dataset), "--out", str(out), "--config", "tiny", "--jobs", "2",
            "--quiet"]
    stage = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers := _child_pids(stage.pid)) < 2:
            assert stage.poll() is None, "the stage ended before its workers were seen"
            assert time.monotonic() < deadline, "no worker processes appeared"
            time.sleep(0.05)
        os.kill(stage.pid, signum)
        # SIGTERM: a clean exit (status 128 + 15) once the running chunks are done
        assert stage.wait(timeout=60) == (-signum if signum == signal.SIGKILL else 128 + signum)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        for pid in [stage.pid] + [pid for pid in workers if _alive(pid)]:     # never leave one behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not (out / "english.h5").exists()
    # a killed writer leaves its temporary; the next run removes it (its writer is gone)
    assert bool(list(out.glob("*.tmp"))) == (signum == signal.SIGKILL)
    finished = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert (out / "english.h5").is_file()
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
