"""Fresh databases on each engine the suite runs against, behind one interface."""

from __future__ import annotations

from pathlib import Path

from tests.support.postgres import PostgresCluster


class SqliteDatabases:
    engine = "sqlite"

    def new(self, folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'webhooks.db'}"

    def stored_bytes(self, url: str, with_log: bool = True) -> bytes:
        """The database file with its write-ahead log, as a thief copying them would have them."""
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(part.read_bytes() for part in path.parent.glob(path.name + "*"))


class PostgresDatabases:
    engine = "postgresql"

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster

    def new(self, folder: Path) -> str:
        return self.cluster.new_database()

    def stored_bytes(self, url: str, with_log: bool = True) -> bytes:
        """The cluster's files; PostgreSQL's write-ahead log keeps what an older release wrote until the
        segment is reused, so `with_log=False` reads the tables alone."""
        return self.cluster.stored_bytes(with_log)


Databases = SqliteDatabases | PostgresDatabases
