"""Media durations for manifest rows: from the file header where that is cheap, else ffprobe.

A manifest row needs the file's end time. ffprobe costs about 0.1 s of wall time per file here
(process start-up: 26 s for 200 FLAC files on 2 busy cores), minutes for a corpus of thousands, so
WAV (RIFF), FLAC (STREAMINFO), MP4/MOV (mvhd) and FLV (onMetaData) headers are read directly;
any other container, or a header that states no length, goes to `avemo_core.media.probe`. Header
readers only read a few bounded fields and never trust a size beyond the file's end.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from avemo_core.media.errors import MediaError
from avemo_core.media.probe import probe

_MAX_BOXES = 4096  # an MP4 with more top-level or moov boxes than this is left to ffprobe
_FLV_META_MAX_BYTES = 1 << 16  # onMetaData read at most; the duration key comes early


def _wav_s(f: BinaryIO, size: int) -> float | None:
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    byte_rate = 0
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"fmt ":
            fmt = f.read(min(length, 16))
            if len(fmt) < 12:
                return None
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
            f.seek(length - len(fmt) + (length & 1), os.SEEK_CUR)
        elif name == b"data":
            if not byte_rate or head[:4] == b"RF64":
                return None  # RF64 keeps the real size elsewhere: ffprobe knows it
            return min(length, size - f.tell()) / byte_rate
        else:
            f.seek(length + (length & 1), os.SEEK_CUR)


def _flac_s(f: BinaryIO, size: int) -> float | None:
    head = f.read(4 + 4 + 18)  # "fLaC", STREAMINFO block header, its first 18 bytes
    if len(head) < 26 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    bits = int.from_bytes(head[18:26], "big")  # rate 20 | channels 3 | bps 5 | samples 36
    rate, samples = bits >> 44, bits & ((1 << 36) - 1)
    return samples / rate if rate and samples else None


def _boxes(f: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the ISO-BMFF boxes in [start, end)."""
    boxes: list[tuple[bytes, int, int]] = []
    offset = start
    while offset + 8 <= end and len(boxes) < _MAX_BOXES:
        f.seek(offset)
        head = f.read(16)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head[:8])
        payload = offset + 8
        if length == 1 and len(head) == 16:
            length, payload = struct.unpack(">Q", head[8:16])[0], offset + 16
        elif length == 0:
            length = end - offset
        if length < payload - offset:
            break
        boxes.append((kind, payload, min(offset + length, end)))
        offset += length
    return boxes


def _mp4_s(f: BinaryIO, size: int) -> float | None:
    for kind, payload, box_end in _boxes(f, 0, size):
        if kind != b"moov":
            continue
        for child, start, _ in _boxes(f, payload, box_end):
            if child != b"mvhd":
                continue
            f.seek(start)
            body = f.read(32)
            if len(body) < 20:
                return None
            if body[0] == 1 and len(body) >= 32:
                timescale, duration = struct.unpack(">IQ", body[20:32])
            else:
                timescale, duration = struct.unpack(">II", body[12:20])
            return duration / timescale if timescale and duration else None
    return None


def _flv_s(f: BinaryIO, size: int) -> float | None:
    head = f.read(9)
    if len(head) < 9 or head[:3] != b"FLV":
        return None
    f.seek(struct.unpack(">I", head[5:9])[0] + 4)  # past the header and PreviousTagSize0
    tag = f.read(11)
    if len(tag) < 11 or tag[0] != 18:  # the first tag is onMetaData (a script tag) when present
        return None
    body = f.read(min(int.from_bytes(tag[1:4], "big"), _FLV_META_MAX_BYTES))
    at = body.find(b"\x00\x08duration\x00")  # AMF0: key "duration", then a number (type 0)
    if at < 0 or at + 19 > len(body):
        return None
    return struct.unpack(">d", body[at + 11 : at + 19])[0]  # after 2 + 8 key bytes and the type


_HEADER_READERS: dict[str, Callable[[BinaryIO, int], float | None]] = {
    "wav": _wav_s,
    "flac": _flac_s,
    "mp4": _mp4_s,
    "m4v": _mp4_s,
    "m4a": _mp4_s,
    "mov": _mp4_s,
    "flv": _flv_s,
}


def header_duration_s(path: Path) -> float | None:
    """The length the header states, or None when this reader cannot tell (then ask ffprobe)."""
    reader = _HEADER_READERS.get(path.suffix.lstrip(".").lower())
    if reader is None:
        return None
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            seconds = reader(f, size)
    except (OSError, struct.error):
        return None
    return seconds if seconds and seconds > 0 else None


def duration_s(path: Path) -> float:
    """Length of one media file; raises MediaError when it is not readable media."""
    return header_duration_s(path) or probe(str(path)).duration_s


def durations(
    paths: Sequence[Path], workers: int = 4, progress: Callable[[str], None] | None = None
) -> list[float | MediaError]:
    """Length of each file, in order; a file that cannot be read gives its MediaError instead."""

    def one(path: Path) -> float | MediaError:
        try:
            return duration_s(path)
        except MediaError as err:
            return err

    out: list[float | MediaError] = []
    every = max(1, len(paths) // 10)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, result in enumerate(pool.map(one, paths), start=1):
            out.append(result)
            if progress is not None and (index % every == 0 or index == len(paths)):
                progress(f"read the length of {index}/{len(paths)} files")
    return out
