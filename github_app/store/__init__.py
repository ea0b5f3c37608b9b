"""The data layer: SQLAlchemy 2 models, small query modules by concern, migrations helpers.

Import the module you need (`from github_app.store import deliveries`); this package imports
nothing itself, so `guildprompts --help` stays fast. Every query function takes a `Session` and
never commits: `with database.session() as session:` (see `db.Database`) is the transaction.

- `db`: engine and sessions (SQLite WAL + BEGIN IMMEDIATE; PostgreSQL via psycopg 3)
- `schema`: migrations (upgrade, downgrade, status, `ensure_schema`, `open_database`)
- `models`: the tables; `errors`: what the layer raises
- `deliveries`: the webhook queue; `installations`: installations, repositories, purge
- `bindings`: guild bindings, pending requests, tokens; `serving`: what a guild is served,
  which branches are tracked; `branches`: tracked branches, activation, generation
- `snapshots`: blobs and snapshots; `checkruns`; `audit`: audit and sync logs
- `credentials`: encrypted App secrets and key rotation; `retention`: pruning
- `commands`: `guildprompts db ...`, `keys ...`, `prune`
"""
