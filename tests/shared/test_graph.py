"""The Microsoft Graph client against the Graph simulator, with tokens from azure-identity's real
DefaultAzureCredential and the App Service managed-identity endpoint it calls (fakes at the wire only)."""

from __future__ import annotations

import math

import httpx
import pytest

from dev.graph import GraphSimulator, ManagedIdentity
from dev.graph.simulator import PROFILES
from dev.servicenow import Fault, SimulatorTransport, serve
from shared.graph import (
    MAX_CONCURRENT,
    SECURITY_EVENTS_READWRITE_ALL,
    ControlRefused,
    GraphClient,
    ProviderWarning,
    WriteFailed,
)
from shared.problems import SecureScoreForbidden, SecureScoreUnavailable
from shared.retries import MAX_RETRY_AFTER, RetryPolicy
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
    listing = client.control_profiles()
    assert len(listing.items) == len(graph.profiles) == 300
    assert listing.pages == math.ceil(300 / graph.page_size) == 3
    assert len({p["id"] for p in listing.items}) == 300 and listing.warnings == []


def test_secure_scores_reads_the_values_and_ignores_their_next_link(client, graph):
    scores = client.secure_scores(90).items
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
    profiles = client.control_profiles().items
    assert len(profiles) == 300
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


@pytest.mark.parametrize(
    "body",
    [
        {"comment": "x"},
        {"comment": "x", "vendorInformation": {"provider": "Other", "vendor": "Microsoft"}},
        {"comment": "x", "state": "Resolved", "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}},
        {"comment": 5, "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}},
    ],
)
def test_a_patch_graph_does_not_take_is_a_write_failure_not_a_refusal(client, graph, body):
    """A 400 without a documented refusal (Graph has answered ordinary bodies with 400 and an empty code) is
    tried again by later runs, never taken as "this control cannot be written"."""
    with pytest.raises(WriteFailed, match="400"):
        client.update_control("AdminMFAV2", body)
    assert len(graph.profiles["AdminMFAV2"]["controlStateUpdates"]) == 1  # nothing was written


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


def test_a_partial_answer_is_data_with_the_failed_provider_named(client, graph):
    graph.failed_providers[("Microsoft", "MDATP")] = 503
    graph.failed_providers[("Microsoft", "MDA_Okta")] = 403
    listing = client.control_profiles()
    assert listing.items and all(p["service"] not in ("MDATP", "MDA_Okta") for p in listing.items)
    assert set(listing.warnings) == {ProviderWarning("Microsoft", "MDATP", 503, 10000),
                                     ProviderWarning("Microsoft", "MDA_Okta", 403, 10000)}  # fmt: skip
    assert client.secure_scores(1).warnings  # secureScores too: the same header, the same reading


def test_next_link_hosts_compare_case_insensitively(client, graph):
    graph.next_link_base = "https://GRAPH.Microsoft.COM"
    assert len(client.control_profiles().items) == 300


def test_a_retry_after_of_days_reaches_no_one_as_more_than_an_hour(client, graph):
    graph.inject(Fault("status", status=429, headers={"Retry-After": "999999"}, path_prefix="/v1.0/", times=10))
    with pytest.raises(SecureScoreUnavailable) as caught:
        client.secure_scores(1)
    assert caught.value.retry_after == MAX_RETRY_AFTER == 3600


def test_patch_changes_only_what_is_sent_and_keeps_a_persons_decision(client, graph):
    graph.set_state("NonOwnerAccess", "Ignored", "analyst@contoso.com")
    client.update_control(
        "NonOwnerAccess", {"comment": "ticket", "vendorInformation": {"provider": "SecureScore", "vendor": "Microsoft"}}
    )
    newest = graph.state_of("NonOwnerAccess")
    assert (newest["state"], newest["assignedTo"], newest["comment"]) == ("Ignored", "analyst@contoso.com", "ticket")
    assert newest["updatedBy"] == "6b0f6e8a-1c2d-4e3f-9a8b-7c6d5e4f3a2b"


def test_a_wrong_managed_identity_client_id_is_no_token_naming_the_setting(graph, sleeps):
    wrong = GraphClient(GRAPH, client_id="00000000-0000-0000-0000-000000000000", transport=SimulatorTransport(graph),
                        retry=RetryPolicy(base_delay=0.01, max_delay=0.05), sleep=sleeps)  # fmt: skip
    with pytest.raises(SecureScoreUnavailable, match="No token") as caught:
        wrong.secure_scores(1)
    assert "AZURE_CLIENT_ID" in (caught.value.remediation or "")
    assert graph.requests == []


def test_a_token_for_another_audience_is_refused_by_graph(graph, sleeps):
    """A wrong GRAPH_URL (a scope Graph is not) gets a token Graph refuses, not data."""
    elsewhere = GraphClient("https://graph.microsoft.us", client_id=graph.identity.client_id,
                            transport=SimulatorTransport(graph), retry=RetryPolicy(base_delay=0.01, max_delay=0.05),
                            sleep=sleeps)  # fmt: skip
    with pytest.raises(SecureScoreUnavailable, match="did not accept"):
        elsewhere.secure_scores(1)


def test_graph_refuses_an_expired_token_and_one_it_did_not_issue(graph):
    transport = SimulatorTransport(graph)
    url = f"{GRAPH}/v1.0/security/secureScores?$top=1"
    for token, said in ((graph.identity.issue(GRAPH, lifetime=-1), "expired"),
                        (ManagedIdentity().issue(GRAPH), "validation failure")):  # fmt: skip
        with httpx.Client(transport=transport) as http:
            answer = http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401 and said in answer.json()["error"]["message"]


def test_a_dripping_response_ends_at_its_deadline(graph, sleeps):
    """Headers at once, then a byte at a time: the whole response has a deadline, not each read."""
    graph.drip = 0.05
    slow = GraphClient(GRAPH, client_id=graph.identity.client_id, transport=SimulatorTransport(graph),
                       retry=RetryPolicy(base_delay=0.01, max_delay=0.05, attempts=2, deadline=0.3),
                       sleep=sleeps)  # fmt: skip
    with pytest.raises(SecureScoreUnavailable, match="timed out"):
        slow.secure_scores(1)
    assert len(graph.requests) == 2  # each attempt cut at its deadline, then given up


def test_a_dripping_server_is_cut_off_at_the_deadline(identity, sleeps):
    """Over a real socket: the watchdog shuts the connection while a read is blocked on the drip."""
    graph = GraphSimulator(identity)
    server, url = serve(graph)
    graph.drip = 0.2  # a secureScores page of 1 is thousands of bytes: minutes at this pace
    slow = GraphClient(url, client_id=identity.client_id, retry=RetryPolicy(attempts=1, deadline=0.5), sleep=sleeps)
    try:
        with pytest.raises(SecureScoreUnavailable, match="timed out"):
            slow.secure_scores(1)
        assert server.drips_started == 1 and server.drips_finished == 0
    finally:
        slow.close()
        server.shutdown()
        server.server_close()
