"""Automatic measures of converted speech (the official 2019 track used human MOS, CER and
speaker similarity; these are offline stand-ins, meaningful for comparisons, not absolutes).

For every synthesis line with a converted wav ``V00x_<id>.wav`` in the submission:
  * speaker similarity (resemblyzer GE2E): cosine of the converted wav's embedding to the target
    voice's mean embedding (over its ``train/voice`` utterances) and to the source speaker's mean
    embedding (over its long test utterances); "closer to target" when the first is larger;
  * intelligibility: pocketsphinx ASR, CER and WER against the sentence's transcript, beside the
    same ASR on the reference rendering (the target voice's own) and on the source;
  * mel-cepstral distortion (dB) against the reference rendering after DTW (24 mel-cepstral
    coefficients c1..c24 = DCT of the natural-log mel of our one log-mel front end);
  * DNSMOS (speechmos) overall quality for converted, reference and source.
Lines run in parallel worker processes; every model ships its weights in its wheel (offline).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.fft import dct

from models.featurespec import FeatureSpec
from pipeline.contract.dataset import Dataset, SynthesisLine, Utterance
from pipeline.contract.names import SAMPLE_RATE
from pipeline.core.audio import decode_wav, read_wav
from pipeline.core.pool import parallel_map
from pipeline.evaluation.abx import dtw_normalized, edit_distance, resample_picks
from pipeline.features import logmel

MCD_COEFFS = 24
MEASURES = ("similarity", "asr", "mcd", "dnsmos")
_MODELS: dict = {}   # per process: loaded lazily, reused across lines


# --------------------------------------------------------------------------- models
def _resemblyzer():
    """The resemblyzer module, imported without its dependencies' warnings: its first import
    loads webrtcvad, whose ``import pkg_resources`` makes setuptools (pinned < 81 for that very
    import) print a deprecation warning in every process that scores speech, and its own
    ``scipy.ndimage.morphology`` import warns too. Neither is about this project's code or
    actionable by its users; only those two messages are filtered, and only around this import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*scipy.ndimage.morphology", category=DeprecationWarning)
        import resemblyzer
    return resemblyzer


def _encoder():
    if "encoder" not in _MODELS:
        _MODELS["encoder"] = _resemblyzer().VoiceEncoder("cpu", verbose=False)
    return _MODELS["encoder"]


def speaker_embedding(audio: np.ndarray) -> np.ndarray:
    """256-d unit GE2E embedding. Silence trimming is skipped when it leaves under 0.5 s."""
    wav = _resemblyzer().preprocess_wav(np.asarray(audio, dtype=np.float32), source_sr=SAMPLE_RATE)
    if len(wav) < 8000:
        wav = np.asarray(audio, dtype=np.float32)
    return _encoder().embed_utterance(wav)


