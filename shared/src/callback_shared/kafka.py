"""Kafka plumbing: the FastStream broker factory, topic creation and connection security."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from prometheus_client import Counter

from callback_shared.models import DeadLetter, Event
from callback_shared.settings import PlatformSettings


def topics(settings: PlatformSettings) -> list[str]:
    return [
        settings.topic_due_callbacks,
        settings.topic_routing_events,
        settings.topic_routing_commands,
        settings.topic_lifecycle_events,
        settings.topic_dead_letter,
    ]


#: Most bytes of one Kafka record batch (below the broker's default message.max.bytes): what
#: one :func:`publish_all` call sends to one partition travels as one batch up to this size.
MAX_BATCH_BYTES = 1_000_000


# --- connection security: the one place every Kafka client takes it from -----------------------


def kafka_ssl_context(settings: PlatformSettings) -> ssl.SSLContext | None:
    """The TLS context of ``SSL``/``SASL_SSL`` (own CA, optional client certificate; the
    broker's certificate and host name are always verified), else ``None``."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
        password=(
            settings.kafka_ssl_key_password.get_secret_value()
            if settings.kafka_ssl_key_password
            else None
        ),
    )
    return context


def kafka_client_options(settings: PlatformSettings) -> dict[str, Any]:
    """The security keyword arguments of any aiokafka client (producer, consumer, admin,
    connection): ``security_protocol``, ``ssl_context`` and the SASL mechanism and
    credentials."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password is not None else None,
        )
    return options


_SASL_SECURITY: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def broker_security(settings: PlatformSettings) -> BaseSecurity | None:
    """The same options as FastStream's ``security=`` object (it hands them to every producer
    and consumer of the broker)."""
    options = kafka_client_options(settings)
    protocol = options["security_protocol"]
    context = options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context)
    security = _SASL_SECURITY[options["sasl_mechanism"]]
    return security(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def make_admin_client(settings: PlatformSettings, client_id: str) -> AIOKafkaAdminClient:
    """An aiokafka admin client with the settings' servers and security."""
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        **kafka_client_options(settings),
    )


class KafkaAccessDenied(Exception):
    """Kafka answered but refused this client (wrong credentials, a broker certificate the CA
    does not vouch for, a mechanism or protocol the listener does not speak): a setting is
    wrong, retrying will not help. The message is one line and holds no secret."""


_AUTH_ERRORS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


def _denial(settings: PlatformSettings, server: str, exc: BaseException) -> str | None:
    """The one-line reason if ``exc`` (from connecting to ``server``) is not transient."""
    protocol = settings.kafka_security_protocol
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"Kafka {server}: TLS certificate not trusted ({exc.verify_message}); check "
            "KAFKA_SSL_CAFILE"
        )
    if isinstance(exc, ssl.SSLError) and str(exc.reason).startswith(("TLSV1_ALERT", "SSLV3_ALERT")):
        return (
            f"Kafka {server}: the broker refused the TLS handshake ({exc.reason}); check "
            "KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE and KAFKA_SECURITY_PROTOCOL"
        )
    if isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER":
        return (
            f"Kafka {server}: the listener does not speak TLS; check KAFKA_SECURITY_PROTOCOL "
            f"({protocol})"
        )
    if isinstance(exc, _AUTH_ERRORS):
        detail = " ".join(str(exc).split())[:200]
        return (
            f"Kafka {server}: SASL {settings.kafka_sasl_mechanism} authentication of user "
            f"{settings.kafka_sasl_username!r} failed ({type(exc).__name__}: {detail}); check "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)"
        )
    return None


async def check_kafka_access(settings: PlatformSettings, request_timeout_ms: int = 15_000) -> None:
    """Connect (TLS handshake, SASL authentication) to each bootstrap server in turn until one
    lets this client in. Raises :class:`KafkaAccessDenied` when one refuses it for good (see
    there), or the last connection error when none answers (transient: retry).

    aiokafka's own clients log such a refusal and report only "Unable to bootstrap"; this
    check tells the two apart before they start."""
    options = kafka_client_options(settings)
    last: BaseException | None = None
    for server in settings.kafka_bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(
                host, int(port), request_timeout_ms=request_timeout_ms, **options
            )
        except Exception as exc:  # OSError, TimeoutError, KafkaError, ssl.SSLError
            reason = _denial(settings, server, exc)
            if reason is None and exc.__cause__ is not None:
                reason = _denial(settings, server, exc.__cause__)
            if reason is not None:
                raise KafkaAccessDenied(reason) from None
            last = exc
            continue
        conn.close()
        return
    assert last is not None
    raise last


