"""consent-gateway: enforce visitor consent on third-party tracking requests."""

__version__ = "0.1.0"
