"""A real ASR reference for the clean-audio upper bound: CMU PocketSphinx (its PyPI wheel ships the US English
acoustic model and dictionary) constrained by a JSGF grammar over the data set's vocabulary."""
from __future__ import annotations

import numpy as np

from unitocom.data.loaders import resample
from unitocom.data.vocab import WORDS


def grammar(words=WORDS) -> str:
    """Any sequence of the corpus' words: the same closed vocabulary the MLLM is trained on."""
    alts = " | ".join(sorted({w.lower() for w in words if w.isalpha()}))
    return f"#JSGF V1.0;\ngrammar corpus;\npublic <utt> = ( {alts} )+ ;\n"


class Sphinx:
    def __init__(self, words=WORDS):
        from pocketsphinx import Config, Decoder
        cfg = Config(loglevel="FATAL")
        self.decoder = Decoder(cfg)
        self.missing = [w for w in {w.lower() for w in words if w.isalpha()} if self.decoder.lookup_word(w) is None]
        self.decoder.add_jsgf_string("corpus", grammar([w for w in words if w.lower() not in self.missing]))
        self.decoder.activate_search("corpus")

    def transcribe(self, wave: np.ndarray, rate_hz: int) -> str:
        """float32 [T] at any rate -> words (16 kHz, 16-bit PCM into the decoder)."""
        pcm = resample(np.asarray(wave, np.float32), rate_hz, 16000) if rate_hz != 16000 else wave
        raw = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(raw, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""
