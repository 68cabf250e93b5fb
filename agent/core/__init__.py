"""The agent's sans-I/O core: every session decision, no I/O.

Events go in as method calls (app frames, relay messages, link up/down, writable,
acks and progress, files written/acknowledged, `handle_timer(now)`); effects come out
as lists of dataclasses (`effects`) that the adapters (`agent/session.py`,
`agent/sessions.py`, `agent/filepath.py`) carry out. Time is an argument; nothing
here imports asyncio, websockets, grpc or opentelemetry (tests/test_agent_core_purity.py).

Modules:
- `state`    session states as one transition table (`SessionMachine`, `Trigger`)
- `paths`    paths (`PathId`) and the per-frame path policy (`FallbackPolicy`)
- `effects`  what the cores ask the adapters to do, and control-API `EventType`
- `sender`   `SenderStream`: seqs, hotlink queue, re-send window (`resend_window`),
             spill to files (`sender_files`), a new sid when the relay says ours is
             taken (`sender_sid`); `denied` (`sender_denied`: what a "permission
             denied" means for this sender, named reader and grant included)
- `reader`   `ReaderStream`: merge by seq, app delivery, refetch, gap/progress timers,
             on `reader_state` (`ReaderState`: what it keeps, and the queries on it);
             `file_data` (`FileData`: a frame replayed from a fallback file),
             `catch_up` (`CatchUp`: paging through the relay's store),
             `backlog` (`NoAppBacklog`: frames kept while no app is connected),
             `refetch` (`Refetch`: refused frames, asked for again),
             `join` (`JoinRun`: a new reader's stored files until its start is known;
             `AnswerWait`: its live frames until the sender's answer),
             `gap_report` (`GapReport`: skipped seqs logged merged, a few lines)
- `limits`   `StreamLimits` (bounds) and `Totals` (agent-wide counters)
- `names`    frame-name rules (`validate_frame_name`, `RESERVED_NAMES`)
"""
