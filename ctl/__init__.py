"""Hotlink ctl: the app client library and `hotlinkctl`.

Library (what apps import):
- `client`       `from hotlink.ctl.client import Stream, AgentClient`: both halves below
- `stream`       HLNK streams on a session endpoint; no gRPC/OpenTelemetry import
- `agent_client` the agent's gRPC control API, errors translated to `CtlError`s
- `reconnect`    `ReconnectingStream`: a stream that survives agent restarts
- `errors`       `CtlError` and its subclasses, the exit codes
- `control_secret` the bearer secret for `--control-tcp` (`HOTLINK_CONTROL_SECRET_FILE`)

Command line:
- `cli`          `hotlinkctl`: the parser and entry point, devstack and bench commands
- `commands`     the other command groups: `sessions` (open, close, ls, get, fallback,
                 status, send, tail, watch), `acl` (grant, revoke, show), `common`
- `acledit`      pure edits of a syft.pub.yaml (grant, revoke), checked by the relay's parser
- `output`       tables and JSON for control-API messages
- `devstack`     a local relay + agents on loopback (`hotlinkctl devstack`); `demo` tours it;
                 `devstack_cluster` its `--relays N` variant (nats-server + N relay nodes);
                 `devstack_state` its devstack.json, `devstack_procs` its processes
- `bench`        `hotlinkctl bench`: latency percentiles against a floor; `floor` is that
                 floor (plain forwarding), `stats` the percentiles, `bench_measure` the
                 stamped samples of one channel, `bench_channels` the hotlink, file and
                 floor channels, `bench_paths` the `--direct off,auto` stacks and their
                 direct-vs-relay comparison, `bench_table` the text table, `bench_progress` the
                 progress line, `bench_otel` the traced devstack and receiver of
                 `bench --otel`, `proc_stat` processes' CPU time from /proc
- `trace`        `hotlinkctl trace`: per-stage breakdown of collected spans
- `bench_cluster` relay cluster benchmarks: same- vs cross-node latency, 1/2/3-node rate
- `tunnel_cli`   `hotlinkctl tunnel expose|forward|ls|close`: TCP tunnels
- `mpyc_demo`    `hotlinkctl demo mpyc`: three MPyC parties over tunnels (relay, direct
                 path) vs straight; `mpyc_party` is the (unmodified-MPyC) party program
                 it runs, `demo_paths` checks which path the tunnels' sessions took
- `tunnel_bench` `hotlinkctl demo tunnel-throughput`: one tunnel stream vs loopback TCP
- `bench_direct_link` `python -m hotlink.ctl.bench_direct_link`: the direct link's own cost
                 (plain TCP echo vs DirectLink echo between two processes)
- `tlsgen`       a throwaway local CA and server certificate (`devstack up --tls`, `bench --tls`)
"""
