"""The one settings class. Built in `create_app`/the CLI from the environment (prefix ZIZHU_) and passed down."""

from __future__ import annotations

from datetime import datetime
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
    # Recently written cases kept in the process (adapters/store.py CaseCache), so a command need not read its
    # case back before deciding; 0 turns the cache off.
    case_cache_size: int = 10_000
    # Security and audit (README "Security and audit"): older cipher keys still decrypt, never encrypt.
    cipher_previous_keys: list[str] = []
    seal_interval: float = 3600.0  # seconds between automatic seals of the chain heads; 0: only on demand
    max_body_bytes: int = 1_048_576
    max_upload_bytes: int = 20 * 1_048_576  # multipart uploads (registry files)
    rate_limit_writes_per_second: float = 100.0  # per token; 0 turns the limit off
    rate_limit_burst: int = 1000
    cors_origins: list[str] = []
    # The web console's sign-in link to the identity provider, which sends the person back to /#access_token=….
    web_signin_url: str | None = None
    # An external identity provider (adapters/jwks.py): RS256/ES256 tokens checked against its JWKS.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_file: Path | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: list[str] = ["RS256", "ES256"]
    oidc_leeway: int = 30
    oidc_sub_claim: str = "sub"
    oidc_role_claim: str = "role"
    oidc_school_claim: str = "school"
    oidc_class_claim: str = "class"
    oidc_region_claim: str = "region"
    oidc_student_claim: str = "student"
    oidc_role_map: dict[str, str] = {}

    @field_validator("cipher_key")
    @classmethod
    def _cipher_key_is_32_bytes(cls, value: str | None) -> str | None:
        if value:
            from adapters.crypto import check_key

            check_key(value, "ZIZHU_CIPHER_KEY")
        return value or None

    @field_validator("cipher_previous_keys")
    @classmethod
    def _previous_keys_are_32_bytes(cls, value: list[str]) -> list[str]:
        from adapters.crypto import check_key

        for i, key in enumerate(value):
            check_key(key, f"ZIZHU_CIPHER_PREVIOUS_KEYS[{i}]")
        return value
    # The notice-deadline job inside `zizhu serve`: seconds between runs, and whether this process runs it.
    deadline_interval: float = 30.0
    run_deadlines: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql")):
            raise ValueError("ZIZHU_DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://…")
        return value

    @field_validator("now")
    @classmethod
    def _now_is_an_instant(cls, value: str | None) -> str | None:
        if value:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"ZIZHU_NOW must be an ISO 8601 time like 2025-09-15T09:00:00+08:00, "
                                 f"not {value!r}") from None
        return value or None

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
