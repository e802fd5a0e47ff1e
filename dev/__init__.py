"""Development tooling that is never deployed: the local Functions host and the ServiceNow simulator."""
