"""``zs2020 encode``: encode wavs, a folder or a dataset split to units (npz or unit .txt)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from pipeline.contract.dataset import Dataset, speaker_of, wav_files
from pipeline.contract.names import ALL_SPLITS, LANGUAGES
from pipeline.contract.unitfile import write_units
from pipeline.core.errors import UserError
from pipeline.core.outputs import Input, claim_folder
from pipeline.core.stamp import StampBook, file_identity, fingerprint
from pipeline.core.threads import pool_size
from pipeline.systems.encoding import encode_wavs, speaker_norm_spec, write_units_npz
from pipeline.systems.vqvae import Units


def _sources(wavs, folder, dataset_root, split, language) -> list[tuple[str, Path]]:
    """(output stem, wav path) of every input, in a stable order."""
    chosen = sum(bool(x) for x in (wavs, folder, dataset_root))
    if chosen != 1:
        raise UserError("give exactly one of --wav, --folder or --dataset")
    if wavs:
        items = [(Path(w).stem, Path(w)) for w in wavs]
        missing = [str(w) for _, w in items if not w.is_file()]
        if missing:
            raise UserError(f"{missing[0]}: no such audio file")
    elif folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
        items = [(p.stem, p) for p in wav_files(folder)]
        if not items:
            raise UserError(f"{folder}: no .wav files")
    else:
        ds = Dataset(dataset_root, language)
        items = [(u.utt_id, u.path) for u in ds.utterances(split)]
    stems = [s for s, _ in items]
    if len(set(stems)) != len(stems):
        raise UserError("two inputs have the same file name; outputs would overwrite each other")
    return items


def speaker_groups(wavs: list[Path]) -> dict[Path, list]:
    """wav -> the identities of every input wav of its speaker (the file name's prefix)."""
    members: dict[str, list[Path]] = {}
    for wav in wavs:
        members.setdefault(speaker_of(wav.stem), []).append(wav)
    identities = {speaker: [file_identity(w) for w in sorted(ws)] for speaker, ws in members.items()}
    return {wav: identities[speaker_of(wav.stem)] for wav in wavs}


def write_encoding(out_dir: str, fmt: str, stem: str, units: Units) -> str:
    """npz: every Units array; txt: the bottom code vectors in the ZeroSpeech unit format."""
    path = Path(out_dir) / f"{stem}.{fmt}"
    if not (path.parent / StampBook.NAME).is_file():
        # The stamp book marks OUT as this stage's folder from the first file on, so a run that
        # is interrupted can be rerun on it (pipeline.core.outputs).
        StampBook(out_dir).save()
    if fmt == "npz":
        write_units_npz(path, units)
    else:
        write_units(path, units.bottom_vectors)
    return path.name


@click.command("encode", context_settings={"show_default": True})
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Unit-system checkpoint (RUN/vqvae/checkpoint.pt: a VQ-VAE-2 or a VQMIVC).")
@click.option("--wav", "wavs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A wav file to encode (repeatable).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), help="Encode every .wav of this folder.")
@click.option("--dataset", "dataset_root", type=click.Path(file_okay=False, path_type=Path),
              help="Encode one split of a dataset (with --split and --language).")
@click.option("--split", type=click.Choice(ALL_SPLITS), default="test", help="Dataset split for --dataset.")
@click.option("--language", type=click.Choice(LANGUAGES), default="english", help="Dataset language for --dataset.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: one <name>.npz or <name>.txt per input wav.")
@click.option("--format", "fmt", type=click.Choice(["npz", "txt"]), default="npz",
              help="npz: ids, code vectors, top vectors, pre-quantization features; "
                   "txt: bottom code vectors, one 20 ms frame per line (ZeroSpeech format).")
@click.option("--jobs", type=click.IntRange(min=0), default=0,
              help="Encoder processes (0 = one per CPU this process may use, for many files).")
@click.option("--device", default="cpu", help="Torch device for the model (cpu, cuda, cuda:1, ...).")
@click.option("--force", is_flag=True, help="Re-encode files whose stamp says they are up to date.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def encode_command(checkpoint, wavs, folder, dataset_root, split, language, out_dir, fmt, jobs, device, force, quiet):
    """Encode wavs to discrete units with a trained VQ-VAE-2 (or VQMIVC: bottom level only).

    Every output has exactly ceil(frames/2) rows for the bottom level (20 ms) and
    ceil(frames/4) top ids (40 ms): no padding. Unseen speakers are fine. Short files are
    encoded several per forward pass. A file whose stamp records the same wav and checkpoint
    is skipped. A model trained with speaker normalisation (vqvae.model.speaker_norm) reads
    each wav standardised by its speaker's statistics over all the inputs of that speaker,
    the speaker being the file name's prefix before the first "_" (S002_0379088085.wav: S002,
    as in the ZeroSpeech data): give all of a speaker's files in one call.
    """
    items = _sources(wavs, folder, dataset_root, split, language)
    if not checkpoint.is_file():
        raise UserError(f"{checkpoint}: no such checkpoint")
    # OUT itself is made by the first write, once the checkpoint has loaded: a refused
    # checkpoint or input leaves nothing behind.
    claim_folder(out_dir, "encode", [Input("--checkpoint", checkpoint), Input("--folder", folder),
                                     Input("--dataset", dataset_root), *(Input("--wav", w) for w in wavs)])
    stamps = StampBook(out_dir)
    model_id = file_identity(checkpoint)
    # a system with speaker normalisation encodes each wav with its speaker's statistics over all
    # of that speaker's inputs: a file is out of date when any of them changes
    group = speaker_groups([wav for _, wav in items]) if speaker_norm_spec(checkpoint) is not None else {}
    wanted = []
    for stem, wav in items:
        fp = fingerprint(model_id, file_identity(wav), fmt, group.get(wav))
        if force or not stamps.is_up_to_date(f"{stem}.{fmt}", fp):
            wanted.append((stem, wav, fp))
    jobs = 1 if len(wanted) < 200 else pool_size(jobs or None, len(wanted))
    sink = functools.partial(write_encoding, str(out_dir), fmt)
    names = encode_wavs(checkpoint, [(stem, wav) for stem, wav, _ in wanted], sink, jobs=jobs, device=device,
                        progress=not quiet, desc="encode", speaker_files=[wav for _, wav in items])
    for name, (_, _, fp) in zip(names, wanted):
        stamps.record(name, fp)
    stamps.save()
    click.echo(f"{out_dir}: {len(wanted)} encoded, {len(items) - len(wanted)} up to date")
