// What the signed-in user may do, from their app roles (GET /api/me): the page offers only what they may do.

export const ADMIN = "Connector.Admin";
export const CREATE = "Tickets.Create";

let roles = new Set();

export const can = (role) => roles.has(role);

export function grant(list) {
  roles = new Set(list || []);
}
