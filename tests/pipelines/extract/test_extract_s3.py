"""Extraction from s3:// media to s3:// shards against moto's real S3 server, read back with plain
pyarrow in a separate process that never imports avemo."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest

from pipelines.extract.run import (
    ExtractConfig,
    ExtractError,
    execute_plan,
    plan_extract,
    run_extract,
)
from pipelines.storage import filesystem, storage_options_from_env
from tests.pipelines import media_factory as mf

# Reads the shards with nothing but pyarrow (and numpy for the documented blob layout).
READER = r"""
import json, sys
import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

endpoint, root = sys.argv[1], sys.argv[2]
host = endpoint.split("://", 1)[1]
fs = pafs.S3FileSystem(endpoint_override=host, scheme="http", region="us-east-1")
infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
files = sorted(
    i.path for i in infos if i.path.endswith(".parquet") and "/_" not in i.path[len(root):]
)
rows = pq.read_table(files, filesystem=fs).to_pylist()
out = []
for r in rows:
    audio = np.frombuffer(r["audio_features"], "<f2").reshape(r["audio_frames"], r["audio_dims"])
    visual = np.frombuffer(r["visual_features"], "u1").reshape(
        r["visual_frames"], r["visual_height"], r["visual_width"])
    out.append({"clip_id": r["clip_id"], "uri": r["source_uri"], "audio": list(audio.shape),
                "visual": list(visual.shape), "audio_mean": float(audio.astype("f4").mean())
                if audio.size else None})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("avemo_core", "pipelines", "jobs"))
print(json.dumps({"files": len(files), "rows": out, "avemo_modules": loaded}))
"""


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"avemo-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def upload_corpus(client: object, bucket: str, folder: Path) -> None:
    files = {
        "media/talk.mp4": mf.mp4(folder / "talk.mp4", 2.0),
        "media/sp ace ü.mp4": mf.mp4(folder / "space.mp4", 1.0),
        "media/voice.wav": mf.wav(folder / "voice.wav", np.full(16000, 3000, np.int16)),
        "media/goes.mp4": mf.mp4(folder / "goes.mp4", 1.0),
    }
    for key, path in files.items():
        client.upload_file(str(path), bucket, key)  # type: ignore[attr-defined]
    client.put_object(Bucket=bucket, Key="media/bad/notes.mp4", Body=b"not a video\n" * 10)  # type: ignore[attr-defined]
    # archived to Glacier: listed like any object, but GET is refused until it is restored
    client.put_object(  # type: ignore[attr-defined]
        Bucket=bucket,
        Key="media/cold.mp4",
        Body=files["media/talk.mp4"].read_bytes(),
        StorageClass="GLACIER",
    )


def test_s3_to_s3_and_read_back_with_plain_pyarrow(
    ray_cluster: None, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    upload_corpus(client, bucket, tmp_path)
    job = ExtractConfig(
        input_uri=f"s3://{bucket}/media/",
        output_uri=f"s3://{bucket}/shards",
        window_s=1.0,
        files_per_task=1,
    )
    options = storage_options_from_env()
    assert options["endpoint_url"] == s3_endpoint  # captured here, handed to every task
    plan = plan_extract(job, options)
    assert len(plan.files) == 6
    client.delete_object(Bucket=bucket, Key="media/goes.mp4")  # vanishes after listing
    summary = execute_plan(job, plan, options)["summary"]

    assert (summary["files_extracted"], summary["files_failed"]) == (3, 3)
    errors = {e["uri"].rsplit("/", 1)[1]: (e["stage"], e["kind"]) for e in summary["errors"]}
    assert errors["notes.mp4"] == ("probe", "invalid_media")
    assert errors["goes.mp4"] == ("read", "not_found")
    assert errors["cold.mp4"] == ("read", "PermissionError")
    cold = next(e for e in summary["errors"] if e["uri"].endswith("cold.mp4"))
    assert "storage class" in cold["message"]
    fs, _ = filesystem(f"s3://{bucket}", options)
    assert len(fs.ls(f"{bucket}/shards/_errors")) == 3
    success = json.loads(fs.cat_file(f"{bucket}/shards/_SUCCESS.json"))
    assert success["summary"]["clips"] == 2 + 1 + 1

    done = subprocess.run(
        [sys.executable, "-c", READER, s3_endpoint, f"{bucket}/shards"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    read = json.loads(done.stdout)
    assert read["avemo_modules"] == []
    assert read["files"] == 3 and len(read["rows"]) == 4
    by_uri: dict[str, list[dict]] = {}
    for row in read["rows"]:
        by_uri.setdefault(row["uri"], []).append(row)
    assert sorted(by_uri) == [
        f"s3://{bucket}/media/{n}" for n in ("sp ace ü.mp4", "talk.mp4", "voice.wav")
    ]
    assert [r["visual"] for r in by_uri[f"s3://{bucket}/media/talk.mp4"]] == [[5, 64, 64]] * 2
    voice = by_uri[f"s3://{bucket}/media/voice.wav"][0]
    assert voice["audio"] == [98, 80] and voice["visual"] == [0, 64, 64]

    again = run_extract(job)["summary"]
    assert (again["files_skipped"], again["files_extracted"], again["files_failed"]) == (3, 0, 2)
    with pytest.raises(ExtractError, match="bucket 'no-such-bucket' does not exist"):
        run_extract(job.replace(output_uri="s3://no-such-bucket/shards"))
