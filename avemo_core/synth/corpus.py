"""Write a labelled synthetic corpus (media + manifest.csv), or a few unlabelled new media files.

Layout of a corpus folder:

    media/spkSS_NNNN.mp4|.m4a|.wav   the media (H.264+AAC MP4; a few MP4 without audio; a few
                                     audio-only AAC .m4a or PCM .wav)
    corpus.json                      the SynthConfig, and per file its speaker, split and tracks
    manifest.csv                     one row per labelled segment, written last

manifest.csv columns: uri, start_s, end_s, split, then one intensity per emotion in EMOTIONS order
(happiness, sadness, anger, fear, disgust, surprise) on CMU-MOSEI's 0..3 scale, 0 meaning absent.
`uri` is relative to the folder that holds manifest.csv (readers resolve it against that folder),
so a corpus can be moved or uploaded as a whole. Rows are sorted by uri, then start_s.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from avemo_core.labels import EMOTIONS
from avemo_core.synth.config import SynthConfig
from avemo_core.synth.encode import encode
from avemo_core.synth.plan import FilePlan, plan_corpus, plan_media
from avemo_core.synth.render import render_file

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = ("uri", "start_s", "end_s", "split", *EMOTIONS)
# Media names this generator writes: files like these in media/ that the plan lacks are stale.
OWN_MEDIA = re.compile(r"spk\d+_\d{4}\.(mp4|m4a|wav)")

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class CorpusSummary:
    out_dir: Path  # the corpus folder
    manifest: Path  # its manifest.csv
    files: int  # media files written
    clips: int  # labelled segments (manifest rows)
    audio_only: int  # files without a video track
    video_only: int  # files without an audio track
    media_s: float  # total media length
    clips_per_split: dict[str, int]  # split -> labelled segments
    elapsed_s: float  # wall time of the whole run


def write_corpus(
    out_dir: str | os.PathLike,
    config: SynthConfig | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> CorpusSummary:
    """Generate the corpus `config` describes into out_dir; reruns rewrite the same bytes."""
    config = config or SynthConfig()
    started = time.perf_counter()
    out = Path(out_dir)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(config)
    wanted = {Path(p.name).name for p in plans}
    for stale in media.iterdir():
        if OWN_MEDIA.fullmatch(stale.name) and stale.name not in wanted:
            stale.unlink()
    _write_files(out, plans, config, progress, workers)
    _write_atomic(out / "corpus.json", _corpus_json(plans, config))
    manifest = out / MANIFEST_NAME
    _write_atomic(manifest, manifest_text(plans))
    clips = Counter(p.split for p in plans for _ in p.segments)
    return CorpusSummary(
        out_dir=out,
        manifest=manifest,
        files=len(plans),
        clips=sum(clips.values()),
        audio_only=sum(not p.has_video for p in plans),
        video_only=sum(not p.has_audio for p in plans),
        media_s=round(sum(p.duration_s for p in plans), 3),
        clips_per_split={split: clips[split] for split in ("train", "valid", "test")},
        elapsed_s=time.perf_counter() - started,
    )


def write_media(
    out_dir: str | os.PathLike,
    count: int = 4,
    config: SynthConfig | None = None,
    progress: Progress | None = None,
) -> list[FilePlan]:
    """Unlabelled new media for labelling demos: one audio-only, one video-only, the rest both.

    Files land directly in out_dir (no manifest); the returned plans hold each file's name and the
    true intensities of its segments, for comparing with what a model tags.
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    config = config or SynthConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_media(count, config)
    _write_files(out, plans, config, progress, workers=1)
    return plans


def _write_files(
    out: Path, plans: list[FilePlan], config: SynthConfig, progress: Progress | None, workers: int
) -> None:
    """Render and encode every planned file, reporting about every tenth of the way."""
    started = time.perf_counter()
    every = max(1, len(plans) // 10)

    def make(plan: FilePlan) -> None:
        rendered = render_file(plan, config)
        encode(out / plan.name, config, rendered.pcm, rendered.frames)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, _ in enumerate(pool.map(make, plans), start=1):
            if progress is not None and (done % every == 0 or done == len(plans)):
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress(f"synth: {done}/{len(plans)} media files ({rate:.1f} files/s)")


def manifest_text(plans: list[FilePlan]) -> str:
    """manifest.csv for the labelled segments of `plans`, byte-stable across runs."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    rows = sorted(
        (plan.name, seg.start_s, seg.end_s, plan.split, seg.intensities)
        for plan in plans
        for seg in plan.segments
    )
    for uri, start, end, split, intensities in rows:
        writer.writerow(
            [uri, f"{start:.3f}", f"{end:.3f}", split, *(f"{v:.4f}" for v in intensities)]
        )
    return buf.getvalue()


def _corpus_json(plans: list[FilePlan], config: SynthConfig) -> str:
    files = [
        {
            "uri": p.name,
            "speaker": p.speaker.speaker_id,
            "split": p.split,
            "has_audio": p.has_audio,
            "has_video": p.has_video,
            "duration_s": p.duration_s,
            "segments": len(p.segments),
        }
        for p in plans
    ]
    return json.dumps({"config": config.to_dict(), "files": files}, indent=1, sort_keys=True) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never half of it."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
