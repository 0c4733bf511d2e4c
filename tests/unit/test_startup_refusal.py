"""Settings `run` and `serve` refuse to start with: the development secret outside
development (for `serve`, unless bound to loopback), and for `run` a system key that is
missing or is the user secret. The system key falls back to the user secret in development
only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from worker.entrypoints.cli import main
from worker.settings import DEVELOPMENT_SECRET, Settings

ROOT = Path(__file__).parents[2]
OWN = "a-secret-of-this-deployment-0123456789abcdef"
SYSTEM = "the-system-key-of-this-deployment-0123456789"


def settings(**values: Any) -> Settings:
    """Every value that matters given, so the shell's FIELDING_* variables change nothing."""
    defaults: dict[str, Any] = {
        "jwt_secret": OWN,
        "system_jwt_secret": SYSTEM,
        "environment": "production",
        "api_host": "0.0.0.0",
    }
    return Settings(**(defaults | values))


def test_a_deployment_with_secrets_of_its_own_starts() -> None:
    assert settings().startup_refusal("run") is None
    assert settings().startup_refusal("serve") is None


@pytest.mark.parametrize("command", ["run", "serve"])
@pytest.mark.parametrize("name", ["jwt_secret", "system_jwt_secret"])
def test_the_development_secret_is_refused_outside_development(command: str, name: str) -> None:
    refusal = settings(**{name: DEVELOPMENT_SECRET}).startup_refusal(command)  # type: ignore[arg-type]
    assert refusal is not None and "development secret" in refusal
    assert "FIELDING_ENVIRONMENT=development" in refusal


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_serve_bound_to_loopback_takes_the_development_secret(host: str) -> None:
    local = settings(jwt_secret=DEVELOPMENT_SECRET, api_host=host)
    assert local.startup_refusal("serve") is None
    assert local.startup_refusal("run") is not None, "the worker reads commands from anywhere"


def test_in_development_everything_starts_and_the_system_key_defaults_to_the_secret() -> None:
    development = settings(
        jwt_secret=DEVELOPMENT_SECRET, system_jwt_secret=None, environment="development"
    )
    assert development.startup_refusal("run") is None
    assert development.startup_refusal("serve") is None
    assert development.system_secret == DEVELOPMENT_SECRET


def test_outside_development_the_system_key_has_no_default_and_run_refuses() -> None:
    production = settings(system_jwt_secret=None)
    assert production.system_secret is None
    refusal = production.startup_refusal("run")
    assert refusal is not None and "FIELDING_SYSTEM_JWT_SECRET is not set" in refusal
    assert production.startup_refusal("serve") is None, "serve needs no system key"


def test_run_refuses_a_system_key_that_is_the_user_secret() -> None:
    refusal = settings(system_jwt_secret=OWN).startup_refusal("run")
    assert refusal is not None and "must differ" in refusal


@pytest.mark.parametrize("command", ["run", "serve"])
def test_the_command_stops_at_once_naming_the_problem(command: str) -> None:
    environment = {
        "FIELDING_JWT_SECRET": DEVELOPMENT_SECRET,
        "FIELDING_SYSTEM_JWT_SECRET": SYSTEM,
        "FIELDING_ENVIRONMENT": "production",
        "API_HOST": "0.0.0.0",
    }
    result = CliRunner().invoke(main, [command], env=environment)
    assert result.exit_code == 2, result.output
    assert f"{command} refuses to start" in result.output
    assert "FIELDING_JWT_SECRET is the development secret" in result.output


def test_the_makefile_and_compose_give_the_development_secret_and_say_development() -> None:
    makefile = (ROOT / "Makefile").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"FIELDING_JWT_SECRET ?= {DEVELOPMENT_SECRET}" in makefile
    assert re.search(r"^run: export FIELDING_ENVIRONMENT \?= development$", makefile, re.M)
    assert f"${{FIELDING_JWT_SECRET:-{DEVELOPMENT_SECRET}}}" in compose
    assert "FIELDING_ENVIRONMENT: ${FIELDING_ENVIRONMENT:-development}" in compose
