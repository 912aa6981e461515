"""Configuration: environment (``ORCHESTRATOR_*``), ``orchestrator.toml`` and defaults.

Precedence: explicit arguments > environment > toml file > defaults. Nested groups use ``__``
in the environment (``ORCHESTRATOR_ENGINE__LEASE_SECONDS=10``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

CONFIG_FILE_ENV = "ORCHESTRATOR_CONFIG"
DEFAULT_CONFIG_FILE = "orchestrator.toml"


class EngineSettings(BaseModel):
    task_concurrency: int = Field(
        default=8, ge=1, le=1000, description="Steps of one task running at once."
    )
    global_concurrency: int = Field(
        default=64, ge=1, le=10000, description="Steps running at once in one process."
    )
    worker_concurrency: int = Field(
        default=32, ge=1, le=10000, description="Tasks one worker runs at once."
    )
    approval_expiry_hours: float = Field(
        default=24 * 7, gt=0, description="A parked approval expires after this."
    )
    io_threads: int = Field(
        default=8,
        ge=2,
        le=1024,
        description="Threads for blocking work (database calls, file tools, DuckDB, charts) in "
        "an engine process. On 2 cores, 8 ran many small tasks fastest (16: 20 % slower, "
        "DBOS's unbounded default: 150+ threads queueing on the database and the GIL); raise "
        "it if your tools block in threads for long.",
    )
    commit_delay_ms: float = Field(
        default=50.0,
        ge=0,
        le=60_000,
        description="How long a pure step's start or end may wait to be committed when nothing "
        "waits for it (it then shares the next commit that is needed, e.g. the task's end). A "
        "crash loses at most this much pure work, which runs again.",
    )
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    lease_seconds: float = Field(
        default=20.0,
        gt=0,
        description="An executor silent this long is dead; its tasks move (within lease + heartbeat).",
    )
    executor_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    retry_backoff_seconds: float = Field(default=1.0, ge=0)
    retry_backoff_rate: float = Field(default=2.0, ge=1)
    queue_polling_seconds: float = Field(default=0.5, gt=0)
    pause_at_phase: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Fault injection for crash drills: seconds a request's pipeline waits when it "
            "enters a phase (e.g. {'format': 30}), after the phase is recorded. A key "
            "'PHASE@LABEL' pauses only the task whose name or request is LABEL."
        ),
    )


_DIMENSIONS = ("accuracy", "completeness", "coherence", "tone", "format")


class QualitySettings(BaseModel):
    """Phase 4-5: how results are scored and when they are refined or escalated."""

    enabled: bool = Field(default=True, description="Assess and refine request results.")
    threshold: float = Field(
        default=0.75, ge=0, le=1, description="Pass mark of the overall score."
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Pass marks per channel (e.g. linkedin) or request intent, over `threshold`.",
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "accuracy": 0.25,
            "completeness": 0.25,
            "coherence": 0.15,
            "tone": 0.15,
            "format": 0.2,
        },
        description="Weight of each dimension in the overall score.",
    )
    min_dimension: float = Field(
        default=0.5, ge=0, le=1, description="A dimension below this fails the result too."
    )
    max_retries: int = Field(default=2, ge=0, le=10, description="Refinement rounds at most.")
    judge: bool = Field(default=True, description="Ask the judge model after the checks.")
    length_tolerance: float = Field(
        default=0.5, gt=0, le=5, description="Allowed relative deviation from a target length."
    )

    @field_validator("weights")
    @classmethod
    def _known_dimensions(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(_DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; known: {list(_DIMENSIONS)}")
        if any(w < 0 for w in weights.values()) or not sum(weights.values()):
            raise ValueError("weights must be >= 0 and not all zero")
        return weights

    @field_validator("thresholds")
    @classmethod
    def _in_range(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in thresholds.items() if not 0 <= v <= 1)
        if bad:
            raise ValueError(f"thresholds must be between 0 and 1: {bad}")
        return thresholds

    def threshold_for(self, *keys: str | None) -> float:
        """The first of ``keys`` (channel, intent) with its own pass mark, else the default."""
        for k in keys:
            if k and k in self.thresholds:
                return self.thresholds[k]
        return self.threshold


class SmtpSettings(BaseModel):
    """Where send_email delivers mail."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")
    use_tls: bool = Field(default=False, description="Implicit TLS (SMTPS, usually port 465).")
    sender: str = "orchestrator@localhost"
    timeout_seconds: float = Field(default=30.0, gt=0)


