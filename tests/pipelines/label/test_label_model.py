"""Model loading for labelling against a real `mlflow server` and the shared Ray cluster: the
actors load the pinned registry version from the node's download cache (the UDF carries only the
reference), the cache is shared under a lock, and no download is left in the temp directory."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import pytest

from avemo_core.synth.shards import ShardSpec, write_clip_shards
from pipelines import model_uri
from pipelines.label.run import LabelConfig, labeller_kwargs, pin_model, run_label
from pipelines.label.store import LabelStore
from tests.pipelines.label.helpers import check_label_rows, write_checkpoint

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    """This process's temp directory for the test, so leftovers are this test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous


@pytest.fixture(scope="module")
def registered(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    import mlflow
    from mlflow import MlflowClient

    checkpoint = write_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint", seed=5)
    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    name = "avemo-label-model-test"
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(checkpoint), artifact_path="checkpoint")
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/checkpoint", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, "champion", version.version)
    return name


def test_actors_load_the_pinned_version_from_the_node_cache(
    registered: str, mlflow_uri: str, tmp_path: Path, private_tmp: Path
) -> None:
    source, out, cache = tmp_path / "shards", tmp_path / "out", tmp_path / "cache"
    write_clip_shards(source, ShardSpec(clips=12, seed=6))
    config = LabelConfig(
        input_uri=str(source),
        output_uri=str(out),
        model_uri=f"models:/{registered}@champion",
        mlflow_uri=mlflow_uri,
        model_cache_dir=str(cache),
    )
    model = pin_model(config)
    assert model.pinned_uri == f"models:/{registered}/1"  # the alias, resolved once
    kwargs = labeller_kwargs(config, model, "cpu")
    assert kwargs["model_uri"] == model.pinned_uri
    assert len(pickle.dumps(kwargs)) < 4096  # the reference travels, not the weights
    success = run_label(config)
    assert success["media_labelled"] == 12 and success["model"]["model_version"] == "1"
    check_label_rows(LabelStore(str(out)).read_labels())
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1  # driver and actors share one download of the version
    assert Path(model.checkpoint_dir).is_relative_to(entries[0])
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no half-made download
    assert not list(private_tmp.glob("avemo-model-*"))
    assert not list(Path(tempfile.gettempdir()).glob("avemo-ckpt-*"))


def test_cache_downloads_once_and_a_failed_download_leaves_nothing(tmp_path: Path) -> None:
    calls: list[Path] = []

    def fetch(target: Path) -> Path:
        calls.append(target)
        target.mkdir(parents=True)
        (target / "avemo.json").write_text("{}")
        return target

    first = model_uri.cached_download("server\nmodels:/m/1", fetch, tmp_path)
    again = model_uri.cached_download("server\nmodels:/m/1", fetch, tmp_path)
    assert first == again and (first / "avemo.json").is_file() and len(calls) == 1
    other = model_uri.cached_download("server\nmodels:/m/2", fetch, tmp_path)
    assert other != first and len(calls) == 2

    def broken(target: Path) -> Path:
        target.mkdir(parents=True)
        (target / "part").write_text("half")
        raise ConnectionError("server went away")

    with pytest.raises(ConnectionError):
        model_uri.cached_download("server\nmodels:/m/3", broken, tmp_path)
    dirs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert dirs == sorted([first.parent.name, other.parent.name])  # nothing of the failed one
