"""TCP tunnels over sessions: unmodified socket apps (MPC frameworks) over Hotlink.

Modules:
- `frames`      mux frame codec (HELLO/OPEN/OPEN_OK/DATA/FIN/RST/CREDIT/PING)
- `mux`         sans-I/O multiplexer: per-connection state, credit flow control, resets
- `naming`      which sessions carry a tunnel and their ACL files
- `session_io`  the tunnel as a client of its sessions' own endpoints
- `tcp`         asyncio protocol for the TCP ends
- `peer`        one (tunnel, peer) link: mux + session pipes + TCP ends
- `manager`     open/close/list/restore, admission of forwarders by relay accept
- `state`       `ROOT/.hotlink/tunnels.json`
- `control`     gRPC servicer methods
- `tracing`     spans per connection
"""
