"""Hotlink ctl."""
