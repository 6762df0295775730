"""The pure rules that make a receiver's answer fit to store and show."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from webhook_service.domain.responses import TRUNCATED, cap_headers, printable, printable_bytes


def test_bytes_that_are_not_utf8_become_escapes() -> None:
    raw = b"caf\xe9 \xff na\xc3\xafve"
    assert printable(raw.decode("utf-8", "surrogateescape")) == "caf\\xe9 \\xff naïve"
    assert printable_bytes(raw) == raw.decode("utf-8", "backslashreplace")


def test_other_lone_surrogates_and_nul_become_escapes() -> None:
    assert printable("a\ud800b\x00c") == "a\\ud800b\\x00c"
    assert printable("plain text, ünïcödé, 🍹, \t\n") == "plain text, ünïcödé, 🍹, \t\n"


def test_repeated_headers_are_joined_under_their_first_spelling() -> None:
    headers = [("Set-Cookie", "a=1"), ("X-Bad\udcff", "v\udcfe"), ("set-cookie", "b=2")]
    assert cap_headers(headers) == {"Set-Cookie": "a=1, b=2", "X-Bad\\xff": "v\\xfe"}


def test_headers_past_the_limit_are_left_out_and_counted() -> None:
    headers = [("A", "1"), ("Big", "x" * 200), ("B", "2"), ("Bigger", "y" * 300)]
    assert cap_headers(headers, limit=300) == {
        "A": "1",
        "B": "2",
        TRUNCATED: "2 headers left out, past the 300-byte limit",
    }


# Surrogates included: the delivery client hands over bytes that are not UTF-8 as lone surrogates.
any_text = st.characters(exclude_categories=())
headers = st.lists(st.tuples(st.text(any_text, max_size=20), st.text(any_text, max_size=3000)), max_size=30)


@given(headers)
def test_stored_headers_are_valid_text_within_the_limit_and_capping_again_changes_nothing(
    pairs: list[tuple[str, str]],
) -> None:
    stored = cap_headers(pairs, limit=4096)
    assert sum(len(f"{name}{value}".encode()) for name, value in stored.items()) <= 4096
    assert cap_headers(stored.items(), limit=4096) == stored
