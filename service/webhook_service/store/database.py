"""Opening the database named by a URL, and running queries off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

import peewee
from playhouse.db_url import connect

from webhook_service.domain.admission import Gate
from webhook_service.domain.errors import Reason, Unavailable
from webhook_service.files import create_private
from webhook_service.store import secrets, writers
from webhook_service.store.checkpoints import Checkpointer
from webhook_service.store.models import bind_thread, bound_to, database
from webhook_service.store.schema import migrate
from webhook_service.store.secrets import SecretBox

log = logging.getLogger(__name__)

IDLE_CHECK_SECONDS = 1.0
# How long closing a store waits for each query thread to close its connection (one busy with a query).
CLOSE_WAIT_SECONDS = 10.0
# API calls the store holds per connection, running or waiting. A call behind that many others waits
# tens of milliseconds when queries are quick; when they are slow, a longer queue only ends in deadlines.
API_CALLS_PER_CONNECTION = 64

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")

# WAL lets readers run beside the one writer; NORMAL sync keeps every commit
# through a process crash (only an OS crash can lose the last transactions).
# secure_delete zeroes what a row leaves behind, so a replaced secret does not linger in free pages.
# No commit checkpoints the log: a store's thread does (checkpoints.py).
SQLITE_PRAGMAS: dict[str, Any] = {
    "journal_mode": "wal",
    "busy_timeout": 10_000,
    "foreign_keys": 1,
    "synchronous": "normal",
    "secure_delete": 1,
    "wal_autocheckpoint": 0,
}


def open_database(url: str) -> peewee.Database:
    """Connects the models to `url` and brings its schema up to date."""
    if url.startswith("sqlite"):
        db = connect(url, pragmas=SQLITE_PRAGMAS)
        path = Path(db.database)
        # Made here, owner-only, before SQLite would make it readable by all; its -wal and -shm files take its mode.
        if db.database != ":memory:" and not path.exists():
            create_private(path, "")
    else:
        db = connect(url)
    database.initialize(db)
    with bound_to(db), db.connection_context():
        migrate(db)
    opened: peewee.Database = db
    return opened


def describe(db: peewee.Database) -> str:
    """The database for a log line, without credentials."""
    if isinstance(db, peewee.SqliteDatabase):
        return f"sqlite {Path(db.database).resolve()}"
    params = db.connect_params
    return f"postgresql {params.get('host', 'localhost')}:{params.get('port', 5432)}/{db.database}"


def explain_failure(url: str, error: Exception) -> str:
    """One line for the operator about a database that failed at start or in a command: which database, what
    is wrong and what to do, without a traceback."""
    db = connect(url)
    cause = error.__cause__ if isinstance(error, Unavailable) else error
    original = getattr(cause, "orig", cause)
    detail = (str(original).strip().splitlines() or [type(original).__name__])[0]
    if not isinstance(db, peewee.SqliteDatabase):
        return f"cannot use the database {describe(db)} ({detail}): check the --database URL and that the server is up"
    code = getattr(original, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return f"the database {describe(db)} is damaged ({detail}): restore it from a backup"
    return (
        f"cannot use the database {describe(db)} ({detail}): check that it is an SQLite file this user may read and "
        "write, in a folder it may write, on a disk with room"
    )


def connections_for(db: peewee.Database, pool_size: int) -> int:
    """SQLite has one writer, so one connection serves best; a server database gets the pool asked for."""
    return 1 if isinstance(db, peewee.SqliteDatabase) else pool_size


# How long a scrub on PostgreSQL waits for the transactions open when it began: VACUUM FULL keeps, and copies into
# the new file, every row version a snapshot still running may read, the replaced one included.
SCRUB_WAIT_SECONDS = 5.0
_OPEN_BEFORE = (
    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND xact_start < %s AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)"
)


def scrub_freed_space() -> None:
    """Makes the engine drop old row versions now: SQLite moves its log into the zeroed file, PostgreSQL
    vacuums. Used after secrets stored in clear are replaced, so no copy of them stays on disk."""
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase):
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[no-untyped-call]
    elif db is not None:
        _wait_for_open_transactions(db)
        db.execute_sql("VACUUM FULL webhook")  # type: ignore[no-untyped-call]
        db.execute_sql("CHECKPOINT")  # type: ignore[no-untyped-call]


def _wait_for_open_transactions(db: peewee.Database) -> None:
    """Until the other transactions of the database that began before now have ended (an autovacuum's analyze
    among them), for at most SCRUB_WAIT_SECONDS: one that runs longer keeps its copy until the next scrub."""
    [(began,)] = db.execute_sql("SELECT clock_timestamp()").fetchall()  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + SCRUB_WAIT_SECONDS
    while db.execute_sql(_OPEN_BEFORE, (began,)).fetchone()[0]:  # type: ignore[no-untyped-call]
        if time.monotonic() >= deadline:
            log.info(
                "a transaction open for over %gs may keep replaced secrets on disk until the next scrub",
                SCRUB_WAIT_SECONDS,
            )
            return
        time.sleep(0.01)


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """A write transaction; on SQLite it takes the write lock up front, so a
    read-then-write never fails halfway on another process's commit."""
    db = database.obj
    assert db is not None, "open_database() first"
    if not isinstance(db, peewee.SqliteDatabase):
        with db.atomic():
            yield
    elif db.in_transaction() or db.database == ":memory:":
        with db.atomic("IMMEDIATE"):
            yield
    else:
        with writers.turn(db.database, SQLITE_PRAGMAS["busy_timeout"] / 1000), db.atomic("IMMEDIATE"):
            yield


