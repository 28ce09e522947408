"""Plan, synthesise and write the sample corpus in AI Hub's telephone-set layout (dataSetSn=571)."""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from .bank import DOMAINS
from .sentences import Sentence, add_markers, fill, slots_for, tags_only, templates
from .speech import SAMPLE_RATE, Voice, render, require_espeak

VERSION = "2"
INFO_FILE = "sample_info.json"
# split name -> (top folder, source zip prefix, label zip prefix)
SPLITS = {
    "training": ("1.Training", "TS", "TL"),
    "validation": ("2.Validation", "VS", "VL"),
}
SOURCE_DIR, LABEL_DIR = "원천데이터_230316", "라벨링데이터_230316"
# each domain gets a recording condition; D04's is fast speech, set through the voice speed
CONDITIONS = {"D01": "clean", "D02": "telephone", "D03": "noisy", "D04": "fast"}
SPEEDS = {"fast": (215, 250)}
NORMAL_SPEED = (160, 190)
FEMALE_VARIANTS = ["f1", "f2", "f3", "f4", "f5"]
MALE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
AGES = ["20대", "30대", "40대", "50대", "60대", "70대"]
RESIDENCES = "서울 경기 인천 부산 대구 광주 대전 강원 충북 전남 경남 제주".split()
UNKNOWN = ["", "None", "알수없음"]  # the three ways the real metadata says "not known"
BROKEN_KINDS = [
    "corrupt_audio",
    "empty_audio",
    "audio_without_label",
    "label_without_audio",
    "empty_label",
    "cp949_label",
    "long_audio",
    "tags_only",
]
LONG_SECONDS = 32.0  # past Whisper's 30 s window
# Test utterances whose template training never says (sentences.templates) measure listening; the
# others, new slot fillings of seen templates, also reward remembering the frames.
UNSEEN_SHARE = 0.5  # of the test side's utterances


@dataclass(frozen=True)
class Speaker:
    id: str
    type: str  # 상담사1 or 고객1
    gender: str
    age: str
    residence: str
    voice: Voice


@dataclass(frozen=True)
class Utterance:
    number: int
    speaker: Speaker
    sentences: tuple[Sentence, ...]
    seed: int
    kind: str = "good"
    unseen: bool = False  # its sentence's template is reserved for the test side

    @property
    def has_audio(self) -> bool:
        return self.kind != "label_without_audio"

    @property
    def has_label(self) -> bool:
        return self.kind != "audio_without_label"


@dataclass
class Session:
    split: str
    domain: str
    subcategory: str
    id: str
    counsellor: Speaker
    customer: Speaker
    utterances: list[Utterance] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.subcategory}/{self.id}"

    def audio_path(self, number: int) -> str:
        top, source, _ = SPLITS[self.split]
        return f"{top}/{SOURCE_DIR}/{source}_{self.domain}/{self.key}/{number:04d}.wav"

    def label_path(self, number: int) -> str:
        top, _, label = SPLITS[self.split]
        return f"{top}/{LABEL_DIR}/{label}_{self.domain}/{self.key}/{number:04d}.txt"

    def json_path(self) -> str:
        return str(Path(self.label_path(1)).with_name(f"{self.id}.json"))


