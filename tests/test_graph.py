"""The Microsoft Graph client against the Graph simulator, with tokens from azure-identity's real
DefaultAzureCredential and the App Service managed-identity endpoint it calls (fakes at the wire only)."""

from __future__ import annotations

import math

import pytest

from dev.graph import GraphSimulator, ManagedIdentity
from dev.graph.simulator import PROFILES
from dev.simulator import Fault, SimulatorTransport
from shared.graph import MAX_CONCURRENT, SECURITY_EVENTS_READWRITE_ALL, ControlRefused, GraphClient
from shared.problems import SecureScoreForbidden, SecureScoreUnavailable
from shared.retries import RetryPolicy
from tests.conftest import Sleeps, concurrently

GRAPH = "https://graph.microsoft.com"
BODY = {"comment": "x", "assignedTo": "", "state": "Default",
        "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}}  # fmt: skip


@pytest.fixture
def client(graph: GraphSimulator, sleeps: Sleeps) -> GraphClient:
    return GraphClient(
        GRAPH, client_id="6b0f6e8a-1c2d-4e3f-9a8b-7c6d5e4f3a2b", transport=SimulatorTransport(graph),
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05), sleep=sleeps,
    )  # fmt: skip


def test_every_next_link_is_followed_and_the_page_count_is_the_limit(client, graph):
    profiles, pages = client.control_profiles()
    assert len(profiles) == len(graph.profiles) == 66
    assert pages == math.ceil(66 / graph.page_size) == 3
    assert len({p["id"] for p in profiles}) == 66


def test_secure_scores_reads_the_values_and_ignores_their_next_link(client, graph):
    scores = client.secure_scores(90)
    assert len(scores) == 90
    assert scores[0]["createdDateTime"] > scores[-1]["createdDateTime"]
    assert len([r for r in graph.requests if r.path.endswith("/secureScores")]) == 1


def test_tokens_come_from_the_managed_identity_endpoint_and_are_cached(client, graph, identity: ManagedIdentity):
    before = identity.requests
    for _ in range(3):
        client.secure_scores(1)
    assert identity.requests - before == 1  # DefaultAzureCredential asked once, then reused its token
    assert all(r.headers["authorization"].startswith("Bearer ") for r in graph.requests)


def test_a_next_link_to_another_host_is_not_followed(client, graph):
    graph.next_link_base = "https://graph.evil.example"
    with pytest.raises(SecureScoreUnavailable, match="not followed"):
        client.control_profiles()
    assert all(r.url.startswith(GRAPH) for r in graph.requests)


def test_429_is_retried_no_sooner_than_retry_after(client, graph, sleeps):
    graph.inject(Fault("status", status=429, headers={"Retry-After": "7"}, path_prefix=PROFILES, times=2))
    profiles, _ = client.control_profiles()
    assert len(profiles) == 66
    assert len(sleeps.waits) == 2 and all(wait >= 7 for wait in sleeps.waits)  # one wait per 429, each honoured


def test_503_until_the_retries_run_out_is_secure_score_unavailable_with_retry_after(client, graph):
    graph.inject(Fault("status", status=503, path_prefix="/v1.0/", times=100))
    with pytest.raises(SecureScoreUnavailable) as caught:
        client.secure_scores(1)
    assert caught.value.retry_after and caught.value.status == 503
    assert len(graph.requests) == 5  # the policy's attempts, not more


def test_a_missing_permission_names_the_exact_grant(client, graph):
    graph.forbidden = True
    with pytest.raises(SecureScoreForbidden) as caught:
        client.secure_scores(1)
    remediation = caught.value.remediation or ""
    assert SECURITY_EVENTS_READWRITE_ALL in remediation and "6b0f6e8a-1c2d-4e3f-9a8b-7c6d5e4f3a2b" in remediation
    assert "appRoleAssignments" in remediation and "hours" in remediation


def test_a_token_graph_does_not_accept_is_unavailable_not_a_grant(client, graph):
    graph.identity = ManagedIdentity()  # Graph no longer knows the tokens the connector holds
    with pytest.raises(SecureScoreUnavailable, match="did not accept"):
        client.secure_scores(1)


def test_a_read_only_identity_is_forbidden_to_patch(client, graph):
    graph.read_only = True
    with pytest.raises(SecureScoreForbidden):
        client.update_control("AdminMFAV2", BODY)


def test_a_control_that_refuses_updates_is_control_refused(client, graph):
    with pytest.raises(ControlRefused, match="Defender portal"):
        client.update_control("scid_2016", BODY)


def test_a_patch_without_vendor_information_is_refused_by_graph(client, graph):
    with pytest.raises(ControlRefused, match="vendorInformation"):
        client.update_control("AdminMFAV2", {"comment": "x"})


@pytest.mark.parametrize("control_id", ["..", ".", "a/b", "x?y", "A" * 65, ""])
def test_a_control_id_that_could_change_the_path_is_never_sent(client, graph, control_id):
    with pytest.raises(ControlRefused):
        client.update_control(control_id, BODY)
    assert graph.requests == []


def test_at_most_four_graph_requests_are_in_flight(client, graph):
    graph.latency = 0.05
    client.secure_scores(1)  # the token first, so every thread below goes straight to Graph
    graph.max_in_flight = 0
    concurrently(16, lambda _: client.secure_scores(1))
    assert graph.max_in_flight == MAX_CONCURRENT
