"""The one settings class. Built in `create_app`/the CLI from the environment (prefix ZIZHU_) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "zizhu-development-secret-not-for-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZIZHU_", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///var/zizhu.db"
    secret: str = DEV_SECRET
    cipher_key: str | None = None
    now: str | None = None
    policy_dir: Path = REPO_ROOT / "policies"
    demo_schools: Path | None = REPO_ROOT / "data" / "schools-demo.csv"
    log_level: str = "INFO"
    token_ttl: int = 3600
    projection_poll_interval: float = 0.2
    projection_batch_size: int = 1000
    # `zizhu serve` keeps the views itself unless a separate `zizhu project` process does it.
    run_projections: bool = True
    # The notice-deadline job inside `zizhu serve`: seconds between runs, and whether this process runs it.
    deadline_interval: float = 30.0
    run_deadlines: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql")):
            raise ValueError("ZIZHU_DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://…")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.env == "production":
            if self.now:
                raise ValueError("ZIZHU_NOW is refused when ZIZHU_ENV=production")
            if self.secret == DEV_SECRET or len(self.secret) < 32:
                raise ValueError("production needs ZIZHU_SECRET of at least 32 characters")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))
