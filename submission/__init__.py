"""Submission writer and validator for the ZeroSpeech 2020 (2019 track) layout."""
