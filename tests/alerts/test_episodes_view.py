"""The episodes `GET /api/alerts` shows (docs/alerts.md#episodes-on-the-alerts-view), against the ServiceNow and Graph
simulators: a step that failed with its code and the fix provisioning gives, a ticket a person closed while the score
is still across, an alert removed taking its episodes with it, a reader reading them."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.api import FIX
from dev.entra.tenants import FABRIKAM
from dev.servicenow import Fault
from shared.tickets import HOME
from status_sync.api import StatusSync
from tests.alerts.alerts_support import (
    ADMIN,
    INCIDENTS,
    READER,
    alert_records,
    body,
    episode,
    get_alerts,
    put_alerts,
    refresh,
    saved,
)
from tests.conftest import Harness
from tests.secure_score.test_tenants import added, entra, msp  # noqa: F401  (fixtures)
from tests.shared.test_signin import use


@pytest.fixture
def scored(connected: Harness) -> Harness:
    refresh(connected)
    return connected


def low(harness: Harness, alert_id: str = "low", margin: float = 1.0) -> dict[str, Any]:
    found = harness.services.store.get_secure_score_summary(HOME)
    assert found is not None
    return {"id": alert_id, "name": "Score low", "tenants": ["home"],
            "below": min(100.0, found["secureScore"]["percent"] + margin)}  # fmt: skip


def episodes(harness: Harness, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = get_alerts(harness, headers)
    assert response.status_code == 200, response.get_body()
    return list(body(response)["episodes"])


def test_a_step_failing_against_servicenow_shows_with_its_code_and_the_fix_provisioning_gives(scored):
    saved(scored, [low(scored)])
    scored.simulator.inject(Fault("status", status=400, path_prefix=INCIDENTS, method="POST", times=100))
    refresh(scored)
    refresh(scored)
    (shown,) = episodes(scored)
    assert (shown["alert"], shown["tenant"], shown["state"], shown["episode"], shown["ticket"]) == (
        "low", "home", "opening", 1, None)  # fmt: skip
    error = shown["error"]
    assert error["code"] == "servicenow_rejected" and error["attempts"] == 2 and error["detail"] and error["at"]
    (check,) = [c for c in body(scored.call("provisioning", path="/provisioning"))["checks"]
                if c["name"] == "score_alerts"]  # fmt: skip
    assert error["fix"] == FIX == check["remediation"] and error["detail"] in check["detail"]
    assert shown["since"] == episode(scored, "low")["since"]
    scored.simulator.faults.clear()
    refresh(scored)  # made now: open, its ticket named, the error gone
    (shown,) = episodes(scored)
    assert (shown["state"], shown["error"]) == ("open", None)
    assert shown["ticket"] == episode(scored, "low")["ticket"] and len(alert_records(scored)) == 1


def test_a_ticket_a_person_closed_while_the_score_is_across_stays_an_open_episode_naming_it(scored):
    saved(scored, [low(scored, margin=20)])
    refresh(scored)
    (record,) = alert_records(scored)
    scored.simulator.update("incident", record["sys_id"], state="7")
    StatusSync(scored.services).run()
    refresh(scored)
    (shown,) = episodes(scored)
    assert (shown["state"], shown["error"]) == ("open", None)
    ticket = body(scored.call("get_ticket", path=f"/tickets/{shown['ticket']}", route_params={"id": shown["ticket"]}))
    assert ticket["status"] == "closed" and ticket["number"] == record["number"]
    assert shown["ticketDetails"] == {"number": record["number"], "status": "closed", "url": ticket["url"]}


def test_an_episode_names_its_ticket_only_if_it_is_its_own_tenant_s(scored):
    """As the engine takes an episode's ticket (alerts/tickets.py ticket_of): an episode document naming another
    tenant's ticket shows no ticket, so the page never shows one tenant's ticket under another."""
    saved(scored, [{**low(scored), "tenants": "all"}])
    refresh(scored)
    (home,) = episodes(scored)
    other = "7d0c7b7e-5f0a-4c55-9d7e-2f1b1f4e8a01"
    document = {"alert": "low", "tenant": other, "state": "open", "episode": 1, "ticket": home["ticket"]}
    scored.services.store.put_document(f"alert-episode:{other}:low", document, None)
    shown = {e["tenant"]: (e["ticket"], e["ticketDetails"]) for e in episodes(scored)}
    (record,) = alert_records(scored)
    assert shown["home"][1] is not None and shown["home"][1]["number"] == record["number"]
    assert shown["home"][1]["status"] == "new" and shown["home"][1]["url"]
    assert shown[other] == (home["ticket"], None)


def test_an_episode_over_is_not_shown_and_an_alert_removed_takes_its_episodes_with_it(scored):
    saved(scored, [low(scored), low(scored, "other")])
    refresh(scored)
    assert sorted(e["alert"] for e in episodes(scored)) == ["low", "other"]
    assert put_alerts(scored, [{**low(scored, "other"), "below": 0}]).status_code == 200
    refresh(scored)  # `other` recovers: its episode is over
    assert episode(scored, "other")["state"] == "over" and episode(scored, "low")["state"] == "open"
    assert episodes(scored) == []


def test_a_reader_reads_the_episodes_and_the_alerts_version_and_etag_are_as_before(scored):
    saved(scored, [low(scored)])
    refresh(scored)
    use(scored, WEBSITE_AUTH_ENABLED="True", WEBSITE_SITE_NAME="func-connector")
    response = get_alerts(scored, READER)
    answer = body(response)
    assert response.status_code == 200 and [e["alert"] for e in answer["episodes"]] == ["low"]
    assert answer["episodesLeftOut"] == 0 and response.headers["ETag"] == f'"{answer["version"]}"'
    assert set(answer) == {"alerts", "version", "savedAt", "savedBy", "episodes", "episodesLeftOut"}
    assert get_alerts(scored, ADMIN).headers["ETag"] == response.headers["ETag"]


def test_at_most_1000_episodes_are_shown_the_failing_first_and_the_rest_counted(harness):
    """Many tenants under one alert (documents written as the engine writes them): the answer stays bounded, and a
    failure is never the one left out."""
    saved(harness, [{"id": "low", "tenants": "all", "below": 50}])
    store = harness.services.store
    for n in range(1003):
        since = f"2026-12-01T00:00:{n % 60:02d}+00:00"
        store.put_document(f"alert-episode:home:x{n:04d}", {}, None)  # an episode of an alert not saved: left out
        store.put_document(f"alert-episode:t{n:04d}:low", {"alert": "low", "tenant": "home" if n == 0 else f"t{n}",
                           "state": "open", "episode": 1, "since": since, "ticket": None}, None)  # fmt: skip
    failing = {"code": "servicenow_unavailable", "detail": "ServiceNow did not answer.", "attempts": 3, "at": "x"}
    store.put_document("alert-episode:home:low", {"alert": "low", "tenant": "home", "state": "opening", "episode": 2,
                                                  "since": None, "ticket": None, "error": failing}, None)  # fmt: skip
    answer = body(get_alerts(harness))
    shown = answer["episodes"]
    assert len(shown) == 1000 and answer["episodesLeftOut"] == 4
    assert shown[0]["error"] == {**failing, "fix": FIX} and all(e["error"] is None for e in shown[1:])
    assert [e["since"] for e in shown[1:]] == sorted((e["since"] for e in shown[1:]), reverse=True)


def test_a_tenant_s_failure_shows_by_its_id_and_goes_with_the_tenant_as_provisioning_s(msp, entra):  # noqa: F811
    """A tenant removed is no longer read: nothing steps its episode again, so its error would show for ever."""
    added(msp, entra, FABRIKAM)
    saved(msp, [{"id": "low", "name": "Score low", "tenants": "all", "below": 100}])
    msp.simulator.inject(Fault("status", status=400, path_prefix=INCIDENTS, method="POST", times=100))
    refresh(msp)
    failing = {e["tenant"]: e["error"]["code"] for e in episodes(msp) if e["error"]}
    assert failing == {"home": "servicenow_rejected", FABRIKAM.id: "servicenow_rejected"}
    removed = msp.call("remove_tenant", "DELETE", f"/tenants/{FABRIKAM.id}", route_params={"id": FABRIKAM.id})
    assert removed.status_code == 200, removed.get_body()
    shown = {e["tenant"]: (e["state"], e["error"]) for e in episodes(msp)}
    assert shown[FABRIKAM.id] == ("opening", None) and shown["home"][1] is not None


def test_an_episode_shows_under_the_tenant_and_alert_its_document_is_kept_for(harness):
    """The engine finds an episode by its document's name (`alert-episode:{tenant}:{alert}`): a document whose own
    members are missing or say otherwise never shows under another tenant (the home one) or another alert."""
    other = "7d0c7b7e-5f0a-4c55-9d7e-2f1b1f4e8a01"
    saved(harness, [{"id": "low", "tenants": "all", "below": 50}])
    store = harness.services.store
    store.put_document(f"alert-episode:{other}:low", {"alert": "low", "tenant": 7, "state": "open", "episode": 1,
                                                      "since": None, "ticket": None}, None)  # fmt: skip
    store.put_document("alert-episode:home:gone", {"alert": "low", "tenant": "home", "state": "open", "episode": 1,
                                                   "since": None, "ticket": None}, None)  # fmt: skip
    assert [(e["alert"], e["tenant"]) for e in episodes(harness)] == [("low", other)]


def test_an_episode_s_huge_or_odd_members_are_bounded_and_its_detail_is_one_clean_line(harness):
    """Store data: members far beyond what the engine writes never make the answer huge (1000 entries of them), and
    a detail's run of spaces or control characters is one space, so the page's words stay short."""
    saved(harness, [{"id": "low", "tenants": "all", "below": 50}])
    huge = "9" * 60_000  # one document holds at most 500000 characters
    error = {"code": huge, "detail": "ServiceNow\x00 did not" + " " * 60_000 + "answer." + "x" * 60_000,
             "attempts": 2, "at": huge}  # fmt: skip
    harness.services.store.put_document("alert-episode:home:low", {"alert": "low", "tenant": "home", "state": "open",
                                        "episode": 1, "since": huge, "ticket": huge, "error": error}, None)  # fmt: skip
    response = get_alerts(harness)
    (shown,) = body(response)["episodes"]
    assert len(response.get_body()) < 5_000
    assert shown["error"]["detail"].startswith("ServiceNow did not answer.xxx") and shown["error"]["code"]
    assert (shown["since"], shown["ticket"], shown["error"]["at"]) == (None, None, None)


def test_an_episode_s_numbers_are_what_the_answer_s_schema_says_whatever_is_stored(harness):
    """docs/openapi.yaml AlertEpisode: `episode` an integer from 0, `attempts` from 1, each one a browser reads
    exactly (at most 2**53 - 1); a stored number outside is not one."""
    saved(harness, [{"id": "low", "tenants": "all", "below": 50}, {"id": "big", "tenants": "all", "below": 50}])
    error = {"code": "servicenow_unavailable", "detail": "ServiceNow did not answer.", "at": None}
    store = harness.services.store
    store.put_document("alert-episode:home:low", {"state": "open", "episode": -3, "error": {**error, "attempts": -5}},
                       None)  # fmt: skip
    store.put_document("alert-episode:home:big", {"state": "open", "episode": 2**60, "error": {**error,
                       "attempts": 2**60}}, None)  # fmt: skip
    shown = {e["alert"]: (e["episode"], e["error"]["attempts"]) for e in episodes(harness)}
    assert shown == {"low": (0, 1), "big": (0, 1)}
