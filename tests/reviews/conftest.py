"""The reviews' tests run in the managed service provider's world of the tenants' tests (the home tenant read once,
the Entra simulator for the tenants they add)."""

from tests.secure_score.test_tenants import entra, msp  # noqa: F401 (fixtures)
