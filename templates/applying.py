"""Preview and apply a template (docs/templates.md): per tenant, read each control's state from Graph, decide, and
PATCH only what changes, one PATCH per change.

The rules, each kept here (docs/templates.md#the-rules):
- A tenant the connector does not read now (the home tenant paused; an added one pending, confirming, paused or
  removed) is not written: it is named in `failed` with a stable code, and the others go on.
- Drift: a control whose state differs from what this template last wrote there (a person changed it in the Secure
  Score portal) is never set back unless the apply says `overwriteDrift`; it is answered in `drifted`.
- Exactly once: the intent is stored before each PATCH (templates/records.py); an apply that finds a pending intent
  takes Graph's state as the truth and does not PATCH a state that is there already.
- One apply of a template per tenant at a time (the tenant's lease); at most `MAX_CONCURRENT` requests in flight per
  tenant, tenants in parallel; every Graph call has the client's deadline and the apply as a whole the run's
  (`Services.run_deadline`): what is not done by then is named in `failed` (`deadline_exceeded`), what is done is
  recorded.

`apply_tenant` is one tenant's whole apply: the seam a queue message can call when many tenants fan out
(docs/templates.md#bounded-work).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from secure_score.api import VENDOR, current_update, is_note, is_risk_acceptance, last_change, state_of
from shared import deadlines, tenant_records
from shared.graph import MAX_CONCURRENT
from shared.problems import ConnectorError, SecureScoreForbidden
from shared.services import Services
from shared.store import StoreConflict
from shared.tickets import HOME
from templates import records
from templates.model import HOME_ID, TEMPLATE_MARK, Template
from templates.saving import load_all, version_of

TENANTS_AT_ONCE = 8  # tenants applied in parallel; each has its own 4 requests in flight at most
LEASE_MARGIN = 60.0  # seconds a tenant's lease outlasts the apply's deadline
MAX_LISTED = 2000  # entries of each list an answer holds


@dataclass
class Outcome:
    """What an apply (or a preview) found and did; tenants' outcomes are added up with `add`."""

    applied: int = 0
    unchanged: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    drifted: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.applied += other.applied
        self.unchanged += other.unchanged
        for name in ("failed", "drifted", "changes", "missing"):
            getattr(self, name).extend(getattr(other, name))

    def fail(self, tenant: str, control: str | None, code: str, detail: str) -> None:
        self.failed.append({"tenant": tenant, "control": control, "code": code, "detail": detail})

    def applied_json(self) -> dict[str, Any]:
        return listed({"applied": self.applied, "unchanged": self.unchanged}, failed=self.failed,
                       drifted=self.drifted)  # fmt: skip

    def preview_json(self) -> dict[str, Any]:
        return listed({}, changes=self.changes, missing=self.missing, drifted=self.drifted, failed=self.failed)


def listed(answer: dict[str, Any], **lists: list[dict[str, Any]]) -> dict[str, Any]:
    """An answer's lists, each at most MAX_LISTED long: 500 controls in 2,000 tenants would otherwise make an answer of
    a million entries. A list that was cut is counted whole in `listedOf` (the records keep every control)."""
    cut = {name: len(items) for name, items in lists.items() if len(items) > MAX_LISTED}
    answer.update({name: items[:MAX_LISTED] for name, items in lists.items()})
    return {**answer, "listedOf": cut} if cut else answer


def tenants_of(services: Services, template: Template) -> list[str]:
    """The tenants a template names now: `all` is the home tenant and every added tenant not removed."""
    if template.tenants is not None:
        return list(template.tenants)
    return [HOME_ID, *(t for t in tenant_records.readable(services.store) if t != HOME)]


def not_written(
    services: Services, tenant: str, document: tenant_records.Tenants | None = None
) -> tuple[str, str] | None:
    """Why a tenant is not written now (a code and a sentence), or None when it is (`document`: the tenants as read
    already)."""
    document = document or tenant_records.registrations(services.store)
    if tenant == HOME_ID:
        return ("tenant_paused", "The home tenant is paused: the connector does not read or write it.") if (
            document.home_state == "paused") else None  # fmt: skip
    record = document.added.get(tenant)
    if record is None or record.removed:
        return "tenant_removed", "The tenant was removed from the connector: nothing is written there."
    if record.state == "paused":
        return "tenant_paused", "The tenant is paused: the connector does not read or write it."
    if not record.active:
        return "tenant_not_consented", "The tenant's admin has not completed consent: nothing can be written there."
    return None


