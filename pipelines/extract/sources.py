"""What to extract: the media files under INPUT (folder, glob, single file or s3:// prefix) and the
segments of an optional manifest."""

from __future__ import annotations

import dataclasses
import glob
import os
import posixpath
from collections.abc import Mapping
from stat import S_ISREG
from typing import Any

from avemo_core.media.clips import Segment, parse_manifest
from pipelines.storage import filesystem, is_s3, uri_of

# Extensions listed from folders and prefixes (any case); a file named explicitly is always taken.
MEDIA_EXTENSIONS = frozenset(
    {
        "3g2",
        "3gp",
        "aac",
        "aif",
        "aiff",
        "amr",
        "asf",
        "avi",
        "caf",
        "dv",
        "f4v",
        "flac",
        "flv",
        "m2ts",
        "m4a",
        "m4v",
        "mka",
        "mkv",
        "mov",
        "mp3",
        "mp4",
        "mpeg",
        "mpg",
        "mts",
        "mxf",
        "oga",
        "ogg",
        "ogv",
        "opus",
        "ts",
        "vob",
        "wav",
        "webm",
        "wma",
        "wmv",
    }
)


class SourceError(ValueError):
    """INPUT or the manifest cannot be listed or read (the user can fix it)."""


@dataclasses.dataclass(frozen=True)
class MediaFile:
    uri: str  # absolute local path or s3:// URI
    size_bytes: int  # size when listed (the file may change or vanish before it is decoded)


def is_media_name(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and base.rsplit(".", 1)[-1].lower() in MEDIA_EXTENSIONS


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/")[:-1])


def _inside(path: str, root: str | None) -> bool:
    return root is not None and (path == root or path.startswith(root.rstrip("/") + "/"))


def _list_local(input_uri: str, exclude: str | None) -> list[MediaFile]:
    if glob.has_magic(input_uri):
        paths = [os.path.abspath(p) for p in glob.glob(input_uri, recursive=True)]
        return _sized([p for p in paths if is_media_name(p) and not _inside(p, exclude)])
    root = os.path.abspath(input_uri)
    if os.path.isfile(root):
        return [MediaFile(root, os.path.getsize(root))]
    if not os.path.isdir(root):
        raise SourceError(f"input not found: {input_uri}")
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and not _inside(os.path.join(folder, d), exclude)
        ]
        found += [os.path.join(folder, name) for name in files if is_media_name(name)]
    return _sized(found)


def _sized(paths: list[str]) -> list[MediaFile]:
    """Regular files with their sizes; one that vanished or is not a regular file is left out."""
    files = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if S_ISREG(stat.st_mode):
            files.append(MediaFile(path, stat.st_size))
    return files


def _list_s3(input_uri: str, options: Mapping[str, Any], exclude: str | None) -> list[MediaFile]:
    fs, path = filesystem(input_uri, options)
    try:
        if glob.has_magic(path):
            entries = fs.glob(path, detail=True)
            items = [(p, info) for p, info in entries.items() if info.get("type") == "file"]
        elif fs.isfile(path):
            return [MediaFile(input_uri, int(fs.info(path).get("size") or 0))]
        else:
            items = [(p, info) for p, info in fs.find(path, detail=True).items()]
            items = [(p, i) for p, i in items if not _hidden(p[len(path) :].lstrip("/"))]
    except (OSError, ValueError) as err:
        raise SourceError(f"cannot list {input_uri}: {err}") from None
    except Exception as err:  # botocore raises its own types for bad endpoints and credentials
        raise SourceError(f"cannot list {input_uri}: {type(err).__name__}: {err}") from None
    exclude_path = exclude.split("://", 1)[1] if exclude and is_s3(exclude) else None
    return [
        MediaFile(uri_of(input_uri, p), int(info.get("size") or 0))
        for p, info in items
        if is_media_name(p) and not _inside(p, exclude_path)
    ]


def list_media(
    input_uri: str, options: Mapping[str, Any], exclude: str | None = None
) -> list[MediaFile]:
    """Media files under INPUT, sorted by URI, leaving out those inside `exclude` (the output)."""
    if is_s3(input_uri):
        media = _list_s3(input_uri, options, exclude)
    else:
        media = _list_local(
            input_uri, None if exclude is None or is_s3(exclude) else os.path.abspath(exclude)
        )
    return sorted(media, key=lambda m: m.uri)


def read_manifest(manifest_uri: str, options: Mapping[str, Any]) -> list[Segment]:
    """The manifest's segments; relative media URIs resolve against the manifest's folder."""
    fs, path = filesystem(manifest_uri, options)
    try:
        text = fs.cat_file(path).decode("utf-8-sig")
    except FileNotFoundError:
        raise SourceError(f"manifest not found: {manifest_uri}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"cannot read manifest {manifest_uri}: {err}") from None
    base = (
        uri_of(manifest_uri, posixpath.dirname(path))
        if is_s3(manifest_uri)
        else os.path.dirname(path)
    )
    return parse_manifest(text, base)
