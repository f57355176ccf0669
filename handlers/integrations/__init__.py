"""Consumers that hand events to systems outside the platform (webhooks)."""
