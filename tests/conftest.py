"""Shared pytest setup: fixture modules of each component are registered here."""

pytest_plugins = ["fixtures_relay", "fixtures_agent", "fixtures_otel", "fixtures_cluster"]
