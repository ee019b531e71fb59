"""Labelling s3:// clip shards into an s3:// output against moto's real S3 server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines.label.run import LabelConfig, run_label
from pipelines.label.store import LabelStore
from pipelines.storage import filesystem, storage_options_from_env
from tests.pipelines.label.helpers import check_label_rows, write_checkpoint


@pytest.mark.usefixtures("ray_cluster")
def test_s3_shards_to_s3_labels(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = f"avemo-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    write_clip_shards(tmp_path / "shards", ShardSpec(clips=10, seed=8))
    fs, _ = filesystem(f"s3://{bucket}", storage_options_from_env())
    fs.put(str(tmp_path / "shards"), f"{bucket}/shards", recursive=True)
    checkpoint = write_checkpoint(tmp_path / "checkpoint")
    config = LabelConfig(
        input_uri=f"s3://{bucket}/shards",
        output_uri=f"s3://{bucket}/out",
        model_uri=str(checkpoint),
    )

    success = run_label(config)
    assert (success["input_kind"], success["media_labelled"]) == ("shards", 10)
    assert json.loads(fs.cat_file(f"{bucket}/out/_SUCCESS.json"))["run_id"] == success["run_id"]
    labels = LabelStore(f"s3://{bucket}/out", storage_options_from_env()).read_labels()
    assert labels.num_rows == 10
    check_label_rows(labels)
    assert run_label(config)["media_skipped"] == 10
