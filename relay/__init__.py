"""Hotlink relay."""