def generate(
    out: Path,
    seed: int = 0,
    n_train: int = 400,
    n_val: int = 100,
    workers: int | None = None,
) -> dict:
    """Write the sample corpus under `out` and return its sample_info; reuse a finished one."""
    out = Path(out)
    params = {"version": VERSION, "seed": seed, "sizes": {"training": n_train, "validation": n_val}}
    existing = read_existing(out, params)
    if existing is not None:
        print(f"sample corpus already exists at {out}")
        return existing
    if min(n_train, n_val) < len(DOMAINS):
        raise ValueError(f"n_train and n_val must be at least {len(DOMAINS)}: one per domain")
    require_espeak()

    sessions = plan(seed, n_train, n_val)
    dialogs = synthesize(out, sessions, workers or os.cpu_count())
    bom_json = write_session_jsons(out, sessions, dialogs)
    info = {
        **params,
        **describe(sessions),
        "quirks": {"bom_json": bom_json, "repeated_sessions": repeated_sessions(sessions)},
    }
    # written last: its presence marks a finished corpus
    (out / INFO_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return info


def read_existing(out: Path, params: dict) -> dict | None:
    info_path = out / INFO_FILE
    if info_path.exists():
        info = json.loads(info_path.read_text("utf-8"))
        found = {key: info.get(key) for key in params}
        if found != params:
            raise FileExistsError(
                f"{out} holds a sample corpus made with {found}, not {params}. "
                "Delete the directory to regenerate it."
            )
        return info
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty and has no {INFO_FILE} (an interrupted run?). "
            "Delete it or choose another --out."
        )
    return None


# ---- planning: every random choice is drawn here, in a fixed order, from one generator


def plan(seed: int, n_train: int, n_val: int) -> list[Session]:
    rng = np.random.default_rng(seed)
    counsellors = {domain: plan_counsellors(rng, domain) for domain in sorted(DOMAINS)}
    training = plan_split(rng, "training", n_train, 1, counsellors)
    for index, kind in enumerate(BROKEN_KINDS):
        # spread the broken entries over sessions and domains
        session = training[index * len(training) // len(BROKEN_KINDS)]
        session.utterances.append(plan_broken(rng, session, kind))
    first_val = max(int(s.id[1:]) for s in training) + 1
    return training + plan_split(rng, "validation", n_val, first_val, counsellors)


def plan_counsellors(rng: np.random.Generator, domain: str) -> list[Speaker]:
    return [
        plan_speaker(rng, f"{domain}C{k:02d}", "상담사1", domain, AGES[:4], unknown_fields=())
        for k in range(1, 4)
    ]


def plan_speaker(
    rng: np.random.Generator,
    speaker_id: str,
    speaker_type: str,
    domain: str,
    ages: list[str],
    unknown_fields: tuple[str, ...],
    unknown_value: str = "",
) -> Speaker:
    female = bool(rng.random() < 0.5)
    variant = pick(rng, FEMALE_VARIANTS if female else MALE_VARIANTS)
    pitch = int(rng.integers(45, 76) if female else rng.integers(25, 56))
    speed = int(rng.integers(*SPEEDS.get(CONDITIONS[domain], NORMAL_SPEED)))
    values = {
        "gender": "여" if female else "남",
        "age": pick(rng, ages),
        "residence": pick(rng, RESIDENCES),
    }
    values.update({name: unknown_value for name in unknown_fields})
    return Speaker(speaker_id, speaker_type, voice=Voice(variant, speed, pitch), **values)


def plan_split(
    rng: np.random.Generator,
    split: str,
    total: int,
    first_number: int,
    counsellors: dict[str, list[Speaker]],
) -> list[Session]:
    sessions: list[Session] = []
    number = first_number
    domains = sorted(DOMAINS)
    for domain_index, domain in enumerate(domains):
        quota = total // len(domains) + int(domain_index < total % len(domains))
        for index, length in enumerate(session_lengths(rng, quota)):
            if domain == domains[-1] and index == 0:
                # the real corpus repeats session ids across D/J folders; pairing must use the path
                session_id = sessions[0].id
            else:
                session_id, number = f"S{number:06d}", number + 1
            sessions.append(
                plan_session(rng, split, domain, session_id, length, len(sessions), counsellors)
            )
    return sessions


def session_lengths(rng: np.random.Generator, quota: int) -> list[int]:
    """Split a domain's utterance quota into sessions of 4-8 turns (fewer only if the quota is)."""
    lengths = []
    while quota > 0:
        length = quota if quota <= 8 else int(rng.integers(4, 9))
        if 0 < quota - length < 4:
            length = quota - 4  # leave the last session its 4 turns
        lengths.append(length)
        quota -= length
    return lengths


def plan_session(
    rng: np.random.Generator,
    split: str,
    domain: str,
    session_id: str,
    length: int,
    index: int,
    counsellors: dict[str, list[Speaker]],
) -> Session:
    subcategory = pick(rng, sorted(DOMAINS[domain]["subcategories"]))
    # cycle the unknown markers over sessions so that every small corpus has each of them
    unknown_field = ("age", "gender", "residence", None)[index % 4]
    customer = plan_speaker(
        rng,
        f"{domain}{subcategory}{session_id}",
        "고객1",
        domain,
        AGES,
        unknown_fields=(unknown_field,) if unknown_field else (),
        unknown_value=UNKNOWN[index % 3],
    )
    session = Session(
        split, domain, subcategory, session_id, pick(rng, counsellors[domain]), customer
    )
    roles = ["opening"] + ["customer" if k % 2 else "counsellor" for k in range(1, length)]
    if length >= 4 and roles[-1] == "counsellor":
        roles[-1] = "closing"
    used: set[str] = set()
    for number, role in enumerate(roles, start=1):
        unseen = split == "validation" and rng.random() < UNSEEN_SHARE
        sentence = plan_sentence(rng, session, role, used, unseen)
        speaker = customer if role == "customer" else session.counsellor
        session.utterances.append(Utterance(number, speaker, (sentence,), seed=new_seed(rng), unseen=unseen))
    return session


def plan_sentence(
    rng: np.random.Generator, session: Session, role: str, used: set[str], unseen: bool = False
) -> Sentence:
    """A marked-up sentence for `role` from the templates training may say (or, `unseen`, from the
    one reserved for the test side), avoiding templates already said in this session."""
    seen, reserved = templates(session.domain, session.subcategory, role)
    pool = reserved if unseen else seen
    fresh = [template for template in pool if template not in used] or pool
    template = pick(rng, fresh)
    used.add(template)
    return add_markers(fill(template, slots_for(session.domain), rng), rng)


def plan_broken(rng: np.random.Generator, session: Session, kind: str) -> Utterance:
    number = len(session.utterances) + 1
    if number % 2:
        role, speaker = "counsellor", session.counsellor
    else:
        role, speaker = "customer", session.customer
    used: set[str] = set()
    if kind == "tags_only":
        sentences = (tags_only(),)
    elif kind == "long_audio":
        # more sentences than 32 s needs; rendering stops once the clip is long enough
        sentences = tuple(plan_sentence(rng, session, role, used) for _ in range(16))
    else:
        sentences = (plan_sentence(rng, session, role, used),)
    return Utterance(number, speaker, sentences, seed=new_seed(rng), kind=kind)


def pick(rng: np.random.Generator, items: list):
    return items[rng.integers(len(items))]


def new_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**32))


