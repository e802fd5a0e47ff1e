"""What is never deployed: the local Functions host and `make run` (host/), the ServiceNow, Microsoft Graph and Entra ID
simulators (servicenow/, graph/, entra/, and wire/, what they share), and the project's own tools."""
