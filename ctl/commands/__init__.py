"""`hotlinkctl` command groups, each registering its subcommands on the parser.

- `common`    options every command shares, finding the agent, running a coroutine
- `sessions`  open, close, ls, get, fallback, status, send, tail, watch
- `acl`       acl grant / revoke / show (syft.pub.yaml of your own datasite)
- `peers`     peers / peers forget / peers pin (identity pins of the direct path)
"""
