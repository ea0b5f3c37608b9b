"""Alembic migrations of the guildprompts database (run them with `guildprompts db upgrade`)."""
