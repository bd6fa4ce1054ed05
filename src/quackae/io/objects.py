"""Conditional writes of single objects on ``gs://`` and ``s3://``, for locks and manifests.

``pyarrow.fs`` writes objects whole but unconditionally, so two writers can each believe they
created the same object. The stores themselves offer compare-and-swap on one object: a GCS
write with ``ifGenerationMatch=0`` creates only if the object is absent and with
``ifGenerationMatch=G`` replaces only generation ``G``; S3 takes ``If-None-Match: *`` and
``If-Match: ETAG`` on ``PutObject`` (and ``If-Match`` on ``DeleteObject``). This module reaches
them through the official clients (``google-cloud-storage``, ``boto3``), built from the same
URI the rest of quackae passes to ``pyarrow.fs`` (``endpoint_override``, ``scheme``,
``region``, ``anonymous@``, ``retry_limit_seconds`` in its query), and imported only when a
store is used.

A version is the object's GCS generation or S3 ETag, as a string. A refused precondition raises
``PreconditionFailed``; any other failure an ``OSError`` with a one-line message, which
``storage.store_call`` turns into a ``StoreError`` naming the object.

Checked against the test servers of the suite: moto's S3 honours all four conditions; the fake
GCS server (fake-gcs-server) honours both upload conditions but deletes whatever generation a
delete names, so a conditional delete is only as safe there as a plain one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from quackae.io.storage import GCS_RETRY_LIMIT_S, Location, first_line

__all__ = ["PreconditionFailed", "create", "delete", "read", "replace", "supports"]


class PreconditionFailed(Exception):
    """The object exists (a create) or is no longer the version a replace or delete named."""


def supports(loc: Location) -> bool:
    """Whether ``loc`` is on a store whose conditional writes this module reaches."""
    return loc.prefix.startswith(("gs://", "s3://"))


def read(loc: Location) -> tuple[bytes, str] | None:
    """The object's bytes and version, or None if it does not exist."""
    return _backend(loc).read(*_bucket_key(loc))


def create(loc: Location, data: bytes) -> str:
    """Write the object only if it does not exist; its new version."""
    return _backend(loc).write(*_bucket_key(loc), data, None)


def replace(loc: Location, data: bytes, version: str) -> str:
    """Replace the object only if it is still at ``version``; its new version."""
    return _backend(loc).write(*_bucket_key(loc), data, version)


def delete(loc: Location, version: str) -> None:
    """Delete the object only if it is still at ``version`` (gone already: nothing to do)."""
    _backend(loc).delete(*_bucket_key(loc), version)


# --------------------------------------------------------------------------- clients


def _bucket_key(loc: Location) -> tuple[str, str]:
    bucket, _, key = loc.path.partition("/")
    return bucket, key


@dataclass(frozen=True)
class _Endpoint:
    """What a URI says about reaching its store: scheme, user, query (the client's cache key)."""

    scheme: str
    user: str
    query: str

    def param(self, name: str) -> str | None:
        values = parse_qs(self.query).get(name)
        return values[-1] if values else None

    def url(self) -> str | None:
        """``scheme://host:port`` of an ``endpoint_override``, else None (the public service)."""
        override = self.param("endpoint_override")
        if not override:
            return None
        if "://" in override:
            return override
        return f"{self.param('scheme') or 'https'}://{override}"


_clients: dict[_Endpoint, Any] = {}
_clients_guard = threading.Lock()


def _backend(loc: Location) -> _Gcs | _S3:
    """The (cached) backend for a location's store."""
    if not supports(loc):
        raise OSError(f"{loc}: conditional writes need a gs:// or s3:// location")
    scheme = loc.prefix.split("://", 1)[0]
    endpoint = _Endpoint(scheme, loc.prefix.split("://", 1)[1].rstrip("@"), loc.query)
    with _clients_guard:
        backend = _clients.get(endpoint)
        if backend is None:
            backend = _clients[endpoint] = _Gcs(endpoint) if scheme == "gs" else _S3(endpoint)
    return backend


