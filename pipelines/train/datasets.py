"""Clip shards (a local directory or `s3://` prefix) as Ray Data datasets, one per split.

Only the columns a batch needs are read (a single-modal baseline skips the other modality's
features), the split filter is pushed down to the Parquet reader, and a fingerprint of which clips
sit in which split identifies the data a model was trained on. The splits are held in Ray's object
store only when they fit a share of it (`plan_cache`, from the Parquet footers' column sizes);
otherwise they stream from Parquet, the train split in a new file order every epoch. A
cross-fitted run (`avemo_core/crossfit.py`) trains on the train and valid splits together and
reads each row's split and clip id too, to tell its holdout fold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from avemo_core.crossfit import Folds
from avemo_core.data import Batch, batch_from_columns
from avemo_core.labels import EMOTIONS, SPLITS
from avemo_core.schema import META_CONFIG, SPEAKER_COLUMN
from avemo_core.speakers import fit_speaker_table, speakers_of
from pipelines.shard_reads import read_shards
from pipelines.storage import as_arrow, filesystem, storage_options_from_env


class DataError(ValueError):
    """The shards are missing, unreadable or lack a split a job needs (the user can fix it)."""


# What `avemo_core.data.batch_from_columns` reads; the feature blobs are the only heavy columns.
SHAPE_COLUMNS = (
    "has_audio",
    "has_visual",
    "audio_frames",
    "audio_dims",
    "visual_frames",
    "visual_height",
    "visual_width",
)
AUDIO_COLUMN = "audio_features"
VISUAL_COLUMN = "visual_features"
FACE_FLAGS_COLUMN = "visual_face_flags"  # since clip schema 2; version-1 shards lack it
FOLD_COLUMNS = ("split", "clip_id")  # beside the speaker, what a cross-fit row's fold needs


def train_splits(cross_fit: bool) -> tuple[str, ...]:
    """The splits a run trains on: the valid one too when cross-fitted."""
    return ("train", "valid") if cross_fit else ("train",)


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What a training run needs to know about its data before Ray reads it."""

    root: str  # the DATA argument as given
    files: tuple[str, ...]  # shard paths inside the filesystem (no scheme)
    counts: dict[str, int]  # rows per split
    fingerprint: str  # sha256 over sorted (split, clip_id) pairs and the extractor config
    feature_config: dict[str, Any]  # extractor config from the shard metadata
    rows: int  # all rows, in a split or not
    column_bytes: dict[str, int]  # uncompressed bytes per column over all files (Parquet footers)
    stored_bytes: int  # the files' column data as stored (compressed)
    columns: tuple[str, ...] = ()  # column names of the first shard (empty: not known)

    def present(self, wanted: list[str]) -> list[str]:
        """`wanted` less the columns these shards lack (version 1 has no face flags)."""
        return [c for c in wanted if not self.columns or c in self.columns]


@dataclasses.dataclass(frozen=True)
class CachePlan:
    """Whether the train and valid splits go to the object store, and the numbers behind it."""

    cache: bool
    needed_bytes: int  # the two splits' columns in memory, estimated from the Parquet footers
    budget_bytes: int  # the share of the cluster's object store they may fill
    reason: str

    def line(self) -> str:
        """The decision as the job prints it."""
        how = "cached in the object store" if self.cache else "streamed from Parquet"
        return (
            f"train: data {how} ({self.reason}: train+valid need {_gib(self.needed_bytes)}, "
            f"object store budget {_gib(self.budget_bytes)})"
        )


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.3f} GiB"


def plan_cache(
    info: ShardInfo,
    mode: str,
    object_store_bytes: float,
    budget_share: float,
    allowed: bool,
    cross_fit: bool = False,
) -> CachePlan:
    """Cache only when allowed and the splits fit `budget_share` of the object store: the rest
    of the store serves Ray Data's and Ray Train's own blocks while the cache is held (a
    cross-fitted run holds the valid rows twice: in the training data and for validation)."""
    needed = 0.0
    datasets = (
        (train_splits(cross_fit), batch_columns(mode, cross_fit)),
        (("valid",), batch_columns(cross_fit=cross_fit)),
    )
    for splits, columns in datasets:
        rows = sum(info.counts.get(split, 0) for split in splits)
        share = rows / info.rows if info.rows else 0.0
        needed += share * sum(info.column_bytes.get(c, 0) for c in columns)
    budget = int(object_store_bytes * budget_share)
    if not allowed:
        return CachePlan(False, int(needed), budget, "caching turned off")
    if needed > budget:
        return CachePlan(False, int(needed), budget, "too large for the budget")
    return CachePlan(True, int(needed), budget, "fits the budget")


def batch_columns(mode: str = "colearn", cross_fit: bool = False) -> list[str]:
    """Columns to read for `mode`; single-modal baselines leave the other modality on disk."""
    visual = [VISUAL_COLUMN, FACE_FLAGS_COLUMN]
    features = {"audio": [AUDIO_COLUMN], "visual": visual}.get(mode, [AUDIO_COLUMN, *visual])
    folds = list(FOLD_COLUMNS) if cross_fit else []
    return [*SHAPE_COLUMNS, *features, *EMOTIONS, SPEAKER_COLUMN, *folds]


