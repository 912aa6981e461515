from __future__ import annotations

import os
from pathlib import Path

import pytest

from intelligent_orchestrator.errors import ConfigError
from intelligent_orchestrator.settings import (
    CONFIG_FILE_ENV,
    DEFAULT_CONFIG_FILE,
    Settings,
    config_file_path,
    load_settings,
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no ORCHESTRATOR_* variables from the outside."""
    for name in list(os.environ):
        if name.upper().startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_defaults(workdir: Path) -> None:
    s = load_settings()
    assert s.home == workdir / ".orchestrator"
    assert s.home.is_absolute()
    assert s.database_url is None
    assert s.is_postgres is False
    assert s.engine.task_concurrency == 8
    assert s.engine.lease_seconds == 20.0
    assert s.engine.executor_id is None
    assert s.tools.tool_modules == []
    assert s.tools.load_entry_points is True
    assert s.log_level == "WARNING"
    assert config_file_path() is None


def test_sqlite_paths_live_under_home(workdir: Path) -> None:
    s = load_settings(home=workdir / "h")
    assert s.app_database_url == f"sqlite:///{workdir / 'h' / 'orchestrator.sqlite'}"
    assert s.system_database_url == f"sqlite:///{workdir / 'h' / 'dbos.sqlite'}"
    assert s.workspace == workdir / "h" / "workspace"
    assert not s.home.exists()
    s.ensure_dirs()
    assert s.home.is_dir()
    assert s.workspace.is_dir()
    assert (s.home / "logs").is_dir()


def test_relative_home_is_resolved_against_the_working_directory(workdir: Path) -> None:
    assert load_settings(home="data/orch").home == workdir / "data" / "orch"


def test_home_expands_the_user_directory(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert load_settings(home="~/orch").home == (tmp_path / "user" / "orch").resolve()


def test_environment_with_prefix_and_nested_delimiter(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(workdir / "from-env"))
    monkeypatch.setenv("ORCHESTRATOR_LOG_LEVEL", "debug")
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__LEASE_SECONDS", "10")
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__EXECUTOR_ID", "worker-1")
    monkeypatch.setenv("ORCHESTRATOR_TOOLS__LOAD_ENTRY_POINTS", "false")
    monkeypatch.setenv("ORCHESTRATOR_TOOLS__TOOL_MODULES", '["pkg.tools", "local/tools.py"]')
    s = load_settings()
    assert s.home == workdir / "from-env"
    assert s.log_level == "debug"
    assert s.engine.lease_seconds == 10.0
    assert s.engine.executor_id == "worker-1"
    assert s.engine.heartbeat_seconds == 5.0  # untouched sibling keeps its default
    assert s.tools.load_entry_points is False
    assert s.tools.tool_modules == ["pkg.tools", "local/tools.py"]


def test_toml_file_in_the_working_directory(workdir: Path) -> None:
    (workdir / DEFAULT_CONFIG_FILE).write_text(
        'log_level = "INFO"\n[engine]\nlease_seconds = 7\n[tools]\ntool_modules = ["a.b"]\n'
    )
    assert config_file_path() == Path(DEFAULT_CONFIG_FILE)
    s = load_settings()
    assert s.log_level == "INFO"
    assert s.engine.lease_seconds == 7.0
    assert s.tools.tool_modules == ["a.b"]


def test_config_env_names_the_toml_file_and_wins_over_the_working_directory(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / DEFAULT_CONFIG_FILE).write_text("[engine]\nlease_seconds = 7\n")
    elsewhere = tmp_path / "conf" / "custom.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("[engine]\nlease_seconds = 11\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(elsewhere))
    assert config_file_path() == elsewhere
    assert load_settings().engine.lease_seconds == 11.0


def test_precedence_init_over_env_over_toml_over_default(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / DEFAULT_CONFIG_FILE).write_text(
        "[engine]\nlease_seconds = 7\nheartbeat_seconds = 2\nqueue_polling_seconds = 0.25\n"
    )
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__LEASE_SECONDS", "8")
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__HEARTBEAT_SECONDS", "3")

    s = load_settings(engine={"lease_seconds": 9})
    assert s.engine.lease_seconds == 9.0  # init
    assert s.engine.heartbeat_seconds == 3.0  # env over toml
    assert s.engine.queue_polling_seconds == 0.25  # toml over default
    assert s.engine.task_concurrency == 8  # default

    assert load_settings().engine.lease_seconds == 8.0
    monkeypatch.delenv("ORCHESTRATOR_ENGINE__LEASE_SECONDS")
    assert load_settings().engine.lease_seconds == 7.0
    (workdir / DEFAULT_CONFIG_FILE).unlink()
    assert load_settings().engine.lease_seconds == 20.0


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error"])
def test_log_level_is_case_insensitive(workdir: Path, level: str) -> None:
    assert load_settings(log_level=level).log_level == level


@pytest.mark.parametrize(
    ("given", "stored", "app_url"),
    [
        (
            "postgres://u:p@db:5432/orch",
            "postgresql://u:p@db:5432/orch",
            "postgresql+psycopg://u:p@db:5432/orch",
        ),
        ("postgresql://u@db/orch", "postgresql://u@db/orch", "postgresql+psycopg://u@db/orch"),
        (
            "postgresql+psycopg://u@db/orch",
            "postgresql://u@db/orch",
            "postgresql+psycopg://u@db/orch",
        ),
        (
            "postgresql+psycopg2://u@db/orch",
            "postgresql://u@db/orch",
            "postgresql+psycopg://u@db/orch",
        ),
    ],
)
def test_postgres_urls_are_normalised(workdir: Path, given: str, stored: str, app_url: str) -> None:
    s = load_settings(database_url=given)
    assert s.database_url == stored
    assert s.is_postgres is True
    assert s.app_database_url == app_url
    assert s.system_database_url == stored


def test_postgres_url_from_the_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgres://u@db/orch")
    assert load_settings().database_url == "postgresql://u@db/orch"


def test_explicit_sqlite_url(workdir: Path) -> None:
    s = load_settings(database_url=f"sqlite:///{workdir}/data/app.sqlite")
    assert s.is_postgres is False
    assert s.app_database_url == f"sqlite:///{workdir}/data/app.sqlite"
    assert s.system_database_url == f"sqlite:///{workdir}/data/app-dbos.sqlite"


def test_empty_database_url_means_the_default(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "")
    s = load_settings()
    assert s.database_url is None
    assert s.app_database_url.startswith("sqlite:///")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "db.sqlite", "http://x"])
def test_unsupported_database_url(workdir: Path, url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(database_url=url)
    assert exc.value.setting == "database_url"
    assert "ORCHESTRATOR_DATABASE_URL" in str(exc.value)
    assert "must start with postgresql:// or sqlite:///" in str(exc.value)
    assert repr(url) in str(exc.value)


def test_invalid_env_value_names_the_setting_and_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__LEASE_SECONDS", "-1")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.setting == "engine.lease_seconds"
    assert str(exc.value) == (
        "invalid setting engine.lease_seconds / ORCHESTRATOR_ENGINE__LEASE_SECONDS: "
        "Input should be greater than 0 (got '-1')"
    )


def test_unparsable_env_value(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__TASK_CONCURRENCY", "many")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.setting == "engine.task_concurrency"
    assert "ORCHESTRATOR_ENGINE__TASK_CONCURRENCY" in str(exc.value)
    assert "'many'" in str(exc.value)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"log_level": "LOUD"}, "log_level"),
        ({"engine": {"executor_id": "bad id!"}}, "engine.executor_id"),
        ({"engine": {"task_concurrency": 0}}, "engine.task_concurrency"),
        ({"engine": {"retry_backoff_rate": 0.5}}, "engine.retry_backoff_rate"),
        ({"tools": {"http_max_bytes": 0}}, "tools.http_max_bytes"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_invalid_explicit_values(workdir: Path, overrides: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(**overrides)
    assert exc.value.setting == setting
    env_name = "ORCHESTRATOR_" + setting.upper().replace(".", "__")
    assert f"invalid setting {setting} / {env_name}: " in str(exc.value)


def test_invalid_toml_value_names_the_setting(workdir: Path) -> None:
    (workdir / DEFAULT_CONFIG_FILE).write_text("[engine]\nlease_seconds = 'soon'\n")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.setting == "engine.lease_seconds"
    assert "'soon'" in str(exc.value)


def test_unknown_key_in_toml_is_refused(workdir: Path) -> None:
    (workdir / DEFAULT_CONFIG_FILE).write_text("lease_seconds = 5\n")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.setting == "lease_seconds"
    assert "Extra inputs are not permitted" in str(exc.value)


def test_malformed_toml(workdir: Path) -> None:
    (workdir / DEFAULT_CONFIG_FILE).write_text("log_level = [\n")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.setting == CONFIG_FILE_ENV
    assert str(exc.value).startswith("cannot read configuration: ")


def test_config_env_pointing_at_a_missing_file(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv(CONFIG_FILE_ENV, str(missing))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.setting == CONFIG_FILE_ENV
    assert str(exc.value) == f"{CONFIG_FILE_ENV}={str(missing)!r}: no such file"


def test_settings_class_reads_the_environment_directly(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ENGINE__WORKER_CONCURRENCY", "4")
    assert Settings().engine.worker_concurrency == 4


def test_a_misspelt_environment_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ENGNE__LEASE_SECONDS", "3")
    with pytest.raises(ConfigError, match="ORCHESTRATOR_ENGNE__LEASE_SECONDS"):
        load_settings()
    monkeypatch.delenv("ORCHESTRATOR_ENGNE__LEASE_SECONDS")
    monkeypatch.setenv("ORCHESTRATOR_TOOLS__SMTP__HOST", "mail.example")
    assert load_settings().tools.smtp.host == "mail.example"