# Savepoints by number: each is rolled back to by its own name, whatever savepoints were left open after it.
_savepoints = itertools.count()


@contextlib.contextmanager
def savepoint() -> Iterator[None]:
    """Inside a transaction: what the block writes is undone, alone, when it raises.

    On a server database one the block got through is left open rather than released: the transaction's end
    releases it with the rest, and releasing it now would be a round trip that buys nothing, as nothing rolls
    back to it once the block is over. (SQLite runs in this process, and every savepoint left open would slow
    its writes.)
    """
    db = database.obj
    assert db is not None and db.in_transaction(), "a savepoint is taken inside a transaction"
    if isinstance(db, peewee.SqliteDatabase):
        with db.atomic():
            yield
        return
    name = f'"s{next(_savepoints)}"'
    db.execute_sql(f"SAVEPOINT {name}")  # type: ignore[no-untyped-call]
    try:
        yield
    except BaseException:
        db.execute_sql(f"ROLLBACK TO SAVEPOINT {name}")  # type: ignore[no-untyped-call]
        raise


def _close_connection(db: peewee.Database, closed: threading.Barrier) -> None:
    try:
        if not db.is_closed():
            db.close()
    finally:
        with contextlib.suppress(threading.BrokenBarrierError):
            closed.wait()


class Availability:
    """Whether the database answers, as a process's queries find it. An outage is told twice, once when the
    first query fails and once when one succeeds again (how long it lasted, how many queries failed), rather
    than at every failed query: dispatchers retry several times a second. Watchers (the process's health) hear
    of each change. Used on the event loop only."""

    def __init__(self) -> None:
        self.answering = True
        # When the last outage ended (monotonic): connections opened before then may be dead.
        self.recovered = -math.inf
        self._since = 0.0
        self._failed = 0
        self._watchers: list[Callable[[bool], None]] = []
        # A process whose server tells the same outages (a dispatcher process of `serve`) tells them at DEBUG.
        self.level = logging.WARNING

    def watch(self, watcher: Callable[[bool], None]) -> None:
        """`watcher(answering)` is called at each change."""
        self._watchers.append(watcher)

    def failed(self, error: BaseException, connected: float, counted: bool = True) -> None:
        """A query found the database unreachable on a connection opened at `connected` (monotonic);
        `counted` False for what is not a query (the dispatcher's listening connection), which may begin an
        outage but is not counted in it. A connection opened before the last outage ended is a leftover of
        it, which begins nothing."""
        if self.answering and connected < self.recovered:
            return
        if self.answering:
            self.answering = False
            self._since = time.monotonic()
            self._failed = 0
            log.log(
                self.level,
                "the database does not answer (%s); calls that need it fail with UNAVAILABLE until it does",
                _first_line(error),
            )
            self._tell()
        if counted:
            self._failed += 1

    def answered(self, connected: float) -> None:
        """A query succeeded on a connection opened at `connected` (monotonic). One opened before the outage
        began proves nothing: while a server shuts down, a connection it has yet to close still answers."""
        if self.answering or connected < self._since:
            return
        self.answering = True
        self.recovered = time.monotonic()
        log.log(
            self.level,
            "the database answers again after %.1fs; %d queries failed meanwhile",
            time.monotonic() - self._since,
            self._failed,
        )
        self._tell()

    def _tell(self) -> None:
        for watcher in self._watchers:
            watcher(self.answering)