def _filesystem(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, path = filesystem(root, storage_options_from_env())
    except (ImportError, ValueError) as err:
        raise DataError(f"cannot open {root}: {err}") from None
    return fs, path.rstrip("/")


def _shard_files(fs: fsspec.AbstractFileSystem, path: str, root: str) -> list[str]:
    """Parquet files under `path`, skipping `_errors/`, `_SUCCESS.json` and hidden/partial files."""
    try:
        found = fs.find(path) if fs.isdir(path) else [path] if fs.exists(path) else []
    except OSError as err:
        raise DataError(f"cannot list {root}: {err}") from None
    files = []
    for name in sorted(found):
        relative = name[len(path) :].lstrip("/") if name != path else name.rsplit("/", 1)[-1]
        hidden = any(part.startswith(("_", ".")) for part in relative.split("/"))
        if name.endswith(".parquet") and not hidden:
            files.append(name)
    if not files:
        raise DataError(f"no clip shards (*.parquet) found under {root}")
    return files


def inspect_shards(root: str) -> ShardInfo:
    """List the shards, count rows per split and fingerprint them (reads two small columns)."""
    fs, path = _filesystem(root)
    files = _shard_files(fs, path, root)
    pa_fs = as_arrow(fs)
    try:
        table = pq.read_table(files, columns=["clip_id", "split"], filesystem=pa_fs)
        first = pq.read_schema(files[0], filesystem=pa_fs)
        metadata = first.metadata or {}
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{root} does not hold readable clip shards: {err}") from None
    splits = [s or "" for s in table.column("split").to_pylist()]  # null split: in none
    pairs = sorted(zip(splits, table.column("clip_id").to_pylist(), strict=True))
    feature_config = json.loads(metadata.get(META_CONFIG, b"{}"))
    digest = hashlib.sha256(json.dumps(feature_config, sort_keys=True).encode())
    for split, clip_id in pairs:
        digest.update(f"{split}\t{clip_id}\n".encode())
    counts = {split: sum(1 for s, _ in pairs if s == split) for split in SPLITS}
    column_bytes, stored_bytes = _sizes(files, pa_fs, root)
    return ShardInfo(
        root,
        tuple(files),
        counts,
        digest.hexdigest(),
        feature_config,
        table.num_rows,
        column_bytes,
        stored_bytes,
        tuple(first.names),
    )


def _sizes(files: list[str], pa_fs: pafs.FileSystem, root: str) -> tuple[dict[str, int], int]:
    """Uncompressed bytes per column and bytes on disk, from the footers read concurrently."""

    def footer(path: str) -> tuple[dict[str, int], int]:
        metadata = pq.read_metadata(path, filesystem=pa_fs)
        sizes: dict[str, int] = {}
        on_disk = 0
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                sizes[chunk.path_in_schema] = (
                    sizes.get(chunk.path_in_schema, 0) + chunk.total_uncompressed_size
                )
                on_disk += chunk.total_compressed_size
        return sizes, on_disk

    try:
        with ThreadPoolExecutor(16) as pool:
            footers = list(pool.map(footer, files))
    except (OSError, ValueError) as err:
        raise DataError(f"{root} does not hold readable clip shards: {err}") from None
    total: dict[str, int] = {}
    for sizes, _ in footers:
        for name, size in sizes.items():
            total[name] = total.get(name, 0) + size
    return total, sum(on_disk for _, on_disk in footers)


def split_dataset(
    info: ShardInfo, split: str | Sequence[str], columns: list[str], shuffle_seed: int | None = None
) -> Any:
    """One split's rows (or several splits') as a Ray Data dataset, reading only `columns`
    (filter pushed down).

    With `shuffle_seed`, every pass (epoch) reads the files in a new order drawn from the seed.
    """
    from ray.data import FileShuffleConfig
    from ray.data.expressions import col

    fs, _ = _filesystem(info.root)
    shuffle = (
        None
        if shuffle_seed is None
        else FileShuffleConfig(seed=shuffle_seed, reseed_after_execution=True)
    )
    dataset = read_shards(info.files, as_arrow(fs), shuffle=shuffle)
    splits = [split] if isinstance(split, str) else list(split)
    return dataset.filter(expr=col("split").is_in(splits)).select_columns(info.present(columns))


def training_datasets(
    info: ShardInfo, mode: str, shuffle_seed: int | None = None, cross_fit: bool = False
) -> dict[str, Any]:
    """`train` (mode's columns, files shuffled per pass with `shuffle_seed`; with `cross_fit` the
    train and valid splits' rows) and `valid` (both modalities: every condition is validated)."""
    for split in ("train", "valid"):
        if info.counts[split] == 0:
            raise DataError(f"{info.root} has no rows in the {split!r} split")
    columns = batch_columns(mode, cross_fit)
    return {
        "train": split_dataset(info, train_splits(cross_fit), columns, shuffle_seed),
        "valid": split_dataset(info, "valid", batch_columns(cross_fit=cross_fit)),
    }


def cross_fit_folds(info: ShardInfo, members: int) -> tuple[Folds, np.ndarray]:
    """The folds of the valid split's speakers for `members` members, and (K,) valid clips per
    fold; read in this process (small columns only)."""
    if info.counts["valid"] == 0:
        raise DataError(f"cross-fitting needs valid clips; {info.root} has none")
    fs, _ = _filesystem(info.root)
    table = pq.read_table(
        list(info.files),
        columns=info.present(["has_audio", *FOLD_COLUMNS, SPEAKER_COLUMN]),
        filters=[("split", "=", "valid")],
        filesystem=as_arrow(fs),
    )
    columns = _numpy_columns(table)
    speakers = speakers_of(columns)
    folds = Folds.of(speakers, members)
    holdout = folds.holdout(list(columns["split"]), speakers, list(columns["clip_id"]))
    return folds, np.bincount(holdout, minlength=members)


class LocalBatches:
    """One split read in this process with plain pyarrow (no Ray): for evaluation and the gate.

    Re-iterable: the rows are read once, kept as compact feature blobs, and padded per pass.
    """

    def __init__(
        self,
        info: ShardInfo,
        split: str,
        batch_size: int,
        speaker_statistics: bool = False,
        **caps: int,
    ) -> None:
        fs, _ = _filesystem(info.root)
        try:
            table = pq.read_table(
                list(info.files),
                columns=info.present(batch_columns()),
                filters=[("split", "=", split)],
                filesystem=as_arrow(fs),
            )
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the {split!r} split of {info.root}: {err}") from None
        if table.num_rows == 0:
            raise DataError(f"{info.root} has no rows in the {split!r} split")
        self.rows = table.num_rows
        self.chunks = [_numpy_columns(chunk) for chunk in table.to_batches(batch_size)]
        self.caps = caps  # max_audio_frames / max_visual_frames for batch_from_columns
        # the split's own speakers, for a model that standardises its functionals per speaker
        self.speakers = fit_speaker_table(self._batches()) if speaker_statistics else None

    def _batches(self) -> Iterator[tuple[list[str | None], Batch]]:
        """(speakers, batch) per chunk; speakers all None in shards without the column."""
        for columns in self.chunks:
            yield speakers_of(columns), batch_from_columns(columns, **self.caps)

    def __iter__(self) -> Iterator[Batch]:
        for speakers, batch in self._batches():
            yield self.speakers.attach(batch, speakers) if self.speakers is not None else batch


def fill_missing_modality(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns read without one modality's feature blob (a single-modal baseline, or only the
    audio): that modality becomes absent for all rows."""
    size = len(columns["has_audio"])
    for blob, flag in ((AUDIO_COLUMN, "has_audio"), (VISUAL_COLUMN, "has_visual")):
        if blob not in columns:
            columns = {**columns, blob: np.full(size, b"", object), flag: np.zeros(size, bool)}
    return columns


def speaker_table(info: ShardInfo, splits: tuple[str, ...] | None, batch_size: int = 64) -> Any:
    """The SpeakerTable of the named speakers in `splits` (None: every row), read file by file
    in this process (audio columns only); None when no clip there has a speaker (a manifest
    without one)."""
    if SPEAKER_COLUMN not in info.columns:
        return None
    fs, _ = _filesystem(info.root)
    columns = info.present([*SHAPE_COLUMNS, AUDIO_COLUMN, SPEAKER_COLUMN, "split"])

    def chunks() -> Iterator[tuple[list[str | None], Batch]]:
        for path in info.files:
            with fs.open(path, "rb") as handle:
                for chunk in pq.ParquetFile(handle).iter_batches(batch_size, columns=columns):
                    if splits is not None:
                        chunk = chunk.filter(pc.is_in(chunk.column("split"), pa.array(splits)))
                    if chunk.num_rows == 0:
                        continue
                    data = fill_missing_modality(_numpy_columns(chunk))
                    yield speakers_of(data), batch_from_columns(data)

    return fit_speaker_table(chunks())


def _numpy_columns(chunk: Any) -> dict[str, np.ndarray]:
    """A pyarrow table or record batch as name -> numpy array (blobs as object arrays)."""
    return {name: chunk.column(name).to_numpy(zero_copy_only=False) for name in chunk.schema.names}


def sample_rows(info: ShardInfo, split: str, rows: int, columns: list[str]) -> Any:
    """The first `rows` rows of a split as a pandas DataFrame (a model's input example)."""
    fs, _ = _filesystem(info.root)
    table = pq.read_table(
        list(info.files),
        columns=info.present(columns),
        filters=[("split", "=", split)],
        filesystem=as_arrow(fs),
    )
    return table.slice(0, rows).to_pandas()