def make_broker(settings: PlatformSettings, client_id: str) -> KafkaBroker:
    """A FastStream broker: acks from all replicas, structured logs.

    Not an idempotent producer: aiokafka's never recovers once a batch is refused while a
    broker restarts (LeaderNotAvailable leaves a gap in its sequence numbers: every later send
    failed with ``OutOfOrderSequenceNumber``, for ever; seen in CI, reproduced by a test), and
    it never expires a batch, so an outage could not surface as an error. Without it a batch
    fails after ``request_timeout_ms`` and the caller's retry sends it again; a message
    written twice carries the same ``event_id`` (every consumer here de-duplicates), and
    :func:`publish_all` keeps a retry from putting a callback's later event before an earlier
    one."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        max_batch_size=MAX_BATCH_BYTES,
        request_timeout_ms=15_000,
        graceful_timeout=settings.shutdown_grace_seconds,
        logger=logging.getLogger(f"callback.{client_id}.broker"),
    )


async def ensure_topics(settings: PlatformSettings, client_id: str) -> None:
    """Create the platform's topics if missing (keyed by callback id; partitions configurable)."""
    admin = make_admin_client(settings, f"{client_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            for name in topics(settings)
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


JSON_HEADERS = {"content-type": "application/json"}

DEAD_LETTERS = Counter(
    "callback_dead_letters_total", "Messages parked on the dead-letter topic", ["source_topic"]
)
log = structlog.get_logger(__name__)


#: A message to publish: topic, JSON value, key.
Message = tuple[str, bytes, bytes | None]


def producer_of(broker: KafkaBroker) -> AIOKafkaProducer:
    """The aiokafka producer FastStream started for ``broker`` (same connection and settings:
    acks=all). FastStream does not expose it; a test checks this path still leads
    to it with the locked FastStream version."""
    state = getattr(broker.config.producer, "_producer", None)
    producer = getattr(state, "producer", None)
    if not isinstance(producer, AIOKafkaProducer):
        raise RuntimeError("the broker is not started, or FastStream moved its producer")
    return producer


_PARTITIONER = DefaultPartitioner()
_JSON_HEADER_BYTES = [(name, value.encode()) for name, value in JSON_HEADERS.items()]


async def send_keyed(
    broker: KafkaBroker, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> list[tuple[list[int], asyncio.Future[Any]]]:
    """Hand keyed messages (key, JSON value) to the producer in batches, one partition each,
    without waiting: for each batch, the positions in ``messages`` it holds and the future of
    its acknowledgement. The partition is the default partitioner's for the key (as for any
    Kafka client), the order within a partition the given one. A record batch is written
    whole or not at all. (FastStream's publish of one message costs about as much as the rest
    of its way to Kafka.)"""
    producer = producer_of(broker)
    partitions = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[int]] = {}
    for position, (key, _) in enumerate(messages):
        partition = _PARTITIONER(key, partitions, partitions)
        by_partition.setdefault(partition, []).append(position)
    sent: list[tuple[list[int], asyncio.Future[Any]]] = []
    for partition, positions in by_partition.items():
        batch, held = producer.create_batch(), []
        for position in positions:
            key, value = messages[position]
            if batch.append(key=key, value=value, timestamp=None, headers=_JSON_HEADER_BYTES):
                held.append(position)
                continue
            if not held:
                raise ValueError(f"a message of {len(value)} bytes does not fit in a batch")
            sent.append((held, await producer.send_batch(batch, topic, partition=partition)))
            batch, held = producer.create_batch(), [position]
            if not batch.append(key=key, value=value, timestamp=None, headers=_JSON_HEADER_BYTES):
                raise ValueError(f"a message of {len(value)} bytes does not fit in a batch")
        sent.append((held, await producer.send_batch(batch, topic, partition=partition)))
    return sent


async def publish_all(broker: KafkaBroker, messages: Iterable[Message]) -> None:
    """Publish messages without waiting for each acknowledgement in turn (awaiting each in turn
    measured ten times slower), then wait for all of them; raises the first failure.

    What the call sends to one partition goes as one record batch (up to
    :data:`MAX_BATCH_BYTES`), written whole or not at all. A failed call may have published
    some partitions' batches; callers retry with the same events (stable ids), so a retry can
    repeat events but never put a callback's later event before an earlier one."""
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for topic, value, key in messages:
        by_topic.setdefault(topic, []).append((key, value))
    pending: list[asyncio.Future[Any]] = []
    try:
        for topic, keyed in by_topic.items():
            pending += [acked for _, acked in await send_keyed(broker, topic, keyed)]
    finally:
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def event_messages(topic: str, events: Iterable[Event]) -> Iterator[Message]:
    """Contract events as messages to ``topic``, keyed by callback id."""
    return ((topic, event.model_dump_json().encode(), event.key) for event in events)


def raw_body(message: StreamMessage[Any]) -> Any:
    """A subscriber decoder that hands the handler the bytes as sent (a list of them for a batch
    subscriber): parsing, and parking what is malformed on the dead-letter topic, is the
    handler's job. FastStream's own decoder would fail on a malformed JSON body before the
    handler runs, and with NACK_ON_ERROR the message would come back for ever."""
    return message.body


def dead_letter(record: ConsumerRecord[Any, Any], reason: str) -> DeadLetter:
    """The dead letter of a consumed record that cannot be used, with the reason (logged and
    counted here; publish it with :func:`park`)."""
    key = record.key.decode(errors="replace") if record.key is not None else None
    DEAD_LETTERS.labels(record.topic).inc()
    log.warning(
        "message parked on the dead-letter topic",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        reason=reason[:500],
    )
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        payload=(record.value or b"").decode(errors="replace"),
        reason=reason,
    )


async def park(broker: KafkaBroker, topic: str, letters: Sequence[DeadLetter]) -> None:
    """Publish dead letters to the dead-letter ``topic``, keyed as their messages were."""
    await publish_all(
        broker,
        (
            (topic, letter.model_dump_json().encode(), letter.key.encode() if letter.key else None)
            for letter in letters
        ),
    )