def _graph_tenant(tenant: str) -> str:
    return HOME if tenant == HOME_ID else tenant


def read_states(services: Services, tenant: str, controls: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each of `controls` the tenant has, as Graph holds it now (one listing, paged): its `state`, who set it and when
    (`by`, `at`: the entry where the state last changed, not a later note), and whether that was the connector
    itself (`ours`: its own app, a write-back note or a template's note), never a person's decision (a risk accepted
    in ServiceNow is one, though the connector's app wrote it)."""
    wanted = set(controls)
    found: dict[str, dict[str, Any]] = {}
    claims = services.graph.token_claims(_graph_tenant(tenant)) or {}
    app = claims.get("appid") or claims.get("azp")
    for profile in services.graph.control_profiles(tenant=_graph_tenant(tenant)).items:
        control = profile.get("id")
        if isinstance(control, str) and control in wanted:
            update, changed = current_update(profile), last_change(profile)
            comment = changed.get("comment")
            ours = bool(changed) and not is_risk_acceptance(comment) and (
                (app is not None and changed.get("updatedBy") == app) or is_note(comment)
                or (isinstance(comment, str) and TEMPLATE_MARK in comment))  # fmt: skip
            found[control] = {"state": state_of(update) if update else "Default", "by": changed.get("updatedBy"),
                              "at": changed.get("updatedDateTime"), "ours": ours}  # fmt: skip
    return found


def _later(seen: Any, intent: Any) -> bool:
    """Graph's `updatedDateTime` is after the intent's `at` (both ISO 8601; unreadable: not after)."""
    try:
        return datetime.fromisoformat(str(seen).replace("Z", "+00:00")) > datetime.fromisoformat(str(intent))
    except (TypeError, ValueError):
        return False


@dataclass
class Plan:
    """One tenant's decisions: the intents to write before PATCHing, and the records and drift to keep."""

    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def plan(template: Template, version: str, tenant: str, states: dict[str, dict[str, Any]],
         stored: dict[str, dict[str, Any]], overwrite: bool, by: str | None, at: str,
         outcome: Outcome) -> Plan:  # fmt: skip
    decided = Plan()
    for control in template.controls:
        until, days = template.ends(control, at)  # `days`: what the end came from, kept to see it change
        if until is not None and until <= at:  # its own `until` has passed: the exception is over, nothing is written
            continue
        now = states.get(control)
        if now is None:
            outcome.missing.append({"tenant": tenant, "control": control})
            continue
        state, record = now["state"], stored.get(control)
        if record is not None and record.get("status") in (records.PENDING, records.FAILED):
            if state == record.get("after"):  # the earlier PATCH landed (its answer was lost, or the run stopped)
                record = {**record, "status": records.DONE}
                decided.records[control] = record
            elif state == record.get("before") and not now["ours"] and _later(now["at"], record.get("at")):
                # it landed (its answer was lost), then a person set the state back after the intent: drift
                record = {**record, "status": records.DONE}
            elif state == record.get("before"):  # it never landed: as if never written
                record = None
        wrote = None if record is None else record.get("after")
        # Drift: a person changed what this template wrote, or (no record) had decided a state of their own before
        # it. A state the connector itself set last (a write-back's PATCH re-sends the state it read, which can land
        # after this template's write) is no person's decision: set back without overwriteDrift.
        decided_before = wrote is None and state not in ("Default", template.state)
        if ((wrote is not None and state != wrote) or decided_before) and not overwrite and not now["ours"]:
            seen = {"state": state, "by": now["by"], "at": now["at"]}
            outcome.drifted.append({"tenant": tenant, "control": control, **seen})
            decided.drift[control] = seen
            continue
        decided.drift[control] = None
        if state == template.state:
            outcome.unchanged += 1
            if record is not None and record.get("after") == state and record.get("days", days) == days:
                # the same decision: its first `at` and `until` stand (a rename is no new exception); a changed
                # `expiresInDays`, or a changed `until` of this control, starts it again
                if record.get("version") != version or record.get("status") != records.DONE:
                    decided.records[control] = {**record, "version": version, "status": records.DONE, "days": days}
            else:
                decided.records[control] = {"before": state, "after": state, "version": version, "by": by, "at": at,
                                            "status": records.DONE, "until": until, "days": days}  # fmt: skip
            continue
        outcome.changes.append({"tenant": tenant, "control": control, "before": state, "after": template.state})
        decided.intents[control] = {"before": state, "after": template.state, "version": version, "by": by,
                                    "at": at, "status": records.PENDING, "until": until, "days": days}  # fmt: skip
        if wrote is not None and state != wrote:  # set back: the record says from what, and who had set it
            decided.intents[control]["restored"] = {"state": state, "by": now["by"], "at": now["at"]}
    return decided


def preview_tenant(services: Services, template: Template, version: str, tenant: str,
                   registered: tenant_records.Tenants | None = None, overwrite: bool = False) -> Outcome:  # fmt: skip
    outcome = Outcome()
    refused = not_written(services, tenant, registered)
    if refused is not None:
        outcome.fail(tenant, None, *refused)
        return outcome
    try:
        states = read_states(services, tenant, template.controls)
    except ConnectorError as exc:
        outcome.fail(tenant, None, exc.code, exc.detail)
        return outcome
    except deadlines.RunOutOfTime:  # a 500 otherwise (docs/design.md, section 11: never a 500)
        outcome.fail(tenant, None, "deadline_exceeded", "The preview reached its deadline before this tenant was read; "
                     "preview again.")  # fmt: skip
        return outcome
    stored = records.controls_of(records.load(services.store, template.id, tenant))
    plan(template, version, tenant, states, stored, overwrite, None, services.clock().isoformat(), outcome)
    return outcome


def apply_tenant(services: Services, template: Template, version: str, tenant: str, caller: str | None,
                 overwrite: bool = False, registered: tenant_records.Tenants | None = None) -> Outcome:  # fmt: skip
    """One tenant's apply, whole: lease, read, intents, PATCHes, records. Safe to run again (a queue redelivery).
    `registered`: the tenants as read already (one read for many tenants)."""
    outcome = Outcome()
    refused = not_written(services, tenant, registered)
    if refused is not None:
        outcome.fail(tenant, None, *refused)
        return outcome
    left = deadlines.run_left()
    if left is not None and left <= 0:  # the apply's deadline passed before this tenant's turn: nothing touched
        outcome.fail(tenant, None, "deadline_exceeded", "The apply reached its deadline before this tenant's turn; "
                     "apply again to write it.")  # fmt: skip
        return outcome
    store, run, now = services.store, uuid.uuid4().hex, services.clock()
    try:
        records.take_lease(store, template.id, tenant, run, now, services.run_deadline + LEASE_MARGIN)
    except (records.LeaseHeld, StoreConflict):
        outcome.fail(tenant, None, "apply_in_progress", "Another apply of this template is writing this tenant now; "
                     "its answer says what it wrote.")  # fmt: skip
        return outcome
    current = load_all(store).get(template.id)  # after the lease: a removal or a PUT either sees it or is seen here
    if current is None or version_of(current) != version:
        if current is None:  # removed: its records go with it (this lease is ours)
            store.delete_document(records.name(template.id, tenant))
        else:
            with contextlib.suppress(records.LeaseHeld, StoreConflict):
                records.write(store, template.id, tenant, run, {}, {}, release=True)
        code, detail = ("template_removed", "The template was removed: nothing was written.") if current is None else (
            "template_changed", "The template changed since this apply read it: nothing was written. Preview the "
            "current version, then apply it.")  # fmt: skip
        outcome.fail(tenant, None, code, detail)
        return outcome
    decided = Plan()
    try:
        states = read_states(services, tenant, template.controls)
        paused = not_written(services, tenant)  # read again (one store read): paused or removed while it was read
        if paused is not None:
            outcome.fail(tenant, None, *paused)
            raise _Stop
        stored = records.controls_of(records.load(store, template.id, tenant))
        decided = plan(template, version, tenant, states, stored, overwrite, caller, now.isoformat(), outcome)
        outcome.changes.clear()
        records.write(store, template.id, tenant, run, {**decided.records, **decided.intents}, decided.drift)
        _patch_all(services, template, tenant, decided, outcome)
    except (ConnectorError, deadlines.RunOutOfTime) as exc:
        code, detail = (exc.code, exc.detail) if isinstance(exc, ConnectorError) else (
            "deadline_exceeded", "The apply reached its deadline before this tenant was read.")  # fmt: skip
        outcome.fail(tenant, None, code, detail)
    except records.LeaseHeld:
        outcome.fail(tenant, None, "apply_in_progress", "Another apply took this tenant over; nothing was written.")
        return outcome
    except _Stop:
        pass
    except StoreConflict:
        outcome.fail(tenant, None, "conflict", "The tenant's records kept changing; nothing was written. Apply again.")
    # The lease ran out and another apply took it (its records stand), or the store kept changing: an intent left
    # pending is resolved by the next apply, from what Graph holds.
    with contextlib.suppress(records.LeaseHeld, StoreConflict):
        records.write(store, template.id, tenant, run, decided.records, {}, release=True)
    return outcome


class _Stop(Exception):
    """The tenant is not written any more (paused or removed during the apply): nothing more is sent there."""


def _patch_all(services: Services, template: Template, tenant: str, decided: Plan, outcome: Outcome) -> None:
    """One PATCH per intent, at most MAX_CONCURRENT at once; each outcome goes to `decided.records`."""
    graph, target = services.graph, _graph_tenant(tenant)
    body = {"state": template.state, "comment": template.note(), "vendorInformation": dict(VENDOR)}
    refused = threading.Event()  # the tenant refused a write (403): the rest are not sent, as the write-back stops
    counted = threading.Lock()  # `applied` is added to from MAX_CONCURRENT threads

    def one(control: str) -> None:
        intent = decided.intents[control]
        sent = [False]
        if refused.is_set():
            decided.records[control] = {**intent, "status": records.FAILED, "code": SecureScoreForbidden.code}
            outcome.fail(tenant, control, SecureScoreForbidden.code, "Not sent: the tenant refused an earlier write "
                         "of this apply (the grant cannot write); apply again once it can.")  # fmt: skip
            return

        def once() -> bool:
            if sent[0]:  # a retry: read first, so a PATCH whose answer was lost is not sent twice
                profile = graph.control_profile(control, tenant=target, retry=False)
                if state_of(current_update(profile)) == intent["after"]:
                    return False
            deadlines.check_run()
            sent[0] = True
            graph.update_control(control, body, tenant=target, retry=False)
            return True

        try:
            graph.retried(once)
        except ConnectorError as exc:
            if isinstance(exc, SecureScoreForbidden):
                refused.set()
            decided.records[control] = {**intent, "status": records.FAILED, "code": exc.code}
            outcome.fail(tenant, control, exc.code, exc.detail)
            return
        except deadlines.RunOutOfTime:
            outcome.fail(tenant, control, "deadline_exceeded", "The apply reached its deadline before this control "
                         "was written; apply again to write it.")  # fmt: skip
            return
        decided.records[control] = {**intent, "status": records.DONE}
        with counted:
            outcome.applied += 1

    with ThreadPoolExecutor(MAX_CONCURRENT) as pool:  # each job carries the run's deadline in a context of its own
        jobs = [pool.submit(deadlines.in_this_run(one), control) for control in decided.intents]
    for job in jobs:
        job.result()


def _each_tenant(services: Services, template: Template, work: Any) -> Outcome:
    total = Outcome()
    chosen = tenants_of(services, template)
    with deadlines.run_deadline(services.run_deadline), ThreadPoolExecutor(TENANTS_AT_ONCE) as tokens, \
            ThreadPoolExecutor(TENANTS_AT_ONCE) as pool:  # fmt: skip
        # Each tenant's token is asked for ahead of its reads, as the refresh does (secure_score/refresh.py), so a
        # tenant waits on Graph alone; a failure is left to the tenant's own first read, which reports it.
        registered = tenant_records.registrations(services.store)
        for tenant in chosen:
            if not_written(services, tenant, registered) is None:
                tokens.submit(deadlines.in_this_run(services.graph.prepare_token), _graph_tenant(tenant))
        jobs = [pool.submit(deadlines.in_this_run(work), tenant, registered) for tenant in chosen]
    for job in jobs:
        total.add(job.result())
    return total


def preview(services: Services, template: Template, version: str, overwrite: bool = False) -> Outcome:
    def one(tenant: str, registered: tenant_records.Tenants) -> Outcome:
        return preview_tenant(services, template, version, tenant, registered, overwrite)

    return _each_tenant(services, template, one)


def apply(services: Services, template: Template, version: str, caller: str | None, overwrite: bool) -> Outcome:
    def one(tenant: str, registered: tenant_records.Tenants) -> Outcome:
        return apply_tenant(services, template, version, tenant, caller, overwrite, registered)

    return _each_tenant(services, template, one)
