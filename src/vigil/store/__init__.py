"""Storage: state (SQLAlchemy: SQLite default, PostgreSQL) and telemetry (DuckDB)."""