class _Gcs:
    """GCS through ``google-cloud-storage``: generations as versions."""

    def __init__(self, endpoint: _Endpoint) -> None:
        from google.api_core import exceptions
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        options = {"api_endpoint": endpoint.url()} if endpoint.url() else None
        if endpoint.user == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            self.client = storage.Client(
                project="anonymous", credentials=AnonymousCredentials(), client_options=options
            )
        else:
            self.client = storage.Client(client_options=options)
        limit = float(endpoint.param("retry_limit_seconds") or GCS_RETRY_LIMIT_S)
        # conditional requests are idempotent, so they are retried, as long as pyarrow would
        self.retry = DEFAULT_RETRY.with_timeout(limit)
        self.timeout = min(limit, 60.0)
        self.exceptions = exceptions

    def _call(self, what: str, bucket: str, key: str, fn: Any) -> Any:
        try:
            return fn()
        except self.exceptions.PreconditionFailed:
            raise PreconditionFailed(f"gs://{bucket}/{key}: {what} refused") from None
        except self.exceptions.NotFound:
            raise FileNotFoundError(f"gs://{bucket}/{key}") from None
        except Exception as e:  # noqa: BLE001 - every client failure becomes one line
            raise OSError(f"{what} gs://{bucket}/{key}: {first_line(e)}") from None

    def read(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        blob = self.client.bucket(bucket).blob(key)
        try:
            data = self._call(
                "read",
                bucket,
                key,
                lambda: blob.download_as_bytes(retry=self.retry, timeout=self.timeout),
            )
        except FileNotFoundError:
            return None
        return data, str(blob.generation)

    def write(self, bucket: str, key: str, data: bytes, version: str | None) -> str:
        blob = self.client.bucket(bucket).blob(key)
        match = 0 if version is None else int(version)
        self._call(
            "write",
            bucket,
            key,
            lambda: blob.upload_from_string(
                data, if_generation_match=match, retry=self.retry, timeout=self.timeout
            ),
        )
        return str(blob.generation)

    def delete(self, bucket: str, key: str, version: str) -> None:
        blob = self.client.bucket(bucket).blob(key)
        try:
            self._call(
                "delete",
                bucket,
                key,
                lambda: blob.delete(
                    if_generation_match=int(version), retry=self.retry, timeout=self.timeout
                ),
            )
        except FileNotFoundError:
            return


class _S3:
    """S3 through ``boto3``: ETags as versions."""

    def __init__(self, endpoint: _Endpoint) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError

        keys: dict[str, str] = {}
        if ":" in endpoint.user:  # s3://ACCESS:SECRET@bucket, as pyarrow takes them
            access, secret = endpoint.user.split(":", 1)
            keys = {"aws_access_key_id": unquote(access), "aws_secret_access_key": unquote(secret)}
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint.url(),
            region_name=endpoint.param("region"),
            config=Config(connect_timeout=20, read_timeout=60, retries={"max_attempts": 4}),
            **keys,
        )
        self.client_error = ClientError

    def _call(self, what: str, bucket: str, key: str, fn: Any) -> Any:
        try:
            return fn()
        except self.client_error as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                raise PreconditionFailed(f"s3://{bucket}/{key}: {what} refused") from None
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                raise FileNotFoundError(f"s3://{bucket}/{key}") from None
            if code == "ConditionalRequestConflict" or status == 409:  # a concurrent write won
                raise PreconditionFailed(f"s3://{bucket}/{key}: {what} conflicted") from None
            raise OSError(f"{what} s3://{bucket}/{key}: {first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - every client failure becomes one line
            raise OSError(f"{what} s3://{bucket}/{key}: {first_line(e)}") from None

    def read(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        try:
            got = self._call(
                "read", bucket, key, lambda: self.client.get_object(Bucket=bucket, Key=key)
            )
        except FileNotFoundError:
            return None
        return got["Body"].read(), got["ETag"]

    def write(self, bucket: str, key: str, data: bytes, version: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        done = self._call(
            "write",
            bucket,
            key,
            lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data, **condition),
        )
        return done["ETag"]

    def delete(self, bucket: str, key: str, version: str) -> None:
        try:
            self._call(
                "delete",
                bucket,
                key,
                lambda: self.client.delete_object(Bucket=bucket, Key=key, IfMatch=version),
            )
        except FileNotFoundError:
            return
