"""Side-effecting tools: ``send_email``, ``publish_post`` and ``post_webhook``.

All three change something outside the orchestrator, so they always wait for approval. The
engine records a receipt once a call returns; a call cut off before that is made AGAIN with the
same idempotency key (``ctx.idempotency_key``, ``"<task>:<step>"``). Each tool makes such a
repeat harmless in two ways:

- every delivery is written to a local ledger (``<home>/outbox/sent.jsonl``) before the tool
  returns; a call whose key is already there sends nothing and returns the stored receipt with
  ``replayed: true`` (the file adapter of ``publish_post`` needs no ledger: its file name is
  derived from the key, and an existing file is the receipt);
- the receiving side gets the key as well, to drop a delivery made just before a crash: a
  Message-ID derived from it (email), an ``Idempotency-Key`` header (webhooks).

Webhook requests are signed: ``X-Orchestrator-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>">`` with ``X-Orchestrator-Timestamp: <unix seconds>``. Secrets (the SMTP
password, webhook keys) never appear in outputs, error messages or log records.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import hmac
import json
import logging
import os
import re
import smtplib
import ssl
import tempfile
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import IO, Annotated, Any, Literal, TypeVar, assert_never

import httpx
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from intelligent_orchestrator.errors import ToolExecutionError, ToolInputError
from intelligent_orchestrator.settings import PublishChannel, SmtpSettings, WebhookSettings
from intelligent_orchestrator.tools.spec import ToolContext, tool

try:  # POSIX: the ledger is locked between processes sharing one home
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LEDGER_PATH = Path("outbox") / "sent.jsonl"
"""Where, under the orchestrator home, deliveries are recorded (one JSON object a line)."""
PUBLISHED_DIR = "published"
"""Where, under the orchestrator home, the file adapter of ``publish_post`` writes posts."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
TIMESTAMP_HEADER = "X-Orchestrator-Timestamp"
SIGNATURE_HEADER = "X-Orchestrator-Signature"

_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        IDEMPOTENCY_HEADER,
        TIMESTAMP_HEADER,
        SIGNATURE_HEADER,
        "Content-Type",
        "Content-Length",
        "Transfer-Encoding",
        "Host",
    )
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LEDGER_SCHEMA_VERSION = 1
_MAX_RECIPIENTS = 100
_EXCERPT_CHARS = 500
_READ_CAP_BYTES = 64 * 1024
_BACKOFF_SECONDS = 0.25
_BACKOFF_MAX_SECONDS = 8.0
_MAX_RETRY_AFTER_SECONDS = 30.0
_REDACTED = "***"


# Shared: home, ledger, secrets --------------------------------------------------------------
def _home(ctx: ToolContext) -> Path:
    """The orchestrator home; without one, the workspace's parent (home/workspace by default)."""
    return ctx.home if ctx.home is not None else ctx.workspace.parent


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def _secret_values(*secrets: SecretStr | None) -> list[str]:
    return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]


def _lock(fh: IO[bytes], *, shared: bool) -> None:
    if fcntl is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


