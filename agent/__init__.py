"""Hotlink agent."""
