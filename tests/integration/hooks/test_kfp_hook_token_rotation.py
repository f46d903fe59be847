"""A token file rotated while a request is on its way: the 401 is answered by sending it once more.

A projected token is swapped by the kubelet at any moment; a request that read the file just
before the swap reaches the server with a token it no longer accepts (the stand-in accepts only
the file's current content). Which instant the swap lands on cannot be arranged from outside, so
the test swaps the file right after the hook has read it: everything else is the real hook, the
real clients (kfp_server_api, httpx) and the real stand-in.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from kfp_bridge.hooks.kfp import KfpApiError, KfpHook
from kfp_bridge.utils.kfp_connection import TokenSource

pytestmark = pytest.mark.integration


@pytest.fixture
def kfp_conn(kfp_connection) -> str:
    return kfp_connection("kfp_rotation")


@pytest.fixture
def rotate_after_next_read(kfp_stand_in, monkeypatch):
    """Arm: the next token read returns the current token, then the file is swapped for a new one."""
    real_read = TokenSource.read
    armed = [False]

    def read(self: TokenSource) -> str | None:
        token = real_read(self)
        if armed[0]:
            armed[0] = False
            kfp_stand_in.rotate_token(f"rotated-{secrets.token_hex(8)}")
        return token

    monkeypatch.setattr(TokenSource, "read", read)

    def arm() -> None:
        armed[0] = True

    return arm


LIST = "GET /apis/v2beta1/runs"


def _list_requests(kfp_stand_in) -> int:
    return kfp_stand_in.stats()["requests"].get(LIST, 0)


def test_sync_call_rotated_in_flight_is_sent_again_and_succeeds(kfp_stand_in, kfp_conn, rotate_after_next_read):
    hook = KfpHook(kfp_conn_id=kfp_conn)
    hook.list_runs(page_size=1)  # the client is built and the token read once
    kfp_stand_in.reset_stats()
    rotate_after_next_read()
    assert isinstance(hook.list_runs(page_size=1), list)
    assert _list_requests(kfp_stand_in) == 2  # the 401 with the old token, then the new token


def test_async_call_rotated_in_flight_is_sent_again_and_succeeds(kfp_stand_in, kfp_conn, rotate_after_next_read):
    async def main():
        hook = KfpHook(kfp_conn_id=kfp_conn)
        try:
            await hook.alist_runs(page_size=1)
            await asyncio.to_thread(kfp_stand_in.reset_stats)
            rotate_after_next_read()
            return await hook.alist_runs(page_size=1)
        finally:
            await hook.aclose()

    body = asyncio.run(main())
    assert isinstance(body, dict)  # a ListRuns page
    assert _list_requests(kfp_stand_in) == 2


def test_a_token_that_is_simply_wrong_fails_at_once_without_a_second_request(kfp_stand_in, kfp_connection, tmp_path):
    stale = tmp_path / "stale-token"
    stale.write_text("not-the-token\n")
    conn_id = kfp_connection("kfp_stale", token_path=stale)
    kfp_stand_in.reset_stats()
    with pytest.raises(KfpApiError) as info:
        KfpHook(kfp_conn_id=conn_id).list_runs(page_size=1)
    assert info.value.status == 401
    assert "not-the-token" not in str(info.value)
    assert _list_requests(kfp_stand_in) == 1
