"""Data sets: synthetic CLEVR / COCO-captions / LibriSpeech stand-ins, their generator, and loaders for all six.

The torch loaders are imported lazily (`from unitocom.data import ClevrQuestions` still works), so that making
data never pays for importing torch.
"""
from __future__ import annotations

from unitocom.data.presets import DATA_PRESETS, SPEECH_SUBSETS, SPLITS, DataPreset, data_preset
from unitocom.data.questions import FAMILIES
from unitocom.data.vocab import ANSWERS, ANSWER_INDEX, COLORS, DIGIT_WORDS, MATERIALS, NUMBER_WORDS, NUMBERS, \
    RELATIONS, SHAPES, SIZES, SPATIAL_WORDS, WORDS

_LAZY = {
    "ClevrQuestions": "loaders", "CocoCaptions": "loaders", "LibriSpeech": "loaders", "ClevrItem": "loaders",
    "CocoItem": "loaders", "SpeechItem": "loaders", "load_clevr_scenes": "loaders",
    "load_clevr_questions": "loaders", "read_image": "loaders",
    "make_dataset": "make", "dataset_checksum": "make",
    "contact_sheet": "contact_sheet", "write_contact_sheet": "contact_sheet",
    "load_photo": "photos", "PHOTO_NAMES": "photos",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"unitocom.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'unitocom.data' has no attribute {name!r}")


__all__ = ["DATA_PRESETS", "SPEECH_SUBSETS", "SPLITS", "DataPreset", "data_preset", "FAMILIES", "ANSWERS",
           "ANSWER_INDEX", "COLORS", "DIGIT_WORDS", "MATERIALS", "NUMBER_WORDS", "NUMBERS", "RELATIONS", "SHAPES",
           "SIZES", "SPATIAL_WORDS", "WORDS", *_LAZY]
