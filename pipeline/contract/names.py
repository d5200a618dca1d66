"""Names fixed by the ZeroSpeech 2019-track contract: languages, dataset splits, target voices,
the submission's folders and ABX distances, and the audio rate. Every module that needs one of
these imports it from here."""
from __future__ import annotations

SAMPLE_RATE = 16000                               # every wav of the challenge: 16 kHz mono 16-bit
LANGUAGES = ("english", "surprise")
TRAIN_SPLITS = ("train/unit", "train/voice", "train/parallel/source", "train/parallel/voice")
ALL_SPLITS = TRAIN_SPLITS + ("test", "reference")
VOICE_SPLITS = ("train/voice", "train/parallel/voice")   # the target voices' own recordings
TARGET_VOICES = ("V001", "V002")
FILELIST_KINDS = ("required", "embedding", "bitrate")

# Submission layout: 2019/<language>/{test, auxiliary_embedding1, auxiliary_embedding2}/
AUX_FOLDERS = ("auxiliary_embedding1", "auxiliary_embedding2")
UNIT_FOLDERS = ("test", *AUX_FOLDERS)
# 2019/metadata.yaml spells the ABX distances one way, the evaluator's JSON another.
ABX_DISTANCES = ("dtw_cosine", "dtw_kl", "levenshtein")
EVALUATOR_DISTANCES = ("cosine", "KL", "levenshtein")
METADATA_DISTANCE = dict(zip(ABX_DISTANCES, EVALUATOR_DISTANCES))
# The entries (and their types) the official validator requires in the two metadata files.
TOP_METADATA = {"author": str, "affiliation": str, "open source": bool}
TRACK_METADATA = {"abx distance": str, "system description": str, "hyperparameters": None,
                  "using parallel train": bool, "using external data": bool}
