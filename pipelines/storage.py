"""Local paths and `s3://` URIs behind one fsspec interface, with S3 settings taken from the driver.

Every pipeline opens storage here (`filesystem`, or `arrow_filesystem` for pyarrow and Ray Data
readers), so a local path, a `file://` URI and an S3 prefix behave the same everywhere.

Ray workers may have started before the driver's environment was set (a long-lived cluster, or a
test that sets AWS_ENDPOINT_URL after `ray.init`), so the driver captures the standard AWS variables
once (`storage_options_from_env`) and passes them explicitly to every task.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow.fs as pafs

# Standard variables read by boto; AWS_ENDPOINT_URL(_S3) points at S3-compatible stores (moto).
_ENV_CREDENTIALS = {
    "key": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
}


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def storage_options_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """s3fs keyword arguments from the AWS variables set now; unset ones are left to boto."""
    env = os.environ if env is None else env
    options: dict[str, Any] = {
        name: env[var] for name, var in _ENV_CREDENTIALS.items() if env.get(var)
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["client_kwargs"] = {"region_name": region}
    return options


def filesystem(
    uri: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path, a file:// or an s3:// URI; listings are never
    cached. Another scheme raises ValueError (only local and S3 storage are supported)."""
    if is_s3(uri):
        import s3fs

        fs = s3fs.S3FileSystem(
            **dict(storage_options or {}), skip_instance_cache=True, use_listings_cache=False
        )
        return fs, uri.split("://", 1)[1].rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        raise ValueError(f"unsupported storage URI {uri!r}: use a local path or s3://")
    return fsspec.filesystem("file"), os.path.abspath(uri)


def arrow_filesystem(
    uri: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[pafs.FileSystem, str]:
    """`filesystem(uri)` wrapped for pyarrow readers (pq.read_table, ray.data.read_parquet)."""
    fs, path = filesystem(uri, storage_options)
    return as_arrow(fs), path


def as_arrow(fs: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """An fsspec filesystem as pyarrow readers take it."""
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def join(root: str, *parts: str) -> str:
    """Join path parts with '/', the separator of both local POSIX paths and S3 keys."""
    return "/".join([root.rstrip("/"), *parts])


def uri_of(uri_root: str, path: str) -> str:
    """The user-facing URI of `path` from the same filesystem as `uri_root` (adds s3:// back)."""
    return f"s3://{path}" if is_s3(uri_root) else path
