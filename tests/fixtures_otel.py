"""pytest fixtures for tracing tests: a real OTLP/gRPC receiver in the test process.

Fixtures:
- `otlp_receiver`: `hotlink.telemetry.receiver.OtlpReceiver` on 127.0.0.1:<free port>,
  started for the test and stopped after it. Use `.endpoint` (`http://127.0.0.1:PORT`,
  the value for `OTEL_EXPORTER_OTLP_ENDPOINT` / `--otel-endpoint`), `.spans()` (list of
  span dicts, see the receiver module), `.wait_for(predicate, timeout)` (blocks until
  `predicate(spans)` is truthy and returns the spans; TimeoutError lists what arrived).
- `otel_env`: `otel_env(**extra) -> dict` — `os.environ` minus any OTEL_* plus what a
  child process (relay, agent, script) needs to export every span to `otlp_receiver`
  (always-on parent-based sampler, 100 ms batch delay), then `extra`.

Predicates/helpers live in `hotlink.telemetry.receiver`: `has_names(*names)`,
`by_name(spans)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hotlink.telemetry.receiver import OtlpReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    rx = OtlpReceiver("127.0.0.1", 0).start()
    try:
        yield rx
    finally:
        rx.stop(grace=0.2)


def env_for(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    env.update(extra)
    return env


@pytest.fixture
def otel_env(otlp_receiver: OtlpReceiver) -> Callable[..., dict[str, str]]:
    return lambda **extra: env_for(otlp_receiver, **extra)
