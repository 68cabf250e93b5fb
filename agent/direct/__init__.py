"""The direct peer-to-peer path between two agents (docs/design.md "Direct path")."""
