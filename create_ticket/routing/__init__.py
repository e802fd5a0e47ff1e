"""Where tickets go (docs/routes.md): the ordered rules, the one decision a create and a preview share, their
validation, the names found in ServiceNow, saving under a version, and the preview."""
