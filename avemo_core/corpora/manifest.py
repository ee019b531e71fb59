"""Write a prepared corpus: the manifest CSV `avemo extract --manifest` reads, and its metadata.

Columns: `uri,start_s,end_s,split`, one intensity per emotion in EMOTIONS order (empty cell:
unlabelled), then `speaker` and `label` (the corpus's own category), which
avemo_core.media.clips.parse_manifest ignores. One row per media file, covering it whole (start 0,
end its length). `uri` is relative to the manifest's folder when the file lies under it (the two
move together), absolute otherwise. Rows are sorted by uri.

The metadata (`<manifest stem>.meta.json` beside it) records the corpus, the label mapping, the
split rule, counts per split and emotion, the speakers of each split and what was skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from avemo_core.corpora.common import Utterance
from avemo_core.labels import EMOTIONS, SPLITS

COLUMNS: tuple[str, ...] = ("uri", "start_s", "end_s", "split", *EMOTIONS, "speaker", "label")


def metadata_path(manifest: Path) -> Path:
    return manifest.with_name(f"{manifest.stem}.meta.json")


def _uri(path: Path, folder: Path) -> str:
    if path.is_relative_to(folder):
        return path.relative_to(folder).as_posix()
    return str(path)


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def manifest_text(rows: list[tuple[Utterance, float]], manifest: Path) -> str:
    """CSV text of (utterance, length in seconds) pairs, in uri order."""
    folder = Path(os.path.abspath(manifest.parent))
    lines = sorted(
        [
            _uri(u.path, folder),
            "0",
            f"{length:.6f}",
            u.split or "",
            *(_cell(v) for v in u.intensities),
            u.speaker,
            u.label,
        ]
        for u, length in rows
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(lines)
    return out.getvalue()


def counts(utterances: list[Utterance]) -> dict[str, Any]:
    """Files per split, positives / negatives / unlabelled per split and emotion, speakers."""
    per_split = Counter(u.split for u in utterances)
    emotions: dict[str, dict[str, dict[str, int]]] = {}
    for split in SPLITS:
        members = [u for u in utterances if u.split == split]
        emotions[split] = {
            emotion: {
                "positive": sum(1 for u in members if (u.intensities[i] or 0) > 0),
                "negative": sum(1 for u in members if u.intensities[i] == 0),
                "unlabelled": sum(1 for u in members if u.intensities[i] is None),
            }
            for i, emotion in enumerate(EMOTIONS)
        }
    speakers = {s: sorted({u.speaker for u in utterances if u.split == s}) for s in SPLITS}
    return {
        "utterances": len(utterances),
        "per_split": {s: per_split[s] for s in SPLITS},
        "per_emotion": emotions,
        "per_label": dict(sorted(Counter(u.label for u in utterances).items())),
        "speakers": speakers,
        "speakers_per_split": {s: len(v) for s, v in speakers.items()},
        "speakers_in_several_splits": sorted(
            {
                x
                for a in SPLITS
                for b in SPLITS
                if a < b
                for x in set(speakers[a]) & set(speakers[b])
            }
        ),
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_prepared(
    rows: list[tuple[Utterance, float]], manifest: Path, metadata: dict[str, Any]
) -> Path:
    """Write the metadata, then the manifest (last: readers take a manifest as complete)."""
    manifest.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata_path(manifest)
    _write_atomic(meta, json.dumps(metadata, indent=2, sort_keys=False) + "\n")
    _write_atomic(manifest, manifest_text(rows, manifest))
    return meta
