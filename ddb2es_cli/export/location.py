"""Where an export lives: `s3://bucket/prefix/AWSDynamoDB/<ExportId>/` or a local directory with
the same layout (`aws s3 sync` of that prefix). Reads are streams of bytes, never whole files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.rate import RateLimiter

EXPORTS_DIR = "AWSDynamoDB"
READ_CHUNK = 256 * 1024


class ExportError(Ddb2esError):
    """The export cannot be read or does not check out (one line naming file and line)."""


ByteLimiter = RateLimiter  # --max-read-mbps: bytes per second


class ByteStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class Location(Protocol):
    url: str

    def read_text(self, name: str) -> str:
        """A small file of the export folder (a manifest), whole."""
        ...

    def open_data(self, key: str) -> ByteStream:
        """A data file (by its `dataFileS3Key`) as a binary stream."""
        ...


@dataclass
class LocalLocation:
    """A local copy: `root` is the `<ExportId>` folder; data keys resolve from `AWSDynamoDB/`."""

    url: str
    root: Path

    def read_text(self, name: str) -> str:
        try:
            return (self.root / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ExportError(f"{self.url}: no {name} (is this an export folder?)") from None
        except OSError as exc:
            raise ExportError(f"{self.url}: cannot read {name}: {exc.strerror}") from None

    def open_data(self, key: str) -> IO[bytes]:
        path = self._data_path(key)
        try:
            return open(path, "rb")
        except OSError as exc:
            raise ExportError(f"{self.url}: cannot read data file {key}: {exc.strerror}") from None

    def _data_path(self, key: str) -> Path:
        """Full exports keep data under `<ExportId>/data/`, incremental ones share
        `AWSDynamoDB/data/`: the key's part after `AWSDynamoDB/` names the file either way."""
        marker = f"{EXPORTS_DIR}/"
        if marker in key and self.root.parent.name == EXPORTS_DIR:
            return self.root.parent / key.rsplit(marker, 1)[1]
        return self.root / "data" / key.rsplit("/", 1)[-1]


@dataclass
class S3Location:
    url: str
    client: Any
    bucket: str
    prefix: str  # the `<ExportId>/` folder's key, ending in "/"

    def read_text(self, name: str) -> str:
        body = self._get(self.prefix + name, name)
        try:
            return bytes(body.read()).decode("utf-8")
        finally:
            body.close()

    def open_data(self, key: str) -> ByteStream:
        what = f"data file {key}"
        first = self._get(key, what, whole=True)
        etag = first.get("ETag")

        def rest(offset: int) -> Any:
            # The same object (If-Match), from the byte reached.
            return self._get(
                key, what, Range=f"bytes={offset}-", **({"IfMatch": etag} if etag else {})
            )["Body"]

        return ResumingBody(first["Body"], rest, f"{self.url}: {what}")

    def _get(self, key: str, what: str, whole: bool = False, **extra: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
            return answer if whole or extra else answer["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise ExportError(f"{self.url}: cannot read {what}: {code}") from None
        except BotoCoreError as exc:
            raise ExportError(f"{self.url}: cannot read {what}: {type(exc).__name__}") from None


class ResumingBody:
    """An S3 object's bytes as one stream: a read that fails half-way (connection reset,
    timeout, short body) asks again from the byte reached, so a long file survives a network
    hiccup without starting over (and its MD5 still covers every byte once)."""

    ATTEMPTS = 5

    def __init__(self, body: Any, rest: Callable[[int], Any], where: str) -> None:
        self.body, self.rest, self.where = body, rest, where
        self.offset = 0
        self.failures = 0

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        while True:
            try:
                data: bytes = self.body.read(size)
            except (BotoCoreError, OSError) as exc:
                self.failures += 1
                if self.failures > self.ATTEMPTS:
                    raise ExportError(
                        f"{self.where}: reading failed {self.failures} times, last at byte "
                        f"{self.offset}: {type(exc).__name__}"
                    ) from None
                self.body.close()
                self.body = self.rest(self.offset)
                continue
            self.offset += len(data)
            return data

    def close(self) -> None:
        self.body.close()


def open_location(url: str, s3_client: Callable[[], Any]) -> Location:
    """`s3://...` through `s3_client()` (built only when needed), anything else a folder."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"{url}: no bucket (expected s3://bucket/prefix/AWSDynamoDB/ID/)")
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        return S3Location(url, s3_client(), bucket, prefix)
    if "://" in url:
        raise ConfigError(f"{url}: an export URL is s3://... or a local folder")
    root = Path(url)
    if not root.is_dir():
        raise ConfigError(f"{url}: not a folder (expected the <ExportId> folder of an export)")
    return LocalLocation(url, root)


class CountingReader:
    """A binary stream that feeds every byte it reads to `seen` and to the read-rate limit."""

    def __init__(
        self, raw: ByteStream, seen: Callable[[bytes], None], limiter: ByteLimiter
    ) -> None:
        self.raw, self.seen, self.limiter = raw, seen, limiter
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        self.limiter.wait()
        data = self.raw.read(READ_CHUNK if size is None or size < 0 else size)
        self.seen(data)
        self.size += len(data)
        self.limiter.consume(len(data))
        return data

    def drain(self) -> None:
        """Read to the end (bytes after the gzip stream still count for the MD5)."""
        while self.read(READ_CHUNK):
            pass

    def close(self) -> None:
        self.raw.close()


def make_s3_client(endpoint: str | None, region: str | None, profile: str | None) -> Any:
    """S3 through the default AWS credential chain; `endpoint` ([s3] endpoint) for
    S3-compatible stores and local servers, which work without credentials."""
    from botocore.config import Config as BotoConfig

    from ddb2es_cli.clients import make_boto_session
    from ddb2es_cli.config import DynamoSettings

    session = make_boto_session(DynamoSettings(endpoint=endpoint, region=region, profile=profile))
    factory: Any = session
    return factory.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=session.region_name or "us-east-1",
        config=BotoConfig(retries={"mode": "standard", "max_attempts": 10}, read_timeout=120),
    )
