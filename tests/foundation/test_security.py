"""Secure connection settings: validation (one line naming the setting), the one builder of
every Kafka client's security options, MongoDB TLS options, secrets never shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from callback_dev.infra import free_port
from callback_shared.kafka import (
    KafkaAccessDenied,
    _denial,
    broker_security,
    check_kafka_access,
    kafka_client_options,
    make_admin_client,
    make_broker,
)
from callback_shared.mongo import make_mongo_client
from callback_shared.settings import (
    CONFIG_ERROR_EXIT_CODE,
    PlatformSettings,
    describe_error,
    load_settings,
)
from cryptography.hazmat.primitives import serialization
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from tests.foundation.certs import issue_server_cert, make_ca

SECRET = "s3cr3t-value-never-shown"
BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "MONGODB_URL": "mongodb://127.0.0.1:27017"}
SECURITY_NAMES = [
    name.upper()
    for name in PlatformSettings.model_fields
    if name.startswith(("kafka_s", "mongodb_tls"))
]


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    ca_key, ca_cert = make_ca("unit CA")
    key, cert = issue_server_cert(ca_key, ca_cert)
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
    }
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> PlatformSettings:
    for name in [*SECURITY_NAMES, *BASE]:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**BASE, **env}.items():
        monkeypatch.setenv(name, value)
    return PlatformSettings()


def error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ValidationError) as raised:
        load(monkeypatch, **env)
    message = describe_error(raised.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def test_default_is_plaintext_without_options(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(settings) is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL:"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM:"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": SECRET},
            "KAFKA_SASL_USERNAME: required with SASL_SSL",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "alice"},
            "KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE: required with SASL_SSL",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "PLAIN",
                "KAFKA_SASL_USERNAME": "alice",
                "KAFKA_SASL_PASSWORD": SECRET,
            },
            "KAFKA_SASL_MECHANISM: PLAIN over SASL_PLAINTEXT",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE: Path does not point to a file",
        ),
        ({"KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "KAFKA_SASL_PASSWORD_FILE:"),
        ({"MONGODB_TLS_CA_FILE": "/nonexistent/ca.pem"}, "MONGODB_TLS_CA_FILE:"),
        (
            {"MONGODB_TLS_CERTIFICATE_KEY_FILE": "/nonexistent/me.pem"},
            "MONGODB_TLS_CERTIFICATE_KEY_FILE:",
        ),
    ],
)
def test_bad_security_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    assert named in error(monkeypatch, **env)


def test_tls_files_need_a_tls_protocol(
    monkeypatch: pytest.MonkeyPatch, pem_files: dict[str, Path]
) -> None:
    message = error(monkeypatch, KAFKA_SSL_CAFILE=str(pem_files["ca"]))
    assert "KAFKA_SSL_CAFILE: needs KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL" in message
    message = error(
        monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_KEYFILE=str(pem_files["key"])
    )
    assert "KAFKA_SSL_KEYFILE: needs KAFKA_SSL_CERTFILE" in message


def test_empty_password_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    message = error(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_USERNAME="alice",
        KAFKA_SASL_PASSWORD_FILE=str(empty),
    )
    assert "KAFKA_SASL_PASSWORD_FILE: the file is empty" in message


def test_load_settings_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in SECURITY_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**BASE, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load_settings(PlatformSettings)
    assert exited.value.code == CONFIG_ERROR_EXIT_CODE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "KAFKA_SASL_USERNAME" in err


def test_password_file_is_read_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    settings = load(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_USERNAME="alice",
        KAFKA_SASL_PASSWORD="from-the-environment",
        KAFKA_SASL_PASSWORD_FILE=str(secret_file),
        KAFKA_SSL_CAFILE=str(pem_files["ca"]),
    )
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRET  # the file wins
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in shown
    # a copy (admin-api re-validates its settings this way) reads the same secret
    again = PlatformSettings.model_validate(settings.model_dump())
    assert again.kafka_sasl_password == settings.kafka_sasl_password


@pytest.mark.parametrize(
    ("mechanism", "security_type"),
    [("SCRAM-SHA-512", SASLScram512), ("SCRAM-SHA-256", SASLScram256), ("PLAIN", SASLPlaintext)],
)
async def test_sasl_ssl_options_reach_every_client(
    monkeypatch: pytest.MonkeyPatch,
    pem_files: dict[str, Path],
    mechanism: str,
    security_type: type[BaseSecurity],
) -> None:
    settings = load(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="alice",
        KAFKA_SASL_PASSWORD=SECRET,
        KAFKA_SSL_CAFILE=str(pem_files["ca"]),
        KAFKA_SSL_CERTFILE=str(pem_files["cert"]),
        KAFKA_SSL_KEYFILE=str(pem_files["key"]),
    )
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("alice", SECRET)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # only the own CA

    security = broker_security(settings)
    assert type(security) is security_type
    assert security is not None
    assert security.use_ssl and security.ssl_context is not None
    # FastStream hands these to each producer and consumer it creates
    broker = make_broker(settings, "unit")
    connection = broker._connection_kwargs
    assert connection["security_protocol"] == "SASL_SSL"
    assert connection["sasl_mechanism"] == mechanism
    assert connection["sasl_plain_password"] == SECRET

    admin = make_admin_client(settings, "unit-admin")
    assert admin._client._security_protocol == "SASL_SSL"
    assert admin._client._sasl_mechanism == mechanism
    await admin.close()


def test_ssl_without_sasl(monkeypatch: pytest.MonkeyPatch, pem_files: dict[str, Path]) -> None:
    settings = load(
        monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(pem_files["ca"])
    )
    options = kafka_client_options(settings)
    assert set(options) == {"security_protocol", "ssl_context"}
    security = broker_security(settings)
    assert type(security) is BaseSecurity and security.use_ssl


def test_mongodb_tls_files_reach_the_client(
    monkeypatch: pytest.MonkeyPatch, pem_files: dict[str, Path], tmp_path: Path
) -> None:
    both = tmp_path / "client-with-key.pem"
    both.write_bytes(pem_files["cert"].read_bytes() + pem_files["key"].read_bytes())
    settings = load(
        monkeypatch,
        MONGODB_TLS_CA_FILE=str(pem_files["ca"]),
        MONGODB_TLS_CERTIFICATE_KEY_FILE=str(both),
    )
    client = make_mongo_client(settings)
    assert client.options.pool_options._ssl_context is not None  # TLS on
    plain = make_mongo_client(load(monkeypatch))
    assert plain.options.pool_options._ssl_context is None


async def test_unreachable_kafka_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens: not a refusal (the service keeps retrying)."""
    settings = load(monkeypatch, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    with pytest.raises(Exception) as raised:
        await check_kafka_access(settings, request_timeout_ms=2000)
    assert not isinstance(raised.value, KafkaAccessDenied)


def test_which_errors_are_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    assert "not trusted" in (_denial(settings, "h:1", verify) or "")
    assert _denial(settings, "h:1", ConnectionRefusedError(111, "refused")) is None
    assert _denial(settings, "h:1", TimeoutError()) is None


def test_scram_without_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_USERNAME="alice",
        KAFKA_SASL_PASSWORD=SECRET,
    )
    options = kafka_client_options(settings)
    assert "ssl_context" not in options
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    security = broker_security(settings)
    assert type(security) is SASLScram512 and not security.use_ssl


