"""Publishes that arrive together are committed in one transaction, each in a savepoint of its own, and each
is answered on its own once that transaction commits."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography.fernet import Fernet

from tests import seed
from tests.helpers import get_delivery, make_webhook, publish
from tests.support.receiver import Receiver
from tests.support.running import RunningServer
from webhook_service.domain.model import Webhook
from webhook_service.domain.names import Parent
from webhook_service.domain.payloads import event_kind
from webhook_service.domain.routing import route
from webhook_service.store import events
from webhook_service.store.database import Executor, Group, open_database
from webhook_service.store.events import Publication, Published
from webhook_service.store.models import EventRow
from webhook_service.store.secrets import SecretBox
from webhooks.v1 import event_service_pb2
from webhooks_client import Client, field_violations

# Enough publishes in flight that the store, busy with one group, gathers the next.
CONCURRENT = 48
T = TypeVar("T")


def organization() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def stack_of(org: str) -> str:
    return f"organizations/{org}/projects/website/stacks/prod"


def update(org: str, serial: int) -> object:
    return seed.update_event(stack=stack_of(org), url=f"{seed.BASE}/updates/{serial}")


def all_at_once(calls: list[Callable[[], T]]) -> list[T | grpc.RpcError]:
    """Each call's answer or its gRPC error, the calls made from as many threads at once."""

    def answer(call: Callable[[], T]) -> T | grpc.RpcError:
        try:
            return call()
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(answer, calls))


def test_concurrent_publishes_are_each_stored_and_answered(client: Client, receiver: Receiver) -> None:
    org = organization()
    hook = make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}"))

    answers = all_at_once(
        [functools.partial(publish, client, update(org, n), f"update-{n}") for n in range(CONCURRENT)]  # type: ignore[arg-type]
    )

    assert not [a for a in answers if isinstance(a, grpc.RpcError)], answers
    published = [a for a in answers if isinstance(a, event_service_pb2.PublishEventResponse)]
    assert len({a.event_id for a in published}) == CONCURRENT
    assert all(len(a.deliveries) == 1 and a.deliveries[0].startswith(hook.name + "/") for a in published)
    names = [a.deliveries[0] for a in published]
    assert [get_delivery(client, name).name for name in names] == names
    received = receiver.wait_for(f"/{org}", CONCURRENT)
    assert len({r.headers["webhook-id"] for r in received}) == CONCURRENT


def test_a_reused_request_id_fails_alone_among_concurrent_publishes(client: Client, receiver: Receiver) -> None:
    org = organization()
    make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}"))
    first = publish(client, update(org, 0), "deploy-7")
    fresh = [functools.partial(publish, client, update(org, n), f"fresh-{n}") for n in range(1, 31)]
    reused = [functools.partial(publish, client, update(org, 99), "deploy-7") for _ in range(8)]
    repeated = [functools.partial(publish, client, update(org, 0), "deploy-7") for _ in range(8)]

    answers = all_at_once([*fresh, *reused, *repeated])  # type: ignore[list-item]

    fresh_answers, reused_answers, repeated_answers = answers[:30], answers[30:38], answers[38:]
    assert all(isinstance(a, event_service_pb2.PublishEventResponse) for a in fresh_answers), fresh_answers
    assert len({a.event_id for a in fresh_answers}) == 30  # type: ignore[union-attr]
    for error in reused_answers:
        assert isinstance(error, grpc.RpcError)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(field_violations(error)) == ["request_id"]
    assert repeated_answers == [first] * 8
    assert len(receiver.wait_for(f"/{org}", 31)) == 31


def test_a_publication_failing_after_its_writes_leaves_nothing_while_its_group_commits(
    server: RunningServer, client: Client, receiver: Receiver
) -> None:
    org = organization()
    make_webhook(client, f"organizations/{org}", receiver.url(f"/{org}"))
    store = server.server.store
    assert store is not None

    def publication(serial: int, misroute: bool = False) -> Publication:
        event = seed.stack_update(org, serial)
        routed = functools.partial(route, event)
        if misroute:
            # Fails once the event row is written: a webhook this stack does not have gets a delivery.
            stray = Webhook(Parent(organization()), "stray", "stray", receiver.url("/stray"), "", True)
            return Publication(event, event_kind(event), lambda _: [(stray, b"{}")], 0.0)
        return Publication(event, event_kind(event), routed, 0.0)

    answers = server.run(store.run(events.publish_all, [publication(1), publication(2, misroute=True), publication(3)]))

    good = [answers[0], answers[2]]
    assert all(isinstance(a, Published) and len(a.deliveries) == 1 for a in good), answers
    assert isinstance(answers[1], Exception)

    def stored() -> list[str]:
        return [row.event_id for row in EventRow.select().where(EventRow.organization == org)]

    assert sorted(server.run(store.run(stored))) == sorted(a.event_id for a in good)  # type: ignore[union-attr]
    assert len(receiver.wait_for(f"/{org}", 2)) == 2


def test_a_call_made_as_soon_as_the_one_before_is_answered_is_answered_too(tmp_path: Path) -> None:
    """The caller of a group's last item, woken by its answer, submits again before the runner's task has
    finished being torn down: that call must start a runner of its own, not wait for one that is gone."""
    store = Executor(open_database(f"sqlite:///{tmp_path / 'group.db'}"), 1, SecretBox(Fernet.generate_key()))
    group: Group[int, int] = Group(store, lambda items: [item * 2 for item in items], 8)

    async def one_after_another() -> list[int]:
        answers = []
        for number in range(5):
            # Awaited in this very task (asyncio.wait_for would add a task, and with it the hop that hides this).
            async with asyncio.timeout(10):
                answers.append(await group.submit(number))
        return answers

    try:
        assert asyncio.run(one_after_another()) == [0, 2, 4, 6, 8]
    finally:
        store.close()
