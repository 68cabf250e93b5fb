"""Hotlink ctl: the app client library and `hotlinkctl`.

Library (what apps import):
- `client`       `from hotlink.ctl.client import Stream, AgentClient`: both halves below
- `stream`       HLNK streams on a session endpoint; no gRPC/OpenTelemetry import
- `agent_client` the agent's gRPC control API, errors translated to `CtlError`s
- `errors`       `CtlError` and its subclasses, the exit codes
- `control_secret` the bearer secret for `--control-tcp` (`HOTLINK_CONTROL_SECRET_FILE`)

Command line:
- `cli`          `hotlinkctl` (open, close, ls, get, fallback, status, watch, send, tail, ...)
- `output`       tables and JSON for control-API messages
- `devstack`     a local relay + agents on loopback (`hotlinkctl devstack`); `demo` tours it
- `bench`        `hotlinkctl bench`: latency percentiles against a floor; `floor` is that
                 floor (plain forwarding), `stats` the percentiles
- `trace`        `hotlinkctl trace`: per-stage breakdown of collected spans
- `tlsgen`       a throwaway local CA and server certificate (`devstack up --tls`, `bench --tls`)
"""
