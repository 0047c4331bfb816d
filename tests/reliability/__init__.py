"""Reliability under retries, concurrency, crashes and database faults, on SQLite and PostgreSQL."""
