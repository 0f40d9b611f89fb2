"""Builders of small corpora in their real on-disk layouts, with real WAV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(
    path: Path,
    *,
    seconds: float = 0.6,
    rate: int = 16000,
    freq: float = 220.0,
    channels: int = 1,
    subtype: str = "PCM_16",
    level: float = 0.3,
    envelope: int | None = None,
) -> Path:
    """A short sine tone: a valid audio file for importer and manifest tests. ``envelope``: a seed
    for a syllable-like contour (loudness in 25 ms steps between 25 % and 100 % of ``level``, and a
    partial at 4x the pitch with its own contour), so that the files of a fake corpus are different
    sounds: steady tones of near pitches are one sound to the leakage check's fingerprint, as they
    are to a listener."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    tone = level * np.sin(2 * np.pi * freq * t)
    if envelope is not None:
        rng = np.random.default_rng([envelope, 7])
        knots = np.linspace(0, seconds, max(int(seconds / 0.025), 2))
        contour, overtone = (np.interp(t, knots, rng.uniform(0.25, 1.0, len(knots))) for _ in range(2))
        tone = level * (0.75 * contour * np.sin(2 * np.pi * freq * t) + 0.25 * overtone * np.sin(8 * np.pi * freq * t))
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(path, data, rate, subtype=subtype)
    return path


# (session, dialog, utterance suffix, raw label): the dialog's letter is the actor wearing the
# marker; the utterance's last field says who speaks.
IEMOCAP_ROWS = [
    (1, "Ses01F_impro01", "F000", "neu"),
    (1, "Ses01F_impro01", "M000", "ang"),
    (1, "Ses01F_impro01", "F001", "exc"),
    (1, "Ses01F_impro01", "M001", "fru"),  # dropped by the 4-way map
    (1, "Ses01M_script01_1", "M000", "hap"),
    (1, "Ses01M_script01_1", "F000", "sad"),
    (1, "Ses01M_script01_1", "F001", "xxx"),  # dropped
    (2, "Ses02F_impro02", "F000", "sad"),
    (2, "Ses02F_impro02", "M000", "neu"),
    (5, "Ses05M_impro03", "M000", "ang"),
    (5, "Ses05M_impro03", "F000", "exc"),
    (5, "Ses05M_impro03", "F001", "sur"),  # dropped
]


def make_iemocap(root: Path, rows=IEMOCAP_ROWS, *, write_audio: bool = True) -> Path:
    by_file: dict[tuple[int, str], list[str]] = {}
    for index, (session, dialog, suffix, emo) in enumerate(rows):
        utt = f"{dialog}_{suffix}"
        line = f"[6.2901 - 8.2357]\t{utt}\t{emo}\t[2.5000, 2.5000, 2.5000]"
        by_file.setdefault((session, dialog), []).append(line)
        if write_audio:  # each its own tone: the same audio in two splits is leakage
            path = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utt}.wav"
            write_tone(path, freq=180.0 + 3 * index, envelope=index)
    for (session, dialog), lines in by_file.items():
        folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        folder.mkdir(parents=True, exist_ok=True)
        # The real files interleave evaluator lines (C-E1: ...) and attribute lines; they must be ignored.
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        for line in lines:
            text += line + "\nC-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  3;\t()\n\n"
        (folder / f"{dialog}.txt").write_text(text)
    # Sessions 3 and 4 exist with one dialog each so the default sessions list is readable.
    for session in (3, 4):
        folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        if not folder.exists():
            folder.mkdir(parents=True)
            dialog = f"Ses0{session}F_impro01"
            utt = f"{dialog}_M000"
            (folder / f"{dialog}.txt").write_text(f"[1.0 - 2.0]\t{utt}\tneu\t[2.5, 2.5, 2.5]\n")
            if write_audio:
                write_tone(
                    root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utt}.wav",
                    freq=150.0 + session,
                    envelope=1000 + session,
                )
    return root


AIBO_ROWS = [
    ("Ohm_01_001_00", "A"),
    ("Ohm_01_001_01", "N"),
    ("Ohm_02_003_00", "E"),
    ("Ohm_03_010_02", "P"),
    ("Ohm_04_002_00", "R"),
    ("Ohm_05_002_00", "N"),
    ("Mont_01_004_00", "A"),
    ("Mont_02_001_00", "N"),
]


def make_aibo(root: Path, rows=AIBO_ROWS) -> Path:
    labels = root / "labels" / "IS2009EmotionChallenge" / "chunk_labels_5cl_corpus.txt"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("".join(f"{chunk} {label} 1.0\n" for chunk, label in rows))
    for index, (chunk, _) in enumerate(rows):
        write_tone(root / "wav" / f"{chunk}.wav", freq=180.0 + 3 * index, envelope=index)
    return root


def make_iemocap_sessions(root: Path, *, utterances_per_class: int = 2, seed: int = 0) -> Path:
    """An IEMOCAP release with all 5 sessions, each with its two actors (F and M) speaking every
    class of the 4-way map: tones whose pitch and level differ by actor and class, enough for the
    token bins of a leave-one-session-out run."""
    rng = np.random.default_rng(seed)
    classes = {"ang": (1.3, 0.5), "hap": (1.2, 0.4), "neu": (1.0, 0.2), "sad": (0.85, 0.1)}  # pitch factor, level
    rows = []
    for session in range(1, 6):
        dialog = f"Ses{session:02d}F_impro01"
        for gender, f0 in (("F", 210.0), ("M", 110.0)):
            for k, (emo, (factor, level)) in enumerate(classes.items()):
                for u in range(utterances_per_class):
                    suffix = f"{gender}{k * utterances_per_class + u:03d}"
                    rows.append((session, dialog, suffix, emo))
                    write_tone(
                        root / f"Session{session}" / "sentences" / "wav" / dialog / f"{dialog}_{suffix}.wav",
                        seconds=0.8,
                        freq=f0 * factor * (1 + 0.05 * rng.standard_normal()),
                        level=level * (1 + 0.2 * rng.random()),
                        envelope=len(rows),
                    )
    return make_iemocap(root, rows, write_audio=False)


class CodeRunningPickle:
    """An object whose unpickling creates ``marker`` (as a malicious checkpoint would run code):
    a loader that refuses it leaves no file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
