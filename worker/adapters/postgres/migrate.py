"""`fielding-worker migrate`: Alembic, configured in code (no alembic.ini to keep in sync)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config


def sqlalchemy_url(database_url: str) -> str:
    """postgresql://... as SQLAlchemy names the asyncpg driver."""
    scheme, _, rest = database_url.partition("://")
    if scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {scheme}://")
    return f"postgresql+asyncpg://{rest}"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "worker.adapters.postgres:migrations")
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Creates or upgrades the schema to the newest revision; a no-op when it is current."""
    command.upgrade(alembic_config(database_url), "head")