def test_unusable_pem_files_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    message = error(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(junk))
    assert "KAFKA_SSL_CAFILE: no usable PEM certificate" in message
    message = error(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(pem_files["ca"]),
        KAFKA_SSL_CERTFILE=str(pem_files["cert"]),
        KAFKA_SSL_KEYFILE=str(junk),
    )
    assert "KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: no usable PEM" in message


def test_an_encrypted_client_key_with_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    ca_key, ca_cert = make_ca("unit CA")
    key, cert = issue_server_cert(ca_key, ca_cert)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(SECRET.encode()),
        )
    )
    cert_file = tmp_path / "locked.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls = {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(pem_files["ca"]),
        "KAFKA_SSL_CERTFILE": str(cert_file),
        "KAFKA_SSL_KEYFILE": str(locked),
    }
    message = error(monkeypatch, **tls, KAFKA_SSL_KEY_PASSWORD="wrong-" + SECRET)
    assert "KAFKA_SSL_KEY_PASSWORD" in message
    password_file = tmp_path / "key-password"
    password_file.write_text(SECRET + "\n")
    settings = load(monkeypatch, **tls, KAFKA_SSL_KEY_PASSWORD_FILE=str(password_file))
    assert settings.kafka_ssl_key_password is not None
    assert settings.kafka_ssl_key_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert kafka_client_options(settings)["ssl_context"] is not None
