"""One open ticket per recommendation: the claim a ticket holds on its recommendation while it is open."""

from __future__ import annotations

from shared.store import TicketStore


def take_claim(store: TicketStore, recommendation_id: str, ticket_id: str) -> str | None:
    """Claim the recommendation for `ticket_id`. Returns None when it holds the claim now, else the id of the
    *open* ticket that holds it. A closed (or vanished) holder gives the claim up to the newcomer."""
    holder = store.claim_recommendation(recommendation_id, ticket_id)
    while holder is not None:
        current = store.get_ticket(holder)
        if current is not None and current[0].is_open:
            return holder
        if store.replace_claim(recommendation_id, holder, ticket_id):
            return None
        holder = store.claim_recommendation(recommendation_id, ticket_id)
    return None