class PublishChannel(BaseModel):
    """How publish_post delivers to one channel."""

    adapter: Literal["file", "webhook"] = "file"
    url: str | None = Field(default=None, description="Webhook adapter: where to POST the post.")
    secret: SecretStr | None = Field(
        default=None, description="Webhook adapter: HMAC-SHA256 signing key."
    )


class WebhookSettings(BaseModel):
    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for the signature header."
    )
    max_attempts: int = Field(default=3, ge=1, le=10)
    timeout_seconds: float = Field(default=15.0, gt=0)


class McpSettings(BaseModel):
    config_file: Path | None = Field(default=None, description="An mcp.json with mcpServers.")
    startup_timeout_seconds: float = Field(default=20.0, gt=0)
    call_timeout_seconds: float = Field(default=30.0, gt=0)
    max_result_bytes: int = Field(default=1_000_000, gt=0)


class ToolSettings(BaseModel):
    tool_modules: list[str] = Field(default_factory=list)
    load_entry_points: bool = True
    http_timeout_seconds: float = Field(default=30.0, gt=0)
    http_max_bytes: int = Field(default=5_000_000, gt=0)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    publish_channels: dict[str, PublishChannel] = Field(
        default_factory=dict,
        description="Channel name -> adapter; unlisted channels use the file adapter.",
    )
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)


LOCAL_MODEL = "local"


class ModelConfig(BaseModel):
    """One model the orchestrator may call (``[models.<name>]`` in orchestrator.toml)."""

    provider: Literal["local", "openai", "anthropic"] = Field(
        default="openai",
        description="local = the embedded llama.cpp model; openai = any OpenAI-compatible "
        "endpoint (OpenAI, vLLM, Ollama, llama.cpp server, OpenRouter); anthropic.",
    )
    model: str = Field(default="local", description="The model id the endpoint expects.")
    base_url: str | None = Field(default=None, description="Endpoint, e.g. http://host:8000/v1.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key."
    )
    input_price_per_million: float = Field(
        default=0.0, ge=0, description="USD per 1M input tokens."
    )
    output_price_per_million: float = Field(
        default=0.0, ge=0, description="USD per 1M output tokens."
    )
    context_size: int = Field(default=8192, ge=512)
    max_output_tokens: int = Field(default=1024, ge=16)
    timeout_seconds: float = Field(default=120.0, gt=0)
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries on 429, 5xx and connection errors."
    )
    fallback: str | None = Field(default=None, description="Model to try when this one fails.")
    temperature: float = Field(default=0.2, ge=0, le=2)
    plans_whole_dag: bool = Field(
        default=False,
        description="A capable model: the planner lets it propose the whole DAG (then checks it).",
    )

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


def _default_models() -> dict[str, ModelConfig]:
    return {LOCAL_MODEL: ModelConfig(provider="local", model="qwen2.5-coder-0.5b-instruct-q4")}


class LlmSettings(BaseModel):
    """Which model serves which purpose, repair attempts and per-task budgets."""

    default_model: str = LOCAL_MODEL
    planner: str | None = Field(default=None, description="Model for planning (default: default).")
    writer: str | None = Field(default=None, description="Model for the writing tools.")
    judge: str | None = Field(default=None, description="Model for quality judging.")
    repair_attempts: int = Field(
        default=2, ge=0, le=5, description="Re-asks after output that fails validation."
    )
    retry_backoff_seconds: float = Field(default=1.0, ge=0)
    task_budget_cost: float | None = Field(
        default=None, gt=0, description="USD a task may spend on model calls."
    )
    task_budget_tokens: int | None = Field(
        default=None, gt=0, description="Tokens (input + output) a task may use."
    )
    local_threads: int | None = Field(default=None, ge=1, description="Default: all cores.")
    local_parallel: int = Field(
        default=2, ge=1, le=16, description="Requests the embedded model serves at once."
    )