# ---- writing


def synthesize(out: Path, sessions: list[Session], workers: int) -> dict[str, list[dict]]:
    """Write every utterance in parallel; return the session-JSON dialogs keyed by JSON path."""
    jobs = [(session, utterance) for session in sessions for utterance in session.utterances]
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda job: write_utterance(out, *job), jobs)
        dialogs = list(
            tqdm(results, total=len(jobs), desc="synthesising sample corpus", unit="utt")
        )
    by_session: dict[str, list[dict]] = {session.json_path(): [] for session in sessions}
    for (session, _), dialog in zip(jobs, dialogs, strict=True):
        if dialog is not None:
            by_session[session.json_path()].append(dialog)
    return by_session


def write_utterance(out: Path, session: Session, utterance: Utterance) -> dict | None:
    """Synthesise and write one utterance; return its session-JSON dialog entry, if it has one."""
    kind = utterance.kind
    min_seconds = LONG_SECONDS if kind == "long_audio" else 0.0
    audio, used = render(
        list(utterance.sentences),
        utterance.speaker.voice,
        CONDITIONS[session.domain],
        utterance.seed,
        min_seconds,
    )
    text = "" if kind == "empty_label" else " ".join(s.label for s in utterance.sentences[:used])
    if utterance.has_audio:
        wav = out / session.audio_path(utterance.number)
        wav.parent.mkdir(parents=True, exist_ok=True)
        write_audio(wav, audio, kind, utterance.seed)
    if not utterance.has_label:
        return None  # the label side lost it, session JSON included
    txt = out / session.label_path(utterance.number)
    txt.parent.mkdir(parents=True, exist_ok=True)
    txt.write_bytes(encode_label(text, kind))
    return {
        "speaker": utterance.speaker.id,
        "audioPath": f"{session.key}/{utterance.number:04d}.wav",
        "duration": 0.0 if kind == "empty_audio" else round(len(audio) / SAMPLE_RATE, 3),
        "text": text,
        # not an AI Hub field: discover keeps it in the manifest, the benchmark groups by it
        "sentence": "unseen" if utterance.unseen else "seen",
    }


