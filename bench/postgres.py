"""The PostgreSQL modes' database server: the test suite's throwaway cluster, and the CPU it uses."""

from __future__ import annotations

import os

from bench.service import stat_fields
from tests.support.postgres import PostgresCluster


class PostgresServer:
    """One cluster for the whole bench run, a fresh database per phase, destroyed by `close`."""

    def __init__(self) -> None:
        self.cluster = PostgresCluster()
        self.version = self.cluster.bin.parent.name  # /usr/lib/postgresql/16/bin
        self._pid = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        self._final_cpu: float | None = None
        self._last_cpu = 0.0

    def new_database(self) -> str:
        return self.cluster.new_database()

    def cpu_seconds(self) -> float:
        """CPU time the whole server has used: the postmaster, its live backends and auxiliary processes,
        and the children it has reaped (backends of closed connections)."""
        if self._final_cpu is not None:
            return self._final_cpu
        ticks = os.sysconf("SC_CLK_TCK")
        fields = stat_fields(self._pid)
        # utime, stime, cutime, cstime: fields 14 to 17 of stat(5).
        total = sum(int(value) for value in fields[11:15])
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                child = stat_fields(int(entry.name))
            except OSError:
                continue  # gone meanwhile
            if int(child[1]) == self._pid:  # ppid
                total += int(child[11]) + int(child[12])
        self._last_cpu = total / ticks
        return self._last_cpu

    def close(self) -> None:
        """Stops and deletes the cluster; `cpu_seconds` keeps answering with its last figure."""
        try:
            self._final_cpu = self.cpu_seconds()
        except OSError:
            self._final_cpu = self._last_cpu
        finally:
            self.cluster.destroy()
