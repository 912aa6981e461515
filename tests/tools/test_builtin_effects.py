"""send_email, publish_post and post_webhook: real SMTP and HTTP servers, and the engine's approval gate."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from intelligent_orchestrator.domain.models import ExecutionPlan, StepStatus, TaskStatus
from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError
from intelligent_orchestrator.orchestrator import Orchestrator
from intelligent_orchestrator.settings import (
    PublishChannel,
    Settings,
    SmtpSettings,
    ToolSettings,
    WebhookSettings,
)
from intelligent_orchestrator.tools.builtin.effects import post_webhook, publish_post, send_email
from intelligent_orchestrator.tools.registry import ToolRegistry
from intelligent_orchestrator.tools.spec import Tool, ToolContext

KEY = "task-1:step-1"
SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cr3t-Pa55word!"
WEBHOOK_SECRET = "whsec-Very-Secret-123"


# Helpers ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def expected_signature(secret: str, request_headers: Any, body: bytes) -> str:
    ts = request_headers["x-orchestrator-timestamp"]
    return (
        "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


def configured(ctx: ToolContext, *, key: str | None = None, **tools: Any) -> ToolContext:
    return dataclasses.replace(
        ctx, config=ToolSettings(**tools), idempotency_key=key or ctx.idempotency_key
    )


def with_transport(
    ctx: ToolContext, handler: Callable[[httpx.Request], httpx.Response]
) -> ToolContext:
    return dataclasses.replace(ctx, http_transport=httpx.MockTransport(handler))


def ledger_lines(home: Path) -> list[dict[str, Any]]:
    path = home / "outbox" / "sent.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ectx(tmp_path: Path, home: Path) -> ToolContext:
    ws = home / "workspace"
    ws.mkdir(parents=True)
    return ToolContext(
        task_id="task-1",
        step_id="step-1",
        workspace=ws,
        idempotency_key=KEY,
        home=home,
        http_timeout_seconds=5.0,
    )


# An SMTP server that collects what it receives ------------------------------------------------------
@dataclasses.dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated: bool
    tls: bool


@dataclasses.dataclass
class Collector:
    received: list[Received] = dataclasses.field(default_factory=list)
    refuse: dict[str, str] = dataclasses.field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(envelope.content, policy=default_policy),  # type: ignore[arg-type]
                authenticated=bool(session.authenticated),
                tls=session.ssl is not None,
            )
        )
        return "250 Message accepted for delivery"


@dataclasses.dataclass
class SmtpServer:
    port: int
    handler: Collector

    def settings(self, **kw: Any) -> SmtpSettings:
        return SmtpSettings(
            host="127.0.0.1",
            port=self.port,
            sender="Orchestrator <bot@example.com>",
            timeout_seconds=5,
            **kw,
        )


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def start_smtp(**smtp: Any) -> Iterator[SmtpServer]:
    handler = Collector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp)
    controller.start()
    try:
        yield SmtpServer(port=port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from start_smtp()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_smtp_server(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SmtpServer]:
    """STARTTLS required, AUTH required and offered only over TLS; the client trusts its certificate."""
    cert_file, key_file = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    # The tool uses the default trust store, which honours SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    yield from start_smtp(
        tls_context=server_ctx,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticate,
    )


# send_email -------------------------------------------------------------------------------------
async def test_email_text_and_html_with_cc_and_bcc(
    ectx: ToolContext, smtp_server: SmtpServer
) -> None:
    ctx = configured(ectx, smtp=smtp_server.settings())
    out = await send_email.invoke(
        {
            "to": ["Ana Lima <ana@example.com>"],
            "cc": ["bo@example.com"],
            "bcc": ["audit@example.org"],
            "reply_to": "sales@example.com",
            "subject": "Frühlingsangebot — spring sale",
            "body": "Héllo team,\nthe sale starts Monday.\n",
            "html_body": "<p>Héllo <b>team</b></p>",
        },
        ctx,
    )
    jsonschema.validate(out, send_email.spec.output_schema)
    [got] = smtp_server.handler.received
    assert got.mail_from == "bot@example.com"
    assert got.rcpt_tos == ["ana@example.com", "bo@example.com", "audit@example.org"]
    msg = got.message
    assert msg["Message-ID"] == f"<{sha(KEY)[:32]}@orchestrator>"
    assert msg["To"] == "Ana Lima <ana@example.com>"
    assert msg["Cc"] == "bo@example.com"
    assert msg["Bcc"] is None
    assert "audit@example.org" not in msg.as_string()
    assert msg["Reply-To"] == "sales@example.com"
    assert msg["Subject"] == "Frühlingsangebot — spring sale"
    assert msg.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}  # type: ignore[attr-defined]
    assert parts["text/plain"].replace("\r\n", "\n") == "Héllo team,\nthe sale starts Monday.\n"
    assert "<p>Héllo <b>team</b></p>" in parts["text/html"]
    assert out["message_id"] == msg["Message-ID"]
    assert out["accepted"] == ["ana@example.com", "bo@example.com", "audit@example.org"]
    assert out["refused"] == []
    assert out["server_reply"].startswith("250 ")
    assert out["replayed"] is False


async def test_plain_email_is_single_part(ectx: ToolContext, smtp_server: SmtpServer) -> None:
    ctx = configured(ectx, smtp=smtp_server.settings())
    await send_email.invoke({"to": ["ana@example.com"], "subject": "Hi", "body": "plain"}, ctx)
    [got] = smtp_server.handler.received
    assert got.message.get_content_type() == "text/plain"
    assert got.message.get_content().strip() == "plain"  # type: ignore[attr-defined]


async def test_same_key_sends_once_and_another_key_sends_again(
    ectx: ToolContext, smtp_server: SmtpServer, home: Path
) -> None:
    ctx = configured(ectx, smtp=smtp_server.settings())
    args = {"to": ["ana@example.com"], "subject": "Launch", "body": "Go."}
    first = await send_email.invoke(args, ctx)
    again = await send_email.invoke(args, ctx)  # the engine re-runs a step cut off mid-call
    assert len(smtp_server.handler.received) == 1
    assert again["replayed"] is True
    assert {k: v for k, v in again.items() if k != "replayed"} == {
        k: v for k, v in first.items() if k != "replayed"
    }
    assert [(e["tool"], e["key"]) for e in ledger_lines(home)] == [("send_email", KEY)]

    other = await send_email.invoke(args, dataclasses.replace(ctx, idempotency_key="task-1:step-2"))
    assert len(smtp_server.handler.received) == 2
    assert (
        other["message_id"] == f"<{sha('task-1:step-2')[:32]}@orchestrator>" != first["message_id"]
    )


async def test_starttls_and_login(
    ectx: ToolContext, tls_smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = configured(
        ectx,
        smtp=tls_smtp_server.settings(
            starttls=True, username=SMTP_USER, password=SecretStr(SMTP_PASSWORD)
        ),
    )
    out = await send_email.invoke(
        {"to": ["ana@example.com"], "subject": "Secure", "body": "x"}, ctx
    )
    [got] = tls_smtp_server.handler.received
    assert got.tls
    assert got.authenticated
    assert SMTP_PASSWORD not in json.dumps(out)
    assert SMTP_PASSWORD not in caplog.text
    assert all(SMTP_PASSWORD not in repr(r.__dict__) for r in caplog.records)


async def test_wrong_password_is_a_clear_permanent_error_without_the_password(
    ectx: ToolContext, tls_smtp_server: SmtpServer, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Pa55word-XYZ"
    ctx = configured(
        ectx,
        smtp=tls_smtp_server.settings(starttls=True, username=SMTP_USER, password=SecretStr(wrong)),
    )
    with pytest.raises(ToolExecutionError, match="login as 'mailer' failed: 535") as info:
        await send_email.invoke({"to": ["ana@example.com"], "subject": "s", "body": "b"}, ctx)
    assert info.value.transient is False
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert wrong not in str(info.value)
    assert wrong not in caplog.text
    assert tls_smtp_server.handler.received == []
    assert ledger_lines(home) == []


async def test_auth_without_tls_names_the_setting(
    ectx: ToolContext, tls_smtp_server: SmtpServer
) -> None:
    ctx = configured(
        ectx, smtp=tls_smtp_server.settings(username=SMTP_USER, password=SecretStr(SMTP_PASSWORD))
    )
    with pytest.raises(ToolExecutionError, match=r"tools\.smtp\.starttls") as info:
        await send_email.invoke({"to": ["ana@example.com"], "subject": "s", "body": "b"}, ctx)
    assert info.value.transient is False
    assert SMTP_PASSWORD not in str(info.value)


async def test_connection_refused_is_transient(ectx: ToolContext, home: Path) -> None:
    ctx = configured(ectx, smtp=SmtpSettings(host="127.0.0.1", port=free_port(), timeout_seconds=2))
    with pytest.raises(ToolExecutionError, match="refused the connection") as info:
        await send_email.invoke({"to": ["ana@example.com"], "subject": "s", "body": "b"}, ctx)
    assert info.value.transient is True
    assert ledger_lines(home) == []


@pytest.mark.parametrize(
    ("reply", "transient"),
    [("554 5.7.1 Message rejected as spam", False), ("451 4.3.0 Try again later", True)],
)
async def test_smtp_reply_codes_decide_transience(
    ectx: ToolContext, smtp_server: SmtpServer, reply: str, transient: bool
) -> None:
    smtp_server.handler.data_reply = reply
    ctx = configured(ectx, smtp=smtp_server.settings())
    with pytest.raises(ToolExecutionError, match=reply.split()[0]) as info:
        await send_email.invoke({"to": ["ana@example.com"], "subject": "s", "body": "b"}, ctx)
    assert info.value.transient is transient


async def test_refused_recipients_are_reported(ectx: ToolContext, smtp_server: SmtpServer) -> None:
    smtp_server.handler.refuse["ghost@example.com"] = "550 5.1.1 No such user"
    ctx = configured(ectx, smtp=smtp_server.settings())
    out = await send_email.invoke(
        {"to": ["ana@example.com", "ghost@example.com"], "subject": "s", "body": "b"}, ctx
    )
    assert out["accepted"] == ["ana@example.com"]
    assert out["refused"] == [
        {"address": "ghost@example.com", "code": 550, "message": "5.1.1 No such user"}
    ]
    assert smtp_server.handler.received[0].rcpt_tos == ["ana@example.com"]

    only_ghost = dataclasses.replace(ctx, idempotency_key="task-1:other")
    with pytest.raises(ToolExecutionError, match=r"refused every recipient.*550") as info:
        await send_email.invoke(
            {"to": ["ghost@example.com"], "subject": "s", "body": "b"}, only_ghost
        )
    assert info.value.transient is False


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"to": ["not-an-address"], "subject": "s", "body": "b"}, "'to.0'"),
        ({"to": [], "subject": "s", "body": "b"}, "'to'"),
        ({"to": ["a@example.com\r\nBcc: x@evil.test"], "subject": "s", "body": "b"}, "'to.0'"),
        ({"to": ["a@example.com"], "subject": "Hi\r\nBcc: x@evil.test", "body": "b"}, "'subject'"),
        (
            {"to": ["a@example.com"], "cc": ["b@@example.com"], "subject": "s", "body": "b"},
            "'cc.0'",
        ),
    ],
)
async def test_bad_email_input_names_the_field(
    ectx: ToolContext, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(ToolInputError, match=field):
        await send_email.invoke(args, ectx)


# publish_post -------------------------------------------------------------------------------------
def front_matter(path: Path) -> tuple[dict[str, Any], str]:
    _, header, body = path.read_text().split("---\n", 2)
    return yaml.safe_load(header), body


async def test_file_adapter_writes_front_matter_once_per_key(ectx: ToolContext, home: Path) -> None:
    args = {
        "channel": "blog",
        "title": "Spring Sale: 20% off!",
        "body": "# Spring sale\n\nEverything is *cheaper*.",
        "metadata": {"tags": ["sale", "spring"], "author": "Ana"},
    }
    out = await publish_post.invoke(args, ectx)
    jsonschema.validate(out, publish_post.spec.output_schema)
    path = Path(out["location"])
    assert path == home / "published" / "blog" / f"spring-sale-20-off-{sha(KEY)[:12]}.md"
    assert out["adapter"] == "file"
    assert out["channel"] == "blog"
    assert out["id"] == path.stem
    meta, body = front_matter(path)
    assert meta["title"] == "Spring Sale: 20% off!"
    assert meta["channel"] == "blog"
    assert meta["idempotency_key"] == KEY
    assert meta["tags"] == ["sale", "spring"]
    assert meta["author"] == "Ana"
    assert dt.datetime.fromisoformat(meta["published_at"]) == dt.datetime.fromisoformat(
        out["published_at"]
    )
    assert body == "\n# Spring sale\n\nEverything is *cheaper*.\n"

    again = await publish_post.invoke({**args, "title": "Renamed on the re-run"}, ectx)
    assert again["location"] == out["location"]
    assert again["replayed"] is True
    assert again["published_at"] == out["published_at"]
    assert len(list((home / "published" / "blog").iterdir())) == 1

    other = await publish_post.invoke(
        args, dataclasses.replace(ectx, idempotency_key="task-2:step-1")
    )
    assert other["location"] != out["location"]
    assert len(list((home / "published" / "blog").iterdir())) == 2


async def test_file_adapter_refuses_reserved_metadata(ectx: ToolContext) -> None:
    with pytest.raises(ToolInputError, match="reserved"):
        await publish_post.invoke(
            {"channel": "blog", "title": "t", "body": "b", "metadata": {"title": "x"}}, ectx
        )
    with pytest.raises(ToolInputError, match="'channel'"):
        await publish_post.invoke({"channel": "../etc", "title": "t", "body": "b"}, ectx)


async def test_webhook_adapter_signs_and_posts_once(ectx: ToolContext) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    channel = PublishChannel(
        adapter="webhook",
        url="https://social.example.test/hooks/li?token=abc",
        secret=SecretStr("li-secret"),
    )
    ctx = with_transport(configured(ectx, publish_channels={"linkedin": channel}), handler)
    args = {
        "channel": "linkedin",
        "title": "Spring teaser",
        "body": "Soon.",
        "metadata": {"tags": ["sale"]},
    }
    out = await publish_post.invoke(args, ctx)
    [req] = seen
    assert req.headers["idempotency-key"] == KEY
    assert req.headers["x-orchestrator-signature"] == expected_signature(
        "li-secret", req.headers, req.content
    )
    sent = json.loads(req.content)
    assert sent["title"] == "Spring teaser"
    assert sent["body"] == "Soon."
    assert sent["channel"] == "linkedin"
    assert sent["metadata"] == {"tags": ["sale"]}
    assert sent["idempotency_key"] == KEY
    assert out["adapter"] == "webhook"
    assert out["status_code"] == 201
    assert out["attempts"] == 1
    assert (
        out["location"] == "https://social.example.test/hooks/li"
    )  # no query: it may hold a token
    assert out["id"] == sent["id"] == f"spring-teaser-{sha(KEY)[:12]}"
    again = await publish_post.invoke(args, ctx)
    assert len(seen) == 1
    assert again["replayed"] is True


async def test_webhook_adapter_without_url_is_a_configuration_error(ectx: ToolContext) -> None:
    ctx = configured(ectx, publish_channels={"newsletter": PublishChannel(adapter="webhook")})
    with pytest.raises(
        ToolExecutionError, match=r"tools\.publish_channels\.newsletter\.url"
    ) as info:
        await publish_post.invoke({"channel": "newsletter", "title": "t", "body": "b"}, ctx)
    assert info.value.transient is False


# post_webhook -------------------------------------------------------------------------------------
def webhook_ctx(
    ectx: ToolContext, handler: Callable[[httpx.Request], httpx.Response], **webhook: Any
) -> ToolContext:
    settings = WebhookSettings(secret=SecretStr(WEBHOOK_SECRET), **webhook)
    return with_transport(configured(ectx, webhook=settings), handler)


async def test_webhook_is_signed_and_carries_the_idempotency_key(
    ectx: ToolContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"received": True})

    ctx = webhook_ctx(ectx, handler)
    payload = {"event": "post.published", "title": "Spring sale", "n": 3}
    out = await post_webhook.invoke(
        {
            "url": "https://hooks.example.test/in",
            "payload": payload,
            "headers": {"X-Team": "growth"},
        },
        ctx,
    )
    [req] = seen
    assert req.method == "POST"
    assert json.loads(req.content) == payload
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == KEY
    assert req.headers["x-team"] == "growth"
    assert req.headers["x-orchestrator-signature"] == expected_signature(
        WEBHOOK_SECRET, req.headers, req.content
    )
    assert (
        abs(int(req.headers["x-orchestrator-timestamp"]) - dt.datetime.now(dt.UTC).timestamp()) < 60
    )
    jsonschema.validate(out, post_webhook.spec.output_schema)
    assert out["status_code"] == 200
    assert out["attempts"] == 1
    assert json.loads(out["response_excerpt"]) == {"received": True}
    assert out["idempotency_key"] == KEY
    assert WEBHOOK_SECRET not in json.dumps(out)
    assert WEBHOOK_SECRET not in caplog.text

    again = await post_webhook.invoke(
        {"url": "https://hooks.example.test/in", "payload": payload}, ctx
    )
    assert len(seen) == 1
    assert again["replayed"] is True


async def test_webhook_without_secret_is_unsigned(ectx: ToolContext) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    ctx = with_transport(ectx, handler)
    out = await post_webhook.invoke({"url": "http://hooks.example.test/", "payload": {}}, ctx)
    assert out["status_code"] == 204
    assert "x-orchestrator-signature" not in seen[0].headers
    assert seen[0].headers["idempotency-key"] == KEY


async def test_webhook_retries_503_with_the_same_key(ectx: ToolContext) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) < 3:
            return httpx.Response(503, text="busy", headers={"Retry-After": "0"})
        return httpx.Response(202, text="queued")

    out = await post_webhook.invoke(
        {"url": "https://hooks.example.test/in", "payload": {"a": 1}},
        webhook_ctx(ectx, handler, max_attempts=3),
    )
    assert out["attempts"] == 3
    assert out["status_code"] == 202
    assert out["response_excerpt"] == "queued"
    assert [r.headers["idempotency-key"] for r in seen] == [KEY] * 3
    assert len({r.content for r in seen}) == 1
    for r in seen:
        assert r.headers["x-orchestrator-signature"] == expected_signature(
            WEBHOOK_SECRET, r.headers, r.content
        )


async def test_webhook_gives_up_transiently_after_max_attempts(
    ectx: ToolContext, home: Path
) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(429, text="slow down", headers={"Retry-After": "0"})

    with pytest.raises(
        ToolExecutionError, match=r"after 2 attempt\(s\): answered 429 Too Many Requests: slow down"
    ) as info:
        await post_webhook.invoke(
            {"url": "https://hooks.example.test/in", "payload": {}},
            webhook_ctx(ectx, handler, max_attempts=2),
        )
    assert info.value.transient is True
    assert len(calls) == 2
    assert ledger_lines(home) == []


async def test_webhook_does_not_retry_400_and_hides_the_secret(ectx: ToolContext) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # a badly behaved server that echoes a secret back must not leak it into the error
        return httpx.Response(
            400, text=f"bad field 'title' (debug: key={WEBHOOK_SECRET})" + "x" * 2000
        )

    with pytest.raises(
        ToolExecutionError, match="answered 400 Bad Request: bad field 'title'"
    ) as info:
        await post_webhook.invoke(
            {"url": "https://hooks.example.test/in?sig=1", "payload": {}},
            webhook_ctx(ectx, handler),
        )
    assert info.value.transient is False
    assert len(seen) == 1
    assert WEBHOOK_SECRET not in str(info.value)
    assert "sig=1" not in str(info.value)
    assert len(str(info.value)) < 800


async def test_webhook_refuses_to_override_its_headers(ectx: ToolContext) -> None:
    for name in ("Idempotency-Key", "x-orchestrator-signature", "X-Orchestrator-Timestamp"):
        with pytest.raises(ToolInputError, match="set by the tool"):
            await post_webhook.invoke(
                {"url": "https://h.test/", "payload": {}, "headers": {name: "x"}}, ectx
            )
    with pytest.raises(ToolInputError, match="http"):
        await post_webhook.invoke({"url": "ftp://h.test/", "payload": {}}, ectx)


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            reply = b'{"status":"accepted"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/orchestrator", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_webhook_to_a_real_http_server(
    ectx: ToolContext, http_server: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = http_server
    ctx = configured(
        ectx, webhook=WebhookSettings(secret=SecretStr(WEBHOOK_SECRET), timeout_seconds=5)
    )
    out = await post_webhook.invoke(
        {"url": url, "payload": {"event": "ping", "text": "héllo"}}, ctx
    )
    [(headers, body)] = received
    assert json.loads(body) == {"event": "ping", "text": "héllo"}
    assert headers["idempotency-key"] == KEY
    assert headers["x-orchestrator-signature"] == expected_signature(WEBHOOK_SECRET, headers, body)
    assert out["status_code"] == 200
    assert out["response_excerpt"] == '{"status":"accepted"}'


# Through the engine -------------------------------------------------------------------------------
def test_all_three_are_side_effects_that_need_approval() -> None:
    tools: dict[str, Tool] = {t.tool_id: t for t in (send_email, publish_post, post_webhook)}
    assert {k: t.spec.category for k, t in tools.items()} == {
        "send_email": "communication",
        "publish_post": "publishing",
        "post_webhook": "network",
    }
    for t in tools.values():
        assert t.spec.side_effects is True
        assert t.needs_approval({}) is True
        assert 0 < t.spec.timeout_seconds <= 120


@pytest.fixture
async def hooked_orch(
    settings: Settings, registry: ToolRegistry
) -> AsyncIterator[tuple[Orchestrator, list[httpx.Request]]]:
    """Like the ``orch`` fixture, with post_webhook registered and an httpx.MockTransport."""
    posts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(200, json={"ok": True})

    if "post_webhook" not in {s.tool_id for s in registry.specs()}:
        registry.register(post_webhook)
    settings.tools.webhook = WebhookSettings(secret=SecretStr(WEBHOOK_SECRET))
    o = Orchestrator(settings, registry=registry, http_transport=httpx.MockTransport(handler))
    await o.start_engine(kind="test", listen=False)
    try:
        yield o, posts
    finally:
        await o.close()


async def test_engine_parks_the_webhook_for_approval_then_posts_once(
    hooked_orch: tuple[Orchestrator, list[httpx.Request]],
) -> None:
    orch, posts = hooked_orch
    plan = ExecutionPlan.model_validate(
        {
            "name": "notify",
            "steps": [
                {
                    "id": "notify",
                    "tool": "post_webhook",
                    "inputs": {
                        "url": "https://hooks.example.test/in",
                        "payload": {"event": "sale"},
                    },
                }
            ],
        }
    )
    task = await orch.submit(plan)
    parked = await orch.wait(task.task_id, timeout=30)
    assert parked.task.status is TaskStatus.AWAITING_APPROVAL
    await asyncio.sleep(0.2)
    assert posts == []

    await orch.approve(task.task_id, decided_by="ana")
    done = await orch.wait(task.task_id, timeout=30)
    assert done.task.status is TaskStatus.SUCCEEDED, done.task.error
    [req] = posts
    assert req.headers["idempotency-key"] == f"{task.task_id}:notify"
    assert req.headers["x-orchestrator-signature"] == expected_signature(
        WEBHOOK_SECRET, req.headers, req.content
    )
    [step] = done.steps
    assert step.status is StepStatus.SUCCEEDED
    assert step.output["status_code"] == 200
    assert step.output["attempts"] == 1