@dataclass(frozen=True, slots=True)
class SentLedger:
    """Append-only record of deliveries, keyed by (tool, idempotency key)."""

    path: Path

    @classmethod
    def for_context(cls, ctx: ToolContext) -> SentLedger:
        return cls(_home(ctx) / LEDGER_PATH)

    def find(self, tool_id: str, key: str) -> dict[str, Any] | None:
        """The receipt recorded for ``key``, if any."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return None
        found: dict[str, Any] | None = None
        with fh:
            _lock(fh, shared=True)
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut short by a crash
                    continue
                if (
                    isinstance(entry, dict)
                    and entry.get("tool") == tool_id
                    and entry.get("key") == key
                    and isinstance(entry.get("receipt"), dict)
                ):
                    found = entry["receipt"]
        return found

    def record(self, tool_id: str, key: str, receipt: Mapping[str, Any]) -> None:
        """Append one entry and sync it to disk."""
        entry = {
            "schema_version": _LEDGER_SCHEMA_VERSION,
            "tool": tool_id,
            "key": key,
            "recorded_at": datetime.now(UTC).isoformat(),
            "receipt": dict(receipt),
        }
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab+") as fh:
            _lock(fh, shared=False)
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # the previous writer died mid-line
                    line = b"\n" + line
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def _record_quietly(ledger: SentLedger, tool_id: str, key: str, receipt: BaseModel) -> None:
    """Record a delivery; failing to is logged, never raised (the delivery did happen)."""
    try:
        ledger.record(tool_id, key, receipt.model_dump(mode="json"))
    except OSError:
        logger.exception(
            "cannot record a delivery in the ledger", extra={"tool": tool_id, "key": key}
        )


_R = TypeVar("_R", bound=BaseModel)


async def _once(
    ctx: ToolContext, tool_id: str, receipt_type: type[_R], deliver: Callable[[], Awaitable[_R]]
) -> _R:
    """Run ``deliver`` unless the ledger already holds a receipt for this idempotency key."""
    ledger = SentLedger.for_context(ctx)
    key = ctx.idempotency_key
    stored = await asyncio.to_thread(ledger.find, tool_id, key)
    if stored is not None:
        logger.info(
            "already delivered: returning the stored receipt",
            extra={"task_id": ctx.task_id, "step_id": ctx.step_id, "tool": tool_id},
        )
        return receipt_type.model_validate({**stored, "replayed": True})
    receipt = await deliver()
    await asyncio.to_thread(_record_quietly, ledger, tool_id, key, receipt)
    return receipt


# Input validation -----------------------------------------------------------------------------
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_NAMED_ADDRESS = re.compile(r"^\s*(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)


def _check_address(value: str) -> str:
    """Accept ``user@example.com`` or ``Name <user@example.com>``; return it normalised."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("an email address must not contain line breaks")
    named = _NAMED_ADDRESS.match(value)
    name, addr = (
        (named["name"].strip().strip('"'), named["addr"].strip()) if named else ("", value.strip())
    )
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{value!r} is not an email address (expected user@domain)")
    if not addr.isascii():
        raise ValueError(f"{value!r}: internationalised addresses are not supported")
    if (
        len(local) > 64
        or len(addr) > 254
        or not _LOCAL_PART.match(local)
        or not _DOMAIN.match(domain)
    ):
        raise ValueError(f"{value!r} is not a valid email address")
    return str(Address(display_name=name, addr_spec=addr)) if name else addr


def _addr_spec(value: str) -> str:
    named = _NAMED_ADDRESS.match(value)
    return named["addr"].strip() if named else value.strip()


