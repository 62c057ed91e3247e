"""DynamoDB and DynamoDB Streams clients (botocore's standard retries), and AWS errors turned
into one line naming the endpoint and the cause."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from ddb2es_cli.config import DynamoSettings, redact_url
from ddb2es_cli.errors import ConfigError, ConnectionFailed, Ddb2esError
from ddb2es_cli.redaction import redact, register_secret
from ddb2es_cli.transport_warnings import warn_plain_http

if TYPE_CHECKING:
    import boto3

LOCAL_REGION = "us-east-1"


def make_boto_session(settings: DynamoSettings) -> boto3.session.Session:
    """The default AWS credential chain; a local endpoint works without any credentials."""
    # Imported here, not with the module: boto3 and botocore's client machinery cost about
    # 0.25 s of CPU, which a command pays only once it builds an AWS client, so the search
    # engine's `GET /` can go out before it (cli.common.make_clients).
    import boto3

    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        credentials = session.get_credentials()
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {settings.profile!r} is not in the AWS config or credentials file "
            "(--profile, AWS_PROFILE or [dynamodb] profile)"
        ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"AWS credentials could not be loaded: {_one_line(exc)}") from None
    if settings.endpoint and credentials is None:
        session = boto3.session.Session(
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name=settings.region or LOCAL_REGION,
        )
    elif credentials is not None:
        # Real AWS secrets are long; a placeholder like "local" would mask ordinary words.
        frozen = credentials.get_frozen_credentials()
        register_secret(*(v for v in (frozen.secret_key, frozen.token) if v and len(v) >= 16))
    return session


def dynamodb_where(settings: DynamoSettings | None) -> str:
    if settings is not None and settings.endpoint:
        return f"DynamoDB at {redact_url(settings.endpoint)}"
    region = settings.region if settings is not None else None
    return f"DynamoDB (AWS, {region or 'default region'})"


_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
    }
)


def aws_error(exc: BotoCoreError | ClientError, settings: DynamoSettings | None) -> Ddb2esError:
    """One line naming the DynamoDB endpoint and the cause, for any botocore failure."""
    where = dynamodb_where(settings)
    endpoint = getattr(exc, "kwargs", {}).get("endpoint_url")
    if endpoint and (settings is None or not settings.endpoint):
        where = f"DynamoDB at {redact_url(str(endpoint))}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        message = redact(
            str(error.get("Message", "")).splitlines()[0] if error.get("Message") else ""
        )
        operation = exc.operation_name
        if code in _AUTH_CODES:
            return ConnectionFailed(
                f"{where} refused our credentials ({operation}: {code}: {message})"[:400]
            )
        return Ddb2esError(f"{where} rejected {operation}: {code}: {message}"[:400])
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            f"no AWS credentials for {where}: set a profile (--profile, AWS_PROFILE), "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role is available"
        )
    if isinstance(exc, ProfileNotFound):
        return ConfigError(f"{where}: AWS profile not found: {_one_line(exc)}")
    if isinstance(exc, NoRegionError):
        return ConfigError("no AWS region: pass --region or set AWS_REGION")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        reason = "timed out" if "Timeout" in type(exc).__name__ else "connection failed"
        return ConnectionFailed(f"cannot reach {where}: {reason}")
    return ConnectionFailed(f"{where}: {type(exc).__name__}: {redact(_one_line(exc))}"[:400])


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def make_dynamodb_client(
    settings: DynamoSettings,
    service: str = "dynamodb",
    max_pool_connections: int = 64,
    max_attempts: int = 10,
    session: boto3.session.Session | None = None,
) -> Any:
    """A low-level client (`dynamodb` or `dynamodbstreams`) with botocore's standard retries.

    `session`: one made by make_boto_session for the same settings, to share: a client of a
    session that already made one costs about 10 ms of CPU, the first of a new one about 0.2 s
    (each session loads botocore's data files anew)."""
    if session is None:
        session = make_boto_session(settings)
    region = session.region_name or (LOCAL_REGION if settings.endpoint else None)
    if region is None:
        raise ConfigError("no AWS region: pass --region or set AWS_REGION")
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
    )
    if settings.endpoint:
        warn_plain_http(settings.endpoint, "DynamoDB requests (with an AWS session token if any)")
    factory: Any = session  # boto3's stubs type `client` per literal service name
    try:
        return factory.client(
            service, endpoint_url=settings.endpoint or None, region_name=region, config=config
        )
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        raise ConfigError(f"--dynamodb-endpoint is not a valid URL: {_one_line(exc)}") from None
