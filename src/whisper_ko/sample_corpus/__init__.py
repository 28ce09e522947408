"""A small synthetic Korean call-centre corpus in the exact layout of AI Hub's telephone set.

`generate(out)` speaks call-centre sentences with espeak-ng into 8 kHz WAV files laid out like
「저음질 전화망 음성인식 데이터」 (dataSetSn=571), labels in its notation, session JSONs, and a
few deliberately broken entries listed in `<out>/sample_info.json`, so that every stage of the
pipeline can run end to end without the real corpus.
"""

from .corpus import generate
from .sentences import training_texts
from .speech import EspeakNotFound

__all__ = ["generate", "training_texts", "EspeakNotFound"]