def _single_line(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must be a single line (no line breaks)")
    return value


EmailAddress = Annotated[
    str,
    AfterValidator(_check_address),
    Field(max_length=320, description="'user@example.com' or 'Name <user@example.com>'."),
]
SingleLine = Annotated[str, AfterValidator(_single_line)]


# send_email ---------------------------------------------------------------------------------
class RefusedRecipient(BaseModel):
    """A recipient the SMTP server did not accept."""

    model_config = ConfigDict(frozen=True)

    address: str
    code: int = Field(description="SMTP reply code, e.g. 550.")
    message: str = Field(description="The server's reply text.")


class EmailReceipt(BaseModel):
    """What ``send_email`` returns."""

    model_config = ConfigDict(frozen=True)

    message_id: str = Field(description="Message-ID header, derived from the idempotency key.")
    accepted: list[str] = Field(description="Envelope recipients the server accepted.")
    refused: list[RefusedRecipient] = Field(description="Envelope recipients it refused.")
    server_reply: str = Field(description="The server's reply to the message data, e.g. '250 OK'.")
    sent_at: datetime
    replayed: bool = Field(
        default=False, description="True when an earlier call with this key already sent it."
    )


def message_id_for(key: str) -> str:
    """The Message-ID of the email sent under idempotency key ``key``: the same on every re-run."""
    return f"<{_key_digest(key)[:32]}@orchestrator>"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Mail:
    sender: str
    recipients: list[str]
    data: bytes
    message_id: str


@tool(
    "send_email",
    name="Send email",
    category="communication",
    estimated_cost=0.0,
    side_effects=True,
    timeout_seconds=120.0,
)
async def send_email(
    to: Annotated[
        list[EmailAddress],
        Field(min_length=1, max_length=_MAX_RECIPIENTS, description="Recipients (To header)."),
    ],
    subject: Annotated[
        SingleLine, Field(min_length=1, max_length=998, description="Subject line.")
    ],
    body: Annotated[str, Field(max_length=1_000_000, description="Plain-text body.")],
    html_body: Annotated[
        str | None,
        Field(
            max_length=2_000_000,
            description="Optional HTML body; the mail is then multipart/alternative (text + HTML).",
        ),
    ] = None,
    cc: Annotated[
        list[EmailAddress] | None,
        Field(max_length=_MAX_RECIPIENTS, description="Copy recipients (Cc header)."),
    ] = None,
    bcc: Annotated[
        list[EmailAddress] | None,
        Field(max_length=_MAX_RECIPIENTS, description="Blind copy recipients (envelope only)."),
    ] = None,
    reply_to: Annotated[
        EmailAddress | None, Field(description="Where replies should go (Reply-To header).")
    ] = None,
    *,
    ctx: ToolContext,
) -> EmailReceipt:
    """Send an email (plain text, optionally with an HTML alternative) through the configured SMTP server, once per idempotency key."""
    cfg = ctx.config.smtp
    envelope = _unique([_addr_spec(a) for a in (*to, *(cc or ()), *(bcc or ()))])
    if len(envelope) > _MAX_RECIPIENTS:
        raise ToolInputError(
            f"{len(envelope)} recipients in to, cc and bcc together; at most {_MAX_RECIPIENTS}",
            tool_id="send_email",
        )
    message_id = message_id_for(ctx.idempotency_key)
    msg = EmailMessage(policy=_MAIL_POLICY)
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id
    msg.set_content(body)
    if html_body is not None:
        msg.add_alternative(html_body, subtype="html")
    mail = _Mail(
        sender=_addr_spec(cfg.sender),
        recipients=envelope,
        data=msg.as_bytes(policy=_MAIL_POLICY),
        message_id=message_id,
    )
    ledger = SentLedger.for_context(ctx)
    # Check, send and record in one thread: if the step times out while the server is still
    # answering, the send that completes is recorded all the same.
    receipt = await asyncio.to_thread(_send_once, ledger, ctx.idempotency_key, cfg, mail)
    logger.info(
        "email replayed from the ledger" if receipt.replayed else "email sent",
        extra={
            "task_id": ctx.task_id,
            "step_id": ctx.step_id,
            "message_id": message_id,
            "smtp_host": cfg.host,
            "accepted": len(receipt.accepted),
            "refused": len(receipt.refused),
        },
    )
    return receipt


# 7bit: non-ASCII text is quoted-printable/base64 encoded, so no server needs 8BITMIME.
_MAIL_POLICY = email.policy.SMTP.clone(cte_type="7bit")


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for a in addresses:
        if a.lower() not in seen:
            seen.add(a.lower())
            out.append(a)
    return out


def _send_once(ledger: SentLedger, key: str, cfg: SmtpSettings, mail: _Mail) -> EmailReceipt:
    stored = ledger.find("send_email", key)
    if stored is not None:
        return EmailReceipt.model_validate({**stored, "replayed": True})
    secrets = _secret_values(cfg.password)
    try:
        accepted, refused, reply = _smtp_deliver(cfg, mail)
    except ToolExecutionError as exc:
        raise ToolExecutionError(
            _scrub(str(exc), secrets), tool_id="send_email", transient=exc.transient
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        # ``from None``: the chained exception could carry what the server echoed back.
        raise _smtp_failure(exc, cfg, secrets) from None
    receipt = EmailReceipt(
        message_id=mail.message_id,
        accepted=accepted,
        refused=refused,
        server_reply=_scrub(reply, secrets),
        sent_at=datetime.now(UTC),
    )
    _record_quietly(ledger, "send_email", key, receipt)
    return receipt


def _smtp_deliver(cfg: SmtpSettings, mail: _Mail) -> tuple[list[str], list[RefusedRecipient], str]:
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if cfg.use_tls:
        client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=context)
    else:
        client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
    try:
        client.ehlo_or_helo_if_needed()
        if cfg.starttls and not cfg.use_tls:
            client.starttls(context=context)
            client.ehlo()
        if cfg.username:
            password = cfg.password.get_secret_value() if cfg.password is not None else ""
            try:
                client.login(cfg.username, password)
            except smtplib.SMTPNotSupportedError:
                raise ToolExecutionError(
                    f"SMTP server {cfg.host}:{cfg.port} does not offer AUTH on this connection; "
                    "most servers offer it only over TLS (set tools.smtp.starttls or tools.smtp.use_tls)",
                    tool_id="send_email",
                ) from None
        code, resp = client.mail(mail.sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, mail.sender)
        accepted: list[str] = []
        refused: list[RefusedRecipient] = []
        for rcpt in mail.recipients:
            code, resp = client.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                refused.append(RefusedRecipient(address=rcpt, code=code, message=_text(resp)))
        if not accepted:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.rset()
            transient = all(400 <= r.code < 500 for r in refused)
            detail = ", ".join(f"{r.address} ({r.code} {r.message})" for r in refused)
            raise ToolExecutionError(
                f"SMTP server {cfg.host}:{cfg.port} refused every recipient: {detail}",
                tool_id="send_email",
                transient=transient,
            )
        code, resp = client.data(mail.data)  # raises only when DATA itself is refused
        if code != 250:
            raise smtplib.SMTPDataError(code, resp)
        return accepted, refused, f"{code} {_text(resp)}"
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", errors="replace") if isinstance(resp, bytes) else str(resp)


def _smtp_failure(exc: BaseException, cfg: SmtpSettings, secrets: list[str]) -> ToolExecutionError:
    """Map an smtplib/socket error to a ToolExecutionError: 4xx and network trouble are transient."""
    where = f"SMTP server {cfg.host}:{cfg.port}"
    transient = True
    match exc:
        case smtplib.SMTPAuthenticationError(smtp_code=code, smtp_error=resp):
            transient = 400 <= code < 500
            message = f"{where}: login as {cfg.username!r} failed: {code} {_text(resp)}"
        case smtplib.SMTPSenderRefused(smtp_code=code, smtp_error=resp, sender=sender):
            transient = 400 <= code < 500
            message = f"{where} refused sender {sender!r}: {code} {_text(resp)}"
        case smtplib.SMTPResponseException(smtp_code=code, smtp_error=resp):
            transient = 400 <= code < 500
            message = f"{where} answered {code} {_text(resp)}"
        case smtplib.SMTPServerDisconnected():
            message = f"{where} closed the connection: {exc}"
        case smtplib.SMTPException():  # e.g. STARTTLS not offered: a configuration problem
            transient = False
            message = f"{where}: {exc}"
        case ssl.SSLCertVerificationError():
            transient = False
            message = f"{where}: TLS certificate not trusted: {exc.verify_message or exc}"
        case ssl.SSLError():
            transient = False
            message = (
                f"{where}: TLS failed ({exc.reason or exc}); check tools.smtp.use_tls / starttls"
            )
        case TimeoutError():
            message = f"{where} did not answer within {cfg.timeout_seconds:g} s"
        case ConnectionRefusedError():
            message = f"{where} refused the connection"
        case _:
            message = f"{where} unreachable: {type(exc).__name__}: {exc}"
    return ToolExecutionError(_scrub(message, secrets), tool_id="send_email", transient=transient)


# Webhooks (post_webhook and publish_post's webhook adapter) -------------------------------------
class WebhookReceipt(BaseModel):
    """What ``post_webhook`` returns."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="Where the payload went (without query string or credentials).")
    status_code: int
    attempts: int = Field(description="HTTP attempts made, all with the same Idempotency-Key.")
    response_excerpt: str = Field(
        description=f"The start of the response body (≤ {_EXCERPT_CHARS} characters)."
    )
    idempotency_key: str
    delivered_at: datetime
    replayed: bool = Field(
        default=False, description="True when an earlier call with this key already delivered it."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Delivery:
    status_code: int
    attempts: int
    excerpt: str


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Orchestrator-Signature`` value: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _check_webhook_url(url: str, *, tool_id: str, setting: str | None = None) -> httpx.URL:
    where = f"{setting} " if setting else ""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise _bad_url(f"invalid URL {where}{url!r}: {exc}", tool_id, setting) from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise _bad_url(
            f"URL {where}{_safe_url(target)!r} must be an absolute http(s) URL", tool_id, setting
        )
    return target


def _bad_url(
    message: str, tool_id: str, setting: str | None
) -> ToolInputError | ToolExecutionError:
    # A bad URL in the call is an input error; one in the settings is the operator's.
    if setting is None:
        return ToolInputError(message, tool_id=tool_id)
    return ToolExecutionError(message, tool_id=tool_id)


def _safe_url(url: httpx.URL) -> str:
    """The URL without credentials, query or fragment (they may hold tokens), for messages."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def _check_headers(headers: Mapping[str, str], *, tool_id: str) -> dict[str, str]:
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ToolInputError(f"header name {name!r} is not valid", tool_id=tool_id)
        if name.lower() in _RESERVED_HEADERS:
            raise ToolInputError(
                f"header {name!r} is set by the tool and cannot be given", tool_id=tool_id
            )
        if any(c in value for c in "\r\n\0"):
            raise ToolInputError(f"header {name!r} must be a single line", tool_id=tool_id)
    return dict(headers)


def _json_body(payload: Any, *, tool_id: str) -> bytes:
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ToolInputError(f"payload is not JSON-serialisable: {exc}", tool_id=tool_id) from exc
    return text.encode("utf-8")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date: use our own backoff


def _backoff(attempt: int) -> float:
    return min(_BACKOFF_SECONDS * 2 ** (attempt - 1), _BACKOFF_MAX_SECONDS)


async def _read_head(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _READ_CAP_BYTES:
                break
    except httpx.DecodingError:
        return b"(undecodable response body)"
    return b"".join(chunks)


def _excerpt(body: bytes, secrets: list[str]) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "…"
    return _scrub(text, secrets)


async def _deliver_json(
    ctx: ToolContext,
    *,
    tool_id: str,
    url: httpx.URL,
    body: bytes,
    headers: Mapping[str, str],
    secret: SecretStr | None,
    settings: WebhookSettings,
) -> _Delivery:
    """POST a signed JSON body, retrying connection errors, timeouts, 429 and 5xx."""
    secrets = _secret_values(secret)
    target = _safe_url(url)
    log = {"task_id": ctx.task_id, "step_id": ctx.step_id, "tool": tool_id, "host": url.host}
    problem = "no attempt made"
    attempt = 0
    async with httpx.AsyncClient(
        transport=ctx.http_transport, timeout=settings.timeout_seconds, follow_redirects=False
    ) as client:
        for attempt in range(1, settings.max_attempts + 1):
            timestamp = str(int(time.time()))
            signed = {
                **headers,
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: ctx.idempotency_key,
                TIMESTAMP_HEADER: timestamp,
            }
            if secrets:
                signed[SIGNATURE_HEADER] = sign(secrets[0], timestamp, body)
            delay: float | None = None
            try:
                async with client.stream("POST", url, content=body, headers=signed) as response:
                    head = await _read_head(response)
            except httpx.TimeoutException as exc:
                problem = f"timed out after {settings.timeout_seconds:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                excerpt = _excerpt(head, secrets)
                logger.info("webhook answered", extra={**log, "status": status, "attempt": attempt})
                if 200 <= status < 300:
                    return _Delivery(status_code=status, attempts=attempt, excerpt=excerpt)
                answer = f"answered {status} {response.reason_phrase}: {excerpt}".rstrip(": ")
                if status != 429 and status < 500:
                    hint = ""
                    if 300 <= status < 400:
                        hint = f" (redirects are not followed; Location: {response.headers.get('location', '?')})"
                    raise ToolExecutionError(
                        _scrub(f"POST {target} {answer}{hint}", secrets), tool_id=tool_id
                    )
                problem = answer
                delay = _retry_after(response)
            if attempt == settings.max_attempts:
                break
            if delay is not None and delay > _MAX_RETRY_AFTER_SECONDS:
                problem += f" (server asks to retry after {delay:g} s)"
                break
            wait = delay if delay is not None else _backoff(attempt)
            logger.info(
                "webhook attempt failed; retrying", extra={**log, "attempt": attempt, "delay": wait}
            )
            await asyncio.sleep(wait)
    raise ToolExecutionError(
        _scrub(f"POST {target} failed after {attempt} attempt(s): {problem}", secrets),
        tool_id=tool_id,
        transient=True,
    )


@tool(
    "post_webhook",
    name="Post webhook",
    category="network",
    estimated_cost=0.0,
    side_effects=True,
    timeout_seconds=120.0,
)
async def post_webhook(
    url: Annotated[
        str, Field(max_length=2048, description="Absolute http:// or https:// URL to POST to.")
    ],
    payload: Annotated[dict[str, Any], Field(description="The JSON object to send.")],
    headers: Annotated[
        dict[str, str] | None,
        Field(
            description="Extra request headers; the signature and idempotency headers are fixed."
        ),
    ] = None,
    *,
    ctx: ToolContext,
) -> WebhookReceipt:
    """POST a JSON payload to a webhook URL, signed (HMAC-SHA256) and with an Idempotency-Key, retrying transient failures."""
    target = _check_webhook_url(url, tool_id="post_webhook")
    extra = _check_headers(headers or {}, tool_id="post_webhook")
    body = _json_body(payload, tool_id="post_webhook")
    settings = ctx.config.webhook

    async def deliver() -> WebhookReceipt:
        done = await _deliver_json(
            ctx,
            tool_id="post_webhook",
            url=target,
            body=body,
            headers=extra,
            secret=settings.secret,
            settings=settings,
        )
        return WebhookReceipt(
            url=_safe_url(target),
            status_code=done.status_code,
            attempts=done.attempts,
            response_excerpt=done.excerpt,
            idempotency_key=ctx.idempotency_key,
            delivered_at=datetime.now(UTC),
        )

    return await _once(ctx, "post_webhook", WebhookReceipt, deliver)


# publish_post -------------------------------------------------------------------------------
class PublishReceipt(BaseModel):
    """What ``publish_post`` returns."""

    model_config = ConfigDict(frozen=True)

    channel: str
    adapter: Literal["file", "webhook"]
    location: str = Field(description="The file written, or the URL posted to.")
    id: str = Field(description="The post's id: '<slug>-<hash of the idempotency key>'.")
    published_at: datetime
    status_code: int | None = Field(default=None, description="Webhook adapter: the HTTP status.")
    attempts: int | None = Field(default=None, description="Webhook adapter: HTTP attempts made.")
    replayed: bool = Field(
        default=False, description="True when an earlier call with this key already published it."
    )


_RESERVED_FRONT_MATTER = frozenset({"title", "channel", "published_at", "idempotency_key", "id"})


def slugify(text: str, *, max_length: int = 60) -> str:
    """A lowercase ASCII slug for file names and URLs ('Spring Sale!' -> 'spring-sale')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "post"


@tool(
    "publish_post",
    name="Publish post",
    category="publishing",
    estimated_cost=0.0,
    side_effects=True,
    timeout_seconds=120.0,
)
async def publish_post(
    channel: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
            description="Channel name, e.g. blog, linkedin, twitter, newsletter.",
        ),
    ],
    title: Annotated[
        SingleLine, Field(min_length=1, max_length=300, description="Title of the post.")
    ],
    body: Annotated[
        str, Field(max_length=2_000_000, description="The post itself (Markdown or text).")
    ],
    metadata: Annotated[
        dict[str, Any] | None,
        Field(
            description="Extra fields (tags, author, ...): front matter for files, 'metadata' for webhooks."
        ),
    ] = None,
    *,
    ctx: ToolContext,
) -> PublishReceipt:
    """Publish a post to a channel: a Markdown file with front matter, or a signed webhook, as configured per channel."""
    config = ctx.config.publish_channels.get(channel) or PublishChannel()
    post_id = f"{slugify(title)}-{_key_digest(ctx.idempotency_key)[:12]}"
    meta = dict(metadata or {})
    match config.adapter:
        case "file":
            clash = sorted(_RESERVED_FRONT_MATTER & meta.keys())
            if clash:
                raise ToolInputError(
                    f"metadata keys {clash} are reserved for the front matter",
                    tool_id="publish_post",
                )
            folder = _home(ctx) / PUBLISHED_DIR / channel
            receipt = await asyncio.to_thread(
                _publish_file,
                folder,
                channel=channel,
                title=title,
                body=body,
                metadata=meta,
                key=ctx.idempotency_key,
                post_id=post_id,
            )
        case "webhook":
            receipt = await _publish_webhook(
                ctx, config, channel=channel, title=title, body=body, metadata=meta, post_id=post_id
            )
        case _:
            assert_never(config.adapter)
    logger.info(
        "post replayed" if receipt.replayed else "post published",
        extra={
            "task_id": ctx.task_id,
            "step_id": ctx.step_id,
            "channel": channel,
            "adapter": config.adapter,
        },
    )
    return receipt


def _publish_file(
    folder: Path,
    *,
    channel: str,
    title: str,
    body: str,
    metadata: dict[str, Any],
    key: str,
    post_id: str,
) -> PublishReceipt:
    digest = post_id.rsplit("-", 1)[1]
    existing = sorted(folder.glob(f"*-{digest}.md"))
    if existing:  # published before under this key (perhaps with another title): that is the post
        path = existing[0]
        return PublishReceipt(
            channel=channel,
            adapter="file",
            location=str(path),
            id=path.stem,
            published_at=_published_at(path),
            replayed=True,
        )
    now = datetime.now(UTC)
    front = {
        "title": title,
        "channel": channel,
        "published_at": now.isoformat(),
        "idempotency_key": key,
        "id": post_id,
        **metadata,
    }
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False)
    text = f"---\n{header}---\n\n{body.rstrip()}\n"
    path = folder / f"{post_id}.md"
    try:
        _write_atomically(path, text.encode("utf-8"))
    except OSError as exc:
        raise ToolExecutionError(
            f"cannot write {path}: {exc.strerror or exc}", tool_id="publish_post"
        ) from exc
    return PublishReceipt(
        channel=channel, adapter="file", location=str(path), id=post_id, published_at=now
    )


def _published_at(path: Path) -> datetime:
    """``published_at`` from a post's front matter (its mtime if that cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
        _, header, _ = text.split("---\n", 2)
        value = yaml.safe_load(header).get("published_at")
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def _publish_webhook(
    ctx: ToolContext,
    config: PublishChannel,
    *,
    channel: str,
    title: str,
    body: str,
    metadata: dict[str, Any],
    post_id: str,
) -> PublishReceipt:
    setting = f"tools.publish_channels.{channel}.url"
    if not config.url:
        raise ToolExecutionError(
            f"channel {channel!r} uses the webhook adapter but has no URL ({setting})",
            tool_id="publish_post",
        )
    target = _check_webhook_url(config.url, tool_id="publish_post", setting=setting)
    secret = config.secret if config.secret is not None else ctx.config.webhook.secret

    async def deliver() -> PublishReceipt:
        now = datetime.now(UTC)
        payload = {
            "id": post_id,
            "channel": channel,
            "title": title,
            "body": body,
            "metadata": metadata,
            "published_at": now.isoformat(),
            "idempotency_key": ctx.idempotency_key,
        }
        done = await _deliver_json(
            ctx,
            tool_id="publish_post",
            url=target,
            body=_json_body(payload, tool_id="publish_post"),
            headers={},
            secret=secret,
            settings=ctx.config.webhook,
        )
        return PublishReceipt(
            channel=channel,
            adapter="webhook",
            location=_safe_url(target),
            id=post_id,
            published_at=now,
            status_code=done.status_code,
            attempts=done.attempts,
        )

    return await _once(ctx, "publish_post", PublishReceipt, deliver)