class Settings(BaseSettings):
    """Every setting of the orchestrator."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(
        default=Path(".orchestrator"), description="SQLite files, workspace and logs."
    )
    database_url: str | None = Field(
        default=None, description="postgresql://... ; default: SQLite in home."
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    models: dict[str, ModelConfig] = Field(default_factory=_default_models)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    local_model_path: Path | None = Field(
        default=None, description="Any GGUF file to serve instead of the bundled model."
    )
    log_level: str = Field(default="WARNING", pattern=r"^(?i)(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("models")
    @classmethod
    def _keep_local(cls, v: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        return {**_default_models(), **v}

    @model_validator(mode="after")
    def _known_models(self) -> Settings:
        for purpose in ("default_model", "planner", "writer", "judge"):
            name = getattr(self.llm, purpose)
            if name is not None and name not in self.models:
                raise ValueError(
                    f"llm.{purpose} names model {name!r}, which is not configured "
                    f"(known: {', '.join(sorted(self.models))})"
                )
        for name, cfg in self.models.items():
            if cfg.fallback is not None and cfg.fallback not in self.models:
                raise ValueError(f"models.{name}.fallback names unknown model {cfg.fallback!r}")
            if cfg.provider == "openai" and not cfg.base_url and not cfg.api_key_env:
                raise ValueError(f"models.{name}: an openai model needs base_url or api_key_env")
        return self

    def model_for(self, purpose: str) -> str:
        """The configured model name for a purpose (planner, writer, judge) or the default."""
        return getattr(self.llm, purpose, None) or self.llm.default_model

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme.split("+")[0] not in {"postgresql", "postgres", "sqlite"}:
            raise ValueError("must start with postgresql:// or sqlite:///")
        if scheme in {"postgres", "postgresql+psycopg", "postgresql+psycopg2"}:
            v = "postgresql://" + v.split("://", 1)[1]
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return (init_settings, env_settings, toml)

    # Derived locations -------------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return self.home / "workspace"

    @property
    def is_postgres(self) -> bool:
        return self.database_url is not None and self.database_url.startswith("postgresql")

    @property
    def app_database_url(self) -> str:
        """SQLAlchemy URL of the orchestrator's own tables."""
        if self.database_url is None:
            return f"sqlite:///{self.home / 'orchestrator.sqlite'}"
        if self.is_postgres:
            return "postgresql+psycopg://" + self.database_url.split("://", 1)[1]
        return self.database_url

    @property
    def system_database_url(self) -> str:
        """URL of DBOS's system database (its own SQLite file, or the same Postgres database)."""
        if self.database_url is None:
            return f"sqlite:///{self.home / 'dbos.sqlite'}"
        if self.is_postgres:
            return self.database_url
        base = self.database_url.removesuffix(".sqlite").removesuffix(".db")
        return base + "-dbos.sqlite"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.workspace, self.home / "logs"):
            d.mkdir(parents=True, exist_ok=True)


def config_file_path() -> Path | None:
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _unknown_env_settings() -> list[str]:
    """``ORCHESTRATOR_*`` variables that name no setting (a typo would otherwise be ignored)."""
    unknown: list[str] = []
    for name in os.environ:
        if (
            not name.startswith("ORCHESTRATOR_")
            or name == CONFIG_FILE_ENV
            or name.startswith("ORCHESTRATOR_TEST_")
        ):
            continue
        parts = name.removeprefix("ORCHESTRATOR_").lower().split("__")
        model: type[BaseModel] | None = Settings
        free_key = False  # the next part is a dict key (models.<name>)
        for part in parts:
            if free_key:
                free_key = False
                continue
            if model is None or part not in model.model_fields:
                unknown.append(name)
                break
            annotation = model.model_fields[part].annotation
            if get_origin(annotation) is dict:
                free_key = True
                annotation = get_args(annotation)[1]
            model = (
                annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel)
                else None
            )
    return unknown


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one :class:`ConfigError` naming the setting."""
    unknown = _unknown_env_settings()
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in the environment: {', '.join(sorted(unknown))}",
            setting=unknown[0],
        )
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit and not Path(explicit).is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={explicit!r}: no such file", setting=CONFIG_FILE_ENV)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if not loc:  # a check across settings (e.g. a purpose naming an unknown model)
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"invalid configuration: {msg}", setting="models") from exc
        env_name = "ORCHESTRATOR_" + "__".join(p.upper() for p in loc)
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        raise ConfigError(
            f"invalid setting {'.'.join(loc)} / {env_name}: {err['msg']}{shown}",
            setting=".".join(loc),
        ) from exc
    except Exception as exc:  # a malformed toml file
        raise ConfigError(f"cannot read configuration: {exc}", setting=CONFIG_FILE_ENV) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
