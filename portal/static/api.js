// One request to the connector's public API (docs/api.md): JSON in and out, a problem+json answer thrown as an
// ApiError, and an expired sign-in renewed once through App Service Authentication.

export class ApiError extends Error {
  constructor(problem, status) {
    super((problem && problem.detail) || `The connector answered ${status}.`);
    this.problem = problem || { title: "Request failed", detail: this.message };
    this.status = status;
  }
}

// A 401 sends the browser once to App Service Authentication's own sign-in, which comes back to this page. A
// second 401 right after it shows the error (with a Sign in link) instead of looping: the marker lives in this
// tab's sessionStorage until a request succeeds. Without storage, no redirect: a loop could not be ruled out.
export const SIGN_IN = "/.auth/login/aad?post_login_redirect_uri=/api/portal";
const SIGN_IN_MARK = "connector.signInRedirected";
function signInOnce() {
  try {
    if (window.sessionStorage.getItem(SIGN_IN_MARK)) return false;
    window.sessionStorage.setItem(SIGN_IN_MARK, String(Date.now()));
  } catch {
    return false;
  }
  window.location.assign(SIGN_IN);
  return true;
}
function signedIn() {
  try { window.sessionStorage.removeItem(SIGN_IN_MARK); } catch { /* no storage, no marker */ }
}

export async function api(path, options = {}, renewed = false) {
  const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest", ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method: options.method || "GET", headers, credentials: "same-origin",
      body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  } catch (failure) {
    throw new ApiError({ title: "The connector cannot be reached", detail: String(failure),
      remediation: "Check your network and reload the page." }, 0);
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.ok) { signedIn(); return data; }
  if (response.status === 401 && !renewed && data && data.reason === "token_expired") {
    const refreshed = await fetch("/.auth/refresh", { credentials: "same-origin",
      headers: { "X-Requested-With": "XMLHttpRequest" } });
    if (refreshed.ok) return api(path, options, true);
  }
  if (response.status === 401 && signInOnce()) return new Promise(() => {}); // the browser is leaving
  throw new ApiError(data, response.status);
}