def mean_embedding(audios: list[np.ndarray]) -> np.ndarray:
    emb = np.mean([speaker_embedding(a) for a in audios], axis=0)
    return emb / np.linalg.norm(emb)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def transcribe(audio: np.ndarray) -> str:
    if "asr" not in _MODELS:
        from pocketsphinx import Decoder
        _MODELS["asr"] = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    decoder = _MODELS["asr"]
    # Reset the feature front end (its cepstral-mean state carries over between utterances):
    # otherwise the same wav decodes differently depending on what was decoded before it.
    decoder.reinit_feat()
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def dnsmos(audio: np.ndarray) -> float:
    """DNSMOS overall MOS (speechmos models). Sessions are rebuilt with one thread each:
    parallelism comes from the worker processes, and onnxruntime's default all-core pools
    thrash on a shared machine."""
    if "dnsmos" not in _MODELS:
        import onnxruntime as ort
        from speechmos import dnsmos as _dnsmos
        base = Path(_dnsmos.__file__).parent / "dnsmos_models"
        model = _dnsmos.DNSMOS(str(base / "sig_bak_ovr.onnx"), str(base / "model_v8.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        model.onnx_sess = ort.InferenceSession(str(base / "sig_bak_ovr.onnx"), options)
        model.p808_onnx_sess = ort.InferenceSession(str(base / "model_v8.onnx"), options)
        _MODELS["dnsmos"] = model
    result = _MODELS["dnsmos"](np.clip(audio, -1.0, 1.0).astype(np.float32), SAMPLE_RATE, False)
    return float(result["ovrl_mos"])


# --------------------------------------------------------------------------- text scores
def normalize_text(text: str) -> str:
    """Lower case, letters and apostrophes only, single spaces (pocketsphinx output style)."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def error_rate(reference: list, hypothesis: list) -> float:
    """Edit distance / reference length (the usual WER/CER definition)."""
    vocab: dict = {}
    ref = np.array([vocab.setdefault(t, len(vocab)) for t in reference], dtype=np.int64)
    hyp = np.array([vocab.setdefault(t, len(vocab)) for t in hypothesis], dtype=np.int64)
    return edit_distance(ref, hyp) / max(1, len(ref))


def cer_wer(reference: str, hypothesis: str) -> tuple[float, float]:
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    return error_rate(list(ref), list(hyp)), error_rate(ref.split(), hyp.split())


# --------------------------------------------------------------------------- MCD
def mel_cepstrum(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(frames, 24) c1..c24: real cepstrum of the natural-log mel spectrum (our log-mel is log10).

    c_k = DCT-II / (2 n_mels), so that log S = c0 + 2 sum c_k cos(...): the usual mel-cepstrum
    scale, which puts MCD between different speakers in the familiar 5-10 dB range."""
    ln_mel = logmel(audio, spec).T.astype(np.float64) * math.log(10.0)
    return dct(ln_mel, type=2, axis=1)[:, 1:MCD_COEFFS + 1] / (2 * ln_mel.shape[1])


def mel_cepstral_distortion(a: np.ndarray, b: np.ndarray, spec: FeatureSpec) -> float:
    """MCD in dB averaged along the DTW path between two waveforms."""
    ca, cb = mel_cepstrum(a, spec), mel_cepstrum(b, spec)
    diff = ca[:, None, :] - cb[None, :, :]
    cost = (10.0 / math.log(10.0)) * np.sqrt(2.0 * np.sum(diff ** 2, axis=2))
    return dtw_normalized(cost)


# --------------------------------------------------------------------------- per line
@dataclass
class LineJob:
    name: str                 # converted wav name, V00x_<id>.wav
    converted: bytes          # the converted wav's bytes, as read from the submission
    reference: str | None
    source: str
    text: str | None
    target_emb: np.ndarray | None
    source_emb: np.ndarray | None
    measures: tuple[str, ...]
    spec: FeatureSpec
    also: tuple[str, ...] = ("reference", "source")   # the other renderings measured beside the converted one


def _measure_line(job: LineJob) -> dict:
    rate = job.spec.sample_rate
    audio = {"converted": decode_wav(job.converted, rate, job.name), "source": read_wav(job.source, rate)}
    if job.reference:
        audio["reference"] = read_wav(job.reference, rate)
    row: dict = {"name": job.name}
    measured = {kind: wav for kind, wav in audio.items() if kind == "converted" or kind in job.also}
    if "similarity" in job.measures and job.target_emb is not None:
        for kind, wav in measured.items():
            emb = speaker_embedding(wav)
            row[f"sim_target_{kind}"] = cosine(emb, job.target_emb)
            row[f"sim_source_{kind}"] = cosine(emb, job.source_emb)
    if "asr" in job.measures and job.text:
        for kind, wav in measured.items():
            hyp = transcribe(wav)
            row[f"asr_{kind}"] = hyp
            row[f"cer_{kind}"], row[f"wer_{kind}"] = cer_wer(job.text, hyp)
    if "mcd" in job.measures and "reference" in audio:
        row["mcd_converted"] = mel_cepstral_distortion(audio["converted"], audio["reference"], job.spec)
        if "source" in job.also:
            row["mcd_source"] = mel_cepstral_distortion(audio["source"], audio["reference"], job.spec)
    if "dnsmos" in job.measures:
        for kind, wav in measured.items():
            row[f"dnsmos_{kind}"] = dnsmos(wav)
    return row


def _speaker_audios(utts: list[Utterance], limit: int, sample_rate: int, min_seconds: float = 1.0) -> list[np.ndarray]:
    long_enough = [u for u in utts if u.duration() >= min_seconds] or utts
    return [u.read(sample_rate) for u in long_enough[:limit]]


def speech_measures(dataset: Dataset, converted: dict[str, bytes], spec: FeatureSpec, jobs: int = 1,
                    max_lines: int | None = None, voice_utts: int = 10, measures: tuple[str, ...] = MEASURES,
                    progress: bool = True, also: tuple[str, ...] = ("reference", "source"),
                    speaker_groups: dict[str, set[str]] | None = None) -> dict:
    """Score the converted wavs of one language (``converted``: output wav name -> its bytes),
    beside the target voice's own rendering and the source (``also``; () measures only the
    converted wavs). Returns {"skipped": reason} when impossible."""
    try:
        lines = dataset.synthesis()
    except Exception as exc:  # real datasets without synthesis.txt, unreadable sources...
        return {"skipped": f"no synthesis lines ({exc})"}
    present = [ln for ln in lines if ln.output_name in converted]
    if not present:
        return {"skipped": f"no converted wavs ({len(lines)} synthesis lines, none in the submission)"}
    if max_lines:
        present = present[:max_lines]
    unknown = sorted(set(m for m in measures) - set(MEASURES))
    if unknown:
        raise ValueError(f"unknown speech measures {unknown}")
    target_emb, source_emb = {}, {}
    if "similarity" in measures:
        voices = dataset.utterances("train/voice", required=False)
        tests = dataset.utterances("test", required=False)
        for voice in sorted({ln.voice for ln in present}):
            own = [u for u in voices if u.speaker == voice]
            if own:
                target_emb[voice] = mean_embedding(_speaker_audios(own, voice_utts, spec.sample_rate))
        for speaker in sorted({ln.source.speaker for ln in present}):
            source_emb[speaker] = mean_embedding(_speaker_audios([u for u in tests if u.speaker == speaker],
                                                                 voice_utts, spec.sample_rate))
    jobs_list = [_line_job(dataset, converted[ln.output_name], ln, target_emb, source_emb, measures, spec, also)
                 for ln in present]
    rows = measure_lines(jobs_list, jobs, progress)
    result = {"lines": len(rows), "synthesis_lines": len(lines), "summary": summarize(rows), "per_line": rows}
    if speaker_groups:
        source_of = {ln.output_name: ln.source.speaker for ln in present}
        result["by_speaker_kind"] = {
            kind: {"lines": len(mine), "summary": summarize(mine)}
            for kind, speakers in speaker_groups.items()
            for mine in ([r for r in rows if source_of.get(r["name"]) in speakers],)}
    return result


def _line_job(dataset: Dataset, converted: bytes, line: SynthesisLine, target_emb: dict, source_emb: dict,
              measures: tuple[str, ...], spec: FeatureSpec, also: tuple[str, ...]) -> LineJob:
    ref = dataset.reference(line)
    return LineJob(line.output_name, converted, str(ref.path) if ref else None,
                   str(line.source.path), dataset.transcript(line.source),
                   target_emb.get(line.voice), source_emb.get(line.source.speaker), tuple(measures), spec, tuple(also))


def measure_lines(jobs_list: list[LineJob], jobs: int, progress: bool) -> list[dict]:
    """Every line's measures (``_measure_line``), in ``jobs`` worker processes."""
    # spawn: the evaluator has run torch (baselines) and numba threads, which a fork can deadlock
    return list(parallel_map(_measure_line, jobs_list, jobs, desc="speech measures", unit="line",
                             progress=progress, start="spawn"))


def summarize(rows: list[dict]) -> dict:
    """Means over lines of every numeric column, plus the share of lines closer to the target."""
    out: dict = {}
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, float)})
    for key in keys:
        values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        if values:
            out[key] = float(np.mean(values))
    closer = [r["sim_target_converted"] > r["sim_source_converted"] for r in rows if "sim_target_converted" in r]
    if closer:
        out["share_closer_to_target"] = float(np.mean(closer))
    # how much of the content conversion loses: 1.0 is nothing lost
    if out.get("cer_source"):
        out["cer_ratio"] = out["cer_converted"] / out["cer_source"] if "cer_converted" in out else None
        out.update(cer_ratio_interval(rows))
    return out


def cer_ratio_interval(rows: list[dict]) -> dict:
    """The 95 % bootstrap interval of the CER ratio (mean converted CER / mean source CER) over the
    lines that have both, resampled together: ``cer_ratio_low``, ``cer_ratio_high``. A dozen lines
    leave the ratio uncertain by several tenths; this says by how much. Empty under two lines."""
    pairs = np.array([(r["cer_converted"], r["cer_source"]) for r in rows
                      if np.isfinite(r.get("cer_converted", np.nan)) and np.isfinite(r.get("cer_source", np.nan))])
    if len(pairs) < 2:
        return {}
    drawn = pairs[resample_picks(len(pairs))].sum(1)            # (draws, 2): sums of each resample
    ratios = drawn[:, 0] / np.where(drawn[:, 1] > 0, drawn[:, 1], np.nan)
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return {"cer_ratio_low": float(low), "cer_ratio_high": float(high)}
