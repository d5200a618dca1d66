"""Per-file checks of a submission: unit files (strict format) and converted wavs (readable
16 kHz mono 16-bit PCM, a possible and complete header, not silent or saturated garbage). Many
files are checked in worker processes, each with its own reader of the submission."""
from __future__ import annotations

import io

import soundfile as sf

from pipeline.contract.names import SAMPLE_RATE
from pipeline.contract.reader import EntryError, SubmissionTree, open_tree
from pipeline.contract.unitfile import UnitFileError, check_units_text
from pipeline.core.audio import broken_audio, header_problem
from pipeline.core.pool import run_batches

MAX_UNIT_FILE_BYTES = 64 << 20
MAX_WAV_BYTES = 256 << 20


def check_unit_bytes(raw: bytes, name: str, cache: dict | None = None) -> tuple[int | None, str | None]:
    """(columns, None) for a valid unit file, else (None, reason)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None, "not ASCII text"
    try:
        _, columns = check_units_text(text, name, cache)
    except UnitFileError as exc:
        return None, f"line {exc.line}: {exc.reason}" if exc.line else exc.reason
    return columns, None


def check_wav_bytes(raw: bytes) -> str | None:
    """None for a complete, readable 16 kHz mono 16-bit PCM wav with at least one sample and some
    signal, else the reason. libsndfile reads a file whose header claims more than it holds (cut
    short, or an absurd size) without complaint, so the header is checked on its own too."""
    try:
        info = sf.info(io.BytesIO(raw))
    except Exception as exc:  # libsndfile raises several types for garbage
        return f"not a readable wav ({header_problem(raw) or ' '.join(str(exc).split())[:80]})"
    wrong = []
    if info.format != "WAV":
        wrong.append(f"container {info.format}, expected WAV")
    if info.samplerate != SAMPLE_RATE:
        wrong.append(f"{info.samplerate} Hz, expected {SAMPLE_RATE} Hz")
    if info.channels != 1:
        wrong.append(f"{info.channels} channels, expected mono")
    if info.subtype != "PCM_16":
        wrong.append(f"sample format {info.subtype}, expected 16-bit PCM")
    if wrong:
        return "; ".join(wrong)
    problem = header_problem(raw)
    if problem:
        return problem
    if info.frames <= 0:
        return "no audio samples (duration 0)"
    try:
        samples = sf.read(io.BytesIO(raw), frames=info.frames, dtype="int16")[0]
    except Exception as exc:
        return f"audio data unreadable ({' '.join(str(exc).split())[:80]})"
    if len(samples) < info.frames:
        return f"truncated: the header promises {info.frames} samples, the file holds {len(samples)}"
    garbage = broken_audio(samples / 32768.0)
    return f"{garbage} (a diverged or broken vocoder)" if garbage else None


_WORKER: dict = {"tree": None, "lines": {}}


def _open_worker(handle: tuple[str, str]) -> None:
    """Per process: its own reader of the submission and an empty cache of checked lines."""
    context = open_tree(handle)
    _WORKER["tree"] = context.__enter__()
    _WORKER["context"] = context
    _WORKER["lines"] = {}


def _check_batch(batch: list[tuple[str, str]]) -> list[tuple[int | None, str | None]]:
    """Worker: check (kind, relative path) items; unit-file lines are cached per process."""
    out = []
    for kind, rel in batch:
        limit = MAX_UNIT_FILE_BYTES if kind == "txt" else MAX_WAV_BYTES
        try:
            raw = _WORKER["tree"].read_bytes(rel, limit)
        except EntryError as exc:
            out.append((None, str(exc)))
            continue
        if kind == "txt":
            out.append(check_unit_bytes(raw, rel.rsplit("/", 1)[-1], _WORKER["lines"]))
        else:
            out.append((None, check_wav_bytes(raw)))
    return out


def run_file_checks(tree: SubmissionTree, tasks: list[tuple[str, str]], jobs: int,
                    progress: bool) -> list[tuple[int | None, str | None]]:
    """Check (kind "txt"/"wav", relative path) files of ``tree`` in ``jobs`` processes; results in
    task order."""
    size = max(50, min(1000, len(tasks) // (max(jobs, 1) * 8) + 1))
    if jobs <= 1:            # in this process: read through the tree already open
        _WORKER.update(tree=tree, lines={})
        return run_batches(_check_batch, tasks, 1, batch_size=size, desc="checking files", unit="file",
                           progress=progress)
    return run_batches(_check_batch, tasks, jobs, batch_size=size, desc="checking files", unit="file",
                       progress=progress, initializer=_open_worker, initargs=(tree.handle,))
