// Which view the page shows and for which Microsoft tenant: decided by view.js, read by the cards.

export const shown = {
  view: "single",  // "single" (one tenant), "overview", "tenant" (one tenant's page of several), "routes", "templates", "review"
  tenant: null,  // null on the one-tenant page, else "home" or a tenant id
};

// The tenant whose data the cards and actions show: no parameter at all on the one-tenant page.
export const scope = () => (shown.tenant ? `&tenant=${encodeURIComponent(shown.tenant)}` : "");
