"""ServiceNow's OAuth endpoints: `oauth_auth.do` with its consent page (and `login.do`, the "Not you?" sign-in),
`oauth_token.do` (authorization code with PKCE, refresh token), `oauth_revoke_token.do`, and the Bearer token a
Table API call carries. Sources: docs/design.md#servicenow-facts.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from typing import Any
from urllib.parse import urlencode

from dev.servicenow.state import Grant, InstanceState, OAuthClient
from dev.wire.messages import SimRequest, SimResponse
from dev.wire.redirects import local_target

TOKEN_DENIED = {"error_description": "access_denied", "error": "server_error"}


class OAuthServer(InstanceState):
    """The instance's OAuth 2.0 authorization server."""

    def _authorize(self, request: SimRequest) -> SimResponse:
        params = request.query if request.method == "GET" else request.form()
        client = self.clients.get(params.get("client_id", ""))
        if params.get("response_type") != "code" or client is None:
            return _page(400, "Invalid request", "Unknown client_id or unsupported response_type.")
        if not params.get("state"):
            return _page(400, "Error", "Missing State parameter in request")
        redirect = params.get("redirect_uri", "")
        if redirect not in client.redirect_uris:
            redirect = client.redirect_uris[0]  # ServiceNow falls back to the first registered URL
        if request.method == "POST":
            if params.get("action") != "allow":
                return _redirect(
                    redirect,
                    {"error": "access_denied", "error_description": "User denied access", "state": params["state"]},
                )
            return self._issue_code(client, redirect, params)
        if self.auto_approve:
            return self._issue_code(client, redirect, params)
        user = self.tables["sys_user"][self.signed_in_user]
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        not_you = "/login.do?" + urlencode({"next": "/oauth_auth.do?" + urlencode(params)})
        body = (
            f"<!doctype html><html><head><title>Authorize {html.escape(client.name)}</title></head><body>"
            f"<p>Signed in as <b>{html.escape(user['name'])}</b> ({html.escape(user['user_name'])}) "
            f'<a id="not-you" href="{html.escape(not_you)}">Not you?</a></p>'
            f"<h1>{html.escape(client.name)} would like to connect to your ServiceNow account</h1>"
            f'<form method="post" action="/oauth_auth.do">{hidden}'
            f'<button name="action" value="allow" id="allow">Allow</button> '
            f'<button name="action" value="deny" id="deny">Deny</button></form></body></html>'
        )
        return SimResponse(200, {"Content-Type": "text/html;charset=UTF-8"}, body.encode())

    def _login(self, request: SimRequest) -> SimResponse:
        """Sign in as another user (the 'Not you?' link): pick a user, then back to where the link came from."""
        params = request.query if request.method == "GET" else request.form()
        target = local_target(params.get("next"), "/")  # never an open redirector
        if request.method == "POST" and params.get("user") in self.tables["sys_user"]:
            self.signed_in_user = params["user"]
            return SimResponse(302, {"Location": target})
        options = "".join(
            f'<option value="{html.escape(u["sys_id"])}">{html.escape(u["name"])} ({html.escape(u["user_name"])})'
            "</option>"
            for u in self.tables["sys_user"].values()
        )
        body = (
            "<!doctype html><html><head><title>Log in</title></head><body><h1>ServiceNow sign-in</h1>"
            f'<form method="post" action="/login.do"><input type="hidden" name="next" value="{html.escape(target)}">'
            f'<select name="user">{options}</select> <button id="login">Log in</button></form></body></html>'
        )
        return SimResponse(200, {"Content-Type": "text/html;charset=UTF-8"}, body.encode())

    def _issue_code(self, client: OAuthClient, redirect: str, params: dict[str, str]) -> SimResponse:
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = {
                "client_id": client.client_id,
                "redirect_uri": redirect,
                "challenge": params.get("code_challenge"),
                "method": params.get("code_challenge_method"),
                "user": self.signed_in_user,
                "expires": self.clock() + 60,
            }
        return _redirect(redirect, {"code": code, "state": params["state"]})

    def _token(self, request: SimRequest) -> SimResponse:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return SimResponse.json(400, {"error": "server_error", "error_description": "invalid content type"})
        form = request.form()
        client = self.clients.get(form.get("client_id", ""))
        if client is None or form.get("client_secret") != client.client_secret:
            return SimResponse.json(401, TOKEN_DENIED)
        grant_type = form.get("grant_type")
        with self.lock:
            if grant_type == "authorization_code":
                entry = self.codes.pop(form.get("code", ""), None)
                if (
                    entry is None
                    or entry["client_id"] != client.client_id
                    or entry["expires"] < self.clock()
                    or entry["redirect_uri"] != form.get("redirect_uri")
                    or not _pkce_ok(entry, form.get("code_verifier"))
                ):
                    return SimResponse.json(401, TOKEN_DENIED)
                current = [
                    token
                    for token, grant in self.refresh_tokens.items()
                    if grant.user_sys_id == entry["user"] and grant.client_id == client.client_id and not grant.revoked
                ]
                if self.reuse_refresh_token and current:
                    return self._access(client, entry["user"], current[-1], reuse=True)
                refresh = secrets.token_urlsafe(48)
                self.refresh_tokens[refresh] = Grant(entry["user"], client.client_id, self.clock() + client.refresh_ttl)
                return self._access(client, entry["user"], refresh)
            if grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                grant = self.refresh_tokens.get(refresh)
                if (
                    grant is None
                    or grant.revoked
                    or grant.client_id != client.client_id
                    or grant.expires < self.clock()
                ):
                    return SimResponse.json(401, TOKEN_DENIED)
                # The same refresh token comes back; so does the current access token while it is valid
                # ("access requests made within the expiration time ... return the current access token").
                return self._access(client, grant.user_sys_id, refresh, reuse=True)
        return SimResponse.json(401, TOKEN_DENIED)

    def _access(self, client: OAuthClient, user: str, refresh: str, *, reuse: bool = False) -> SimResponse:
        now = self.clock()
        current = self.current_access.get(refresh) if reuse else None
        grant = self.access_tokens.get(current or "")
        if current is None or grant is None or grant.revoked or grant.expires <= now:
            current = secrets.token_urlsafe(48)
            grant = Grant(user, client.client_id, now + client.access_ttl)
            self.access_tokens[current] = grant
            self.current_access[refresh] = current
        return SimResponse.json(
            200,
            {
                "access_token": current,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": max(int(grant.expires - now) - 1, 0),
            },
        )

    def _revoke(self, request: SimRequest) -> SimResponse:
        # Only the documented form: "append the access or refresh token" as `?token=` (t_RevokeOAuthToken). A token
        # in a form body is not documented, so it revokes nothing here (the stricter reading).
        token = request.query.get("token", "")
        with self.lock:
            for store in (self.access_tokens, self.refresh_tokens):
                if token in store:
                    store[token].revoked = True
        return SimResponse(200, {"Content-Type": "text/plain"}, b"")

    def revoke_all(self) -> None:
        """What an admin deleting the oauth_credential rows does."""
        with self.lock:
            for grant in [*self.access_tokens.values(), *self.refresh_tokens.values()]:
                grant.revoked = True

    def _caller(self, request: SimRequest) -> str | None:
        """The user a valid Bearer token was granted to, or None."""
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        grant = self.access_tokens.get(auth[7:])
        if grant is None or grant.revoked or grant.expires < self.clock():
            return None
        return grant.user_sys_id


def _pkce_ok(entry: dict[str, Any], verifier: str | None) -> bool:
    if not entry.get("challenge"):
        return True
    if entry.get("method") != "S256" or not verifier:
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return secrets.compare_digest(digest, entry["challenge"])


def _redirect(target: str, params: dict[str, str]) -> SimResponse:
    separator = "&" if "?" in target else "?"
    return SimResponse(302, {"Location": target + separator + urlencode(params)})


def _page(status: int, title: str, message: str) -> SimResponse:
    body = f"<html><head><title>{html.escape(title)}</title></head><body><p>{html.escape(message)}</p></body></html>"
    return SimResponse(status, {"Content-Type": "text/html;charset=UTF-8"}, body.encode())
