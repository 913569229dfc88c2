"""Admission: the instance cap, the tenant cap, draining, and slots freed exactly once."""

from __future__ import annotations

import asyncio

import pytest

from app.admission import Admission
from app.errors import GatewayError
from app.tenants import Tenant

ACME = Tenant("acme", max_concurrent_requests=2, max_tokens=100)
GLOBEX = Tenant("globex", max_concurrent_requests=5, max_tokens=100)


def test_caps_and_reasons() -> None:
    shed: list[str] = []
    ongoing: list[int] = []
    admission = Admission(3, retry_after_s=2, on_shed=shed.append, on_change=ongoing.append)
    tickets = [admission.admit(ACME), admission.admit(ACME)]
    with pytest.raises(GatewayError) as refused:
        admission.admit(ACME)
    assert (refused.value.status, refused.value.retry_after_s) == (429, 2)
    tickets.append(admission.admit(GLOBEX))
    with pytest.raises(GatewayError) as full:
        admission.admit(GLOBEX)
    assert full.value.status == 503
    assert shed == ["tenant_limit", "instance_full"]
    tickets[0].release()
    tickets[0].release()  # a second release changes nothing
    assert admission.ongoing == 2 and admission.tenant_ongoing("acme") == 1
    assert ongoing == [1, 2, 3, 2]


def test_draining_refuses_everyone_and_wait_idle_returns_when_the_last_leaves() -> None:
    async def scenario() -> None:
        admission = Admission(10, retry_after_s=1)
        ticket = admission.admit(ACME)
        admission.draining = True
        with pytest.raises(GatewayError) as refused:
            admission.admit(GLOBEX)
        assert refused.value.status == 503 and "draining" in refused.value.message
        waiter = asyncio.ensure_future(admission.wait_idle())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        ticket.release()
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def test_the_peak_between_two_reads_is_kept() -> None:
    admission = Admission(10, retry_after_s=1)
    assert admission.take_peak() == 0
    tickets = [admission.admit(GLOBEX) for _ in range(4)]
    for ticket in tickets[1:]:
        ticket.release()
    # Four were in flight at once, though one is now: the sampler sees the four.
    assert (admission.ongoing, admission.take_peak()) == (1, 4)
    # The next read starts from what is in flight then.
    assert admission.take_peak() == 1
    tickets[0].release()
    assert admission.take_peak() == 1
    assert admission.take_peak() == 0


def test_a_request_weighs_its_sequences_on_both_caps() -> None:
    # GIVEN acme may run 2 sequences, the instance 5
    shed: list[str] = []
    admission = Admission(5, retry_after_s=1, on_shed=shed.append)
    # WHEN acme asks for 2 prompts at once, then 1 more
    two = admission.admit(ACME, cost=2)
    assert (admission.ongoing, admission.tenant_ongoing("acme")) == (2, 2)
    with pytest.raises(GatewayError) as refused:
        admission.admit(ACME)
    # THEN the tenant is full after one request; the instance counts the two sequences
    assert refused.value.status == 429 and "2 sequences" in refused.value.message
    three = admission.admit(GLOBEX, cost=3)
    with pytest.raises(GatewayError) as full:
        admission.admit(GLOBEX)
    assert full.value.status == 503
    assert shed == ["tenant_limit", "instance_full"]
    two.release()
    two.release()
    assert (admission.ongoing, admission.tenant_ongoing("acme")) == (3, 0)
    three.release()
    assert admission.ongoing == 0 and admission.take_peak() == 5