def _first_line(error: BaseException) -> str:
    cause = error.__cause__ or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


class Executor:
    """Runs blocking queries on a few threads, each with its own connection.

    One thread on SQLite, where there is one writer anyway, more on a server
    database; the thread count bounds the connections this process opens.
    Callers of the API come in through `admit`, which bounds how many of them
    the store holds; the dispatcher uses `run`, which is never refused.
    """

    def __init__(
        self,
        db: peewee.Database,
        threads: int,
        box: SecretBox,
        availability: Availability | None = None,
        checkpoints: bool = True,
    ) -> None:
        """With `checkpoints`, and a SQLite file, the store checkpoints its write-ahead log as well."""
        self.db = db
        self.box = box
        self.availability = availability or Availability()
        self._local = threading.local()
        self.threads = threads
        self._threads_started = 0
        self._counting = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="store", initializer=self._bind_thread, initargs=(db, box)
        )
        self._api_calls = Gate(threads * API_CALLS_PER_CONNECTION, "the database")
        sqlite_file = isinstance(db, peewee.SqliteDatabase) and db.database != ":memory:"
        self._checkpoints = Checkpointer(db.database) if checkpoints and sqlite_file else None

    def _bind_thread(self, db: peewee.Database, box: SecretBox) -> None:
        """Runs first on each new query thread."""
        bind_thread(db)
        secrets.bind_thread(box)
        with self._counting:
            self._threads_started += 1

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` on a query thread, however many calls wait. For the dispatcher, whose claims, records and
        pruning are few at a time and would only delay deliveries if refused, and for pings and redeliveries,
        which the cap on calls in progress bounds."""
        loop = asyncio.get_running_loop()
        connected = [math.inf]
        try:
            result = await loop.run_in_executor(
                self._pool, functools.partial(self._guarded, connected, fn, *args, **kwargs)
            )
        except Unavailable as error:
            self.availability.failed(error, connected[0])
            raise
        except Exception:
            # Any other failure (a domain error, a constraint) is an answer from the database.
            self.availability.answered(connected[0])
            raise
        self.availability.answered(connected[0])
        return result

    def sibling(self, threads: int) -> Executor:
        """Another executor with `threads` connections of their own to the same database, with the same key,
        whose queries tell the same Availability. This one checkpoints the database for both."""
        return Executor(self.db, threads, self.box, self.availability, checkpoints=False)

    async def admit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`run` for a caller of the API, refused with ResourceExhausted when the store already holds
        API_CALLS_PER_CONNECTION such calls for each connection, running or waiting."""
        with self.admitted():
            return await self.run(fn, *args, **kwargs)

    def admitted(self) -> contextlib.AbstractContextManager[None]:
        """Holds one of the API calls `admit` bounds, or raises ResourceExhausted when none is free."""
        return self._api_calls.enter()

    def _guarded(self, connected: list[float], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn`'s result; `connected[0]` is set to when the connection it runs on was opened."""
        try:
            self._revive_idle_connection()
            if self.db.is_closed():
                self._local.connected = time.monotonic()  # `fn` opens it
            connected[0] = self._local.connected
            return fn(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as error:
            # A lost connection must not stay cached on this thread.
            if not self.db.is_closed():
                with contextlib.suppress(Exception):
                    self.db.close()
            raise Unavailable("the database is unavailable; try again", Reason.DATABASE_UNAVAILABLE) from error

    def _revive_idle_connection(self) -> None:
        """A server connection idle for a while, or opened before the last outage ended, may have died with a
        database restart: it is tried, and replaced if dead, before a call relies on it. (A call is never
        retried blindly: a failure at COMMIT could then store an event twice.)"""
        if isinstance(self.db, peewee.SqliteDatabase):
            return
        moment = time.monotonic()
        idle = moment - getattr(self._local, "used", -math.inf)
        # Stamped also when no connection is open yet: this call opens one, so a thread that has served
        # a single call is checked like any other once that call is a while ago.
        self._local.used = moment
        if self.db.is_closed():
            return
        if idle < IDLE_CHECK_SECONDS and self._local.connected >= self.availability.recovered:
            return
        try:
            self.db.execute_sql("SELECT 1")  # type: ignore[no-untyped-call]
        except (peewee.OperationalError, peewee.InterfaceError):
            with contextlib.suppress(Exception):
                self.db.close()

    def close(self) -> None:
        """Closes each query thread's connection on its thread, then ends the threads and the checkpoints.

        Left to the threads' end, a SQLite connection would stay open until the cyclic garbage collector ran (it
        refers to itself through its statement cache), and with it the database's write-ahead log.
        """
        threads = self._threads_started
        if threads:
            # Each thread waits at the barrier once it has closed its own, so no thread takes two of these.
            closed = threading.Barrier(threads, timeout=CLOSE_WAIT_SECONDS)
            with contextlib.suppress(RuntimeError):  # a pool already shut down or broken: nothing to close on
                wait([self._pool.submit(_close_connection, self.db, closed) for _ in range(threads)])
        self._pool.shutdown(wait=True)
        if self._checkpoints is not None:
            self._checkpoints.close()


class Group(Generic[Item, T]):
    """Calls of the API whose work runs together: those that arrive while their kind's work is on the query
    threads are taken together by the next `work(items)`, which answers each item with its result or the
    exception it failed alone with. A publish's cost is mostly its commit (a write and, on a server database,
    a round trip and a flush), which a group pays once.

    At most one group per query thread is in progress, so a lone call starts at once and a busy store
    gathers the calls that wait for it. Each call counts against the store's admission like `admit`'s.
    Used on the event loop only.
    """

    def __init__(self, store: Executor, work: Callable[[list[Item]], list[T | Exception]], most: int) -> None:
        self._store = store
        self._work = work
        self._most = most
        self._waiting: list[tuple[Item, asyncio.Future[T]]] = []
        self._runners = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> T:
        """`item`'s answer, once the group it went with has run (and committed); raises what it failed with."""
        with self._store.admitted():
            answer: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, answer))
            if self._runners < self._store.threads:
                self._runners += 1
                task = asyncio.create_task(self._run())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                taken, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                try:
                    results = await self._store.run(self._work, [item for item, _ in taken])
                except Exception as error:  # the group's transaction failed: every call in it did
                    results = [error] * len(taken)
                for (_, answer), result in zip(taken, results, strict=True):
                    if answer.done():  # its caller went away; its work stands
                        continue
                    if isinstance(result, Exception):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            # Counted down with no await since the loop found nothing waiting: a call that comes after it
            # starts a runner of its own. (A task's done callbacks run later, when such a call could already
            # have found every runner still counted, and waited for ever.)
            self._runners -= 1
