"""The fine-tune as it is deployed: converted to CTranslate2 by ctranslate2's own Transformers
converter for faster-whisper and checked after conversion. Only the export stage uses this module
(`whisper_ko.faster` decodes exports for the benchmark, apart), so that a change to either reruns
its own stage alone.

Deployed models score worse than their transformers originals more often than users find out
before deploying (quantization, faster-whisper's own feature extractor and decoding defaults, a
lost preprocessor or suppress list); scoring the export on the same test set, in the same table,
is what shows it.
"""

import json
import shutil
from pathlib import Path

from whisper_ko import checks
from whisper_ko.checks import CT2_FILES, EXPORT_RECORD, ct2_missing
from whisper_ko.errors import UserError

COPIED = CT2_FILES[1:]  # copied from the source beside the converted weights and config


class ExportError(UserError):
    """A model that cannot be exported, or an export that lost what a deployment needs."""


def export(source: str | Path, out: str | Path, quantization: str) -> dict:
    """`source` (a plain Whisper directory) converted into `out` for faster-whisper; returns the
    export record. Written beside `out` and moved into place only once checked; `out` is replaced
    only if it is an earlier export (its record) or empty."""
    source, out = Path(source), Path(out)
    checks.require_ours(out, "paths.export", checks.has_marker(EXPORT_RECORD), EXPORT_RECORD)
    checks.require_writable(out, "paths.export")
    checks.require_space(out, checks.directory_size(source), "paths.export", "the exported model")
    if (source / "adapter_config.json").is_file():
        raise ExportError(
            f"{source} is a LoRA adapter: merge it into its base first (the train stage saves merged models)"
        )
    missing = ct2_missing(source)
    if missing:
        raise ExportError(f"{source} lacks {', '.join(missing)}: save the model with its processor (train does)")
    from ctranslate2.converters import TransformersConverter

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    TransformersConverter(str(source), copy_files=list(COPIED)).convert(str(partial), quantization=quantization)
    record = {"source": str(source), "path": str(out), "quantization": quantization, **check(source, partial)}
    (partial / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return record


def check(source: Path, exported: Path) -> dict:
    """What a deployment needs survived the conversion: suppress tokens, language ids, the mel
    count; the exported model loads. Returns what was checked."""
    from transformers import GenerationConfig, WhisperConfig

    generation = GenerationConfig.from_pretrained(source)
    n_mels = WhisperConfig.from_pretrained(source).num_mel_bins
    ct2 = json.loads((exported / "config.json").read_text())
    extractor = json.loads((exported / "preprocessor_config.json").read_text())
    expected = {
        "suppress_ids": list(generation.suppress_tokens or []),
        "suppress_ids_begin": list(generation.begin_suppress_tokens or []),
        "lang_ids": sorted((getattr(generation, "lang_to_id", None) or {}).values()),
    }
    for key, value in expected.items():
        if ct2.get(key) != value:
            raise ExportError(f"{exported}: {key} is {ct2.get(key)} after conversion, the source has {value}")
    if extractor.get("feature_size") != n_mels:
        raise ExportError(
            f"{exported}: preprocessor_config.json makes {extractor.get('feature_size')} mel bins, "
            f"the model takes {n_mels}"
        )
    import ctranslate2

    loaded = ctranslate2.models.Whisper(str(exported), device="cpu")
    if loaded.n_mels != n_mels:
        raise ExportError(f"{exported}: loads with {loaded.n_mels} mel bins, the source takes {n_mels}")
    return {
        "n_mels": n_mels,
        "suppress_tokens": len(expected["suppress_ids"]),
        "languages": len(expected["lang_ids"]),
        # CTranslate2's own verdict from the vocabulary: an English-only model is decoded without
        # language and task tokens, whatever language is asked for (every OpenAI multilingual
        # checkpoint is multilingual here; the tests' tiny model, with its small vocabulary, is not).
        "multilingual": loaded.is_multilingual,
    }