def write_audio(path: Path, audio: np.ndarray, kind: str, seed: int) -> None:
    if kind == "corrupt_audio":
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
    elif kind == "empty_audio":
        sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    else:
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def encode_label(text: str, kind: str) -> bytes:
    if kind == "empty_label":
        return b""
    if kind == "cp949_label":
        return (text + "\n").encode("cp949")
    return (text + "\n").encode("utf-8")


def write_session_jsons(out: Path, sessions: list[Session], dialogs: dict[str, list[dict]]) -> str:
    """Write one JSON per session; the first D02 training one carries a BOM. Returns its path."""
    bom_json = next(s.json_path() for s in sessions if s.split == "training" and s.domain == "D02")
    for session in sessions:
        path = session.json_path()
        write_session_json(out / path, session, dialogs[path], bom=path == bom_json)
    return bom_json


def write_session_json(path: Path, session: Session, dialogs: list[dict], bom: bool) -> None:
    speakers = [
        {
            "id": speaker.id,
            "type": speaker.type,
            "gender": speaker.gender,
            "age": speaker.age,
            "residence": speaker.residence,
            "telephone_network": "8k",
        }
        for speaker in (session.counsellor, session.customer)
    ]
    domain = DOMAINS[session.domain]
    document = {
        "dataSet": {
            "version": "1.0",
            "date": "2023-03-16",
            "typeInfo": {
                "category": domain["category"],
                "subcategory": domain["subcategories"][session.subcategory]["name"],
                "speakers": speakers,
            },
            "dialogs": dialogs,
        }
    }
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8")


def describe(sessions: list[Session]) -> dict:
    """Counts of good utterances per split and domain (and of those with a test-only sentence),
    the domain names, and the broken entries."""
    counts = {split: {domain: 0 for domain in sorted(DOMAINS)} for split in SPLITS}
    unseen = {split: 0 for split in SPLITS}
    broken = []
    for session in sessions:
        for utterance in session.utterances:
            if utterance.kind == "good":
                counts[session.split][session.domain] += 1
                unseen[session.split] += utterance.unseen
                continue
            number = utterance.number
            audio = session.audio_path(number) if utterance.has_audio else None
            label = session.label_path(number) if utterance.has_label else None
            broken.append({"kind": utterance.kind, "audio": audio, "label": label})
    domains = {
        domain: {
            "category": spec["category"],
            "subcategories": {
                code: sub["name"] for code, sub in sorted(spec["subcategories"].items())
            },
            "condition": CONDITIONS[domain],
        }
        for domain, spec in sorted(DOMAINS.items())
    }
    return {"sample_rate": SAMPLE_RATE, "counts": counts, "unseen_sentences": unseen, "domains": domains,
            "broken": broken}


def repeated_sessions(sessions: list[Session]) -> list[str]:
    """Label folders of sessions whose S###### id also names a session under another D/J folder."""
    folders_by_id: dict[tuple[str, str], list[str]] = {}
    for session in sessions:
        folder = str(Path(session.json_path()).parent)
        folders_by_id.setdefault((session.split, session.id), []).append(folder)
    return sorted(
        folder for folders in folders_by_id.values() if len(folders) > 1 for folder in folders
    )
