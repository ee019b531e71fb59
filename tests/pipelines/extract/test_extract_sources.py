"""Listing INPUT (folder, glob, single file) and capturing S3 settings for the workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.extract.sources import SourceError, list_media, read_manifest
from pipelines.storage import storage_options_from_env


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in [
        "a.mp4", "B.MKV", "sub/c.wav", "sub/deeper/d.webm", "notes.txt", ".hidden.mp4",
        ".cache/e.mp4", "_tmp/f.mp4", "out/g.mp4", "-x.mp4",
    ]:  # fmt: skip
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 3)
    return tmp_path


def names(media: list, root: Path) -> list[str]:
    return [str(Path(m.uri).relative_to(root)) for m in media]


def test_folder_lists_media_recursively_skipping_hidden_and_output(tree: Path) -> None:
    os.mkfifo(tree / "pipe.mp4")  # not a regular file: never handed to ffmpeg
    (tree / "dangling.mp4").symlink_to(tree / "gone.mp4")
    media = list_media(str(tree), {}, exclude=str(tree / "out"))
    assert names(media, tree) == [
        "-x.mp4", "B.MKV", "_tmp/f.mp4", "a.mp4", "sub/c.wav", "sub/deeper/d.webm",
    ]  # fmt: skip
    assert all(m.size_bytes == 3 for m in media)


def test_glob_and_single_file(tree: Path) -> None:
    assert names(list_media(str(tree / "**/*.w*"), {}), tree) == ["sub/c.wav", "sub/deeper/d.webm"]
    assert names(list_media(str(tree / "notes.txt"), {}), tree) == ["notes.txt"]  # named: taken
    with pytest.raises(SourceError, match="input not found"):
        list_media(str(tree / "missing"), {})


def test_manifest_not_found_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="manifest not found"):
        read_manifest(str(tmp_path / "manifest.csv"), {})


def test_storage_options_capture_the_aws_variables() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert storage_options_from_env(env) == {
        "key": "k",
        "secret": "s",
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    s3_only = {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "http://b"}
    assert storage_options_from_env(s3_only) == {"endpoint_url": "http://b"}
    assert storage_options_from_env({}) == {}
