"""Tracing configuration: OTEL_* env, flags over env, off by default."""

from __future__ import annotations

import argparse

import pytest
from hotlink.telemetry import config as C
from hotlink.telemetry.config import TracingOptions, resolve


def test_off_by_default_with_the_documented_sampler() -> None:
    cfg = resolve(None, {}, default_service_name="hotlink-relay")
    assert not cfg.enabled
    assert cfg.sampler == "parentbased_traceidratio" and cfg.ratio == 0.01
    assert cfg.root_ratio == 0.01 and cfg.parent_based
    assert cfg.service_name == "hotlink-relay"
    assert cfg.resource_attrs["service.name"] == "hotlink-relay"


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"},
        {"OTEL_TRACES_EXPORTER": "console"},
    ],
)
def test_env_turns_it_on(env: dict[str, str]) -> None:
    assert resolve(None, env).enabled


def test_exporter_otlp_alone_does_not_turn_it_on() -> None:
    assert not resolve(None, {"OTEL_TRACES_EXPORTER": "otlp"}).enabled


def test_disabling() -> None:
    ep = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    assert not resolve(None, {**ep, "OTEL_SDK_DISABLED": "true"}).enabled
    assert not resolve(None, {**ep, "OTEL_TRACES_EXPORTER": "none"}).enabled
    assert not resolve(TracingOptions(enabled=False), ep).enabled
    # the flag beats the env
    assert resolve(TracingOptions(enabled=True), {"OTEL_SDK_DISABLED": "true"}).enabled
    cfg = resolve(TracingOptions(enabled=True), {"OTEL_TRACES_EXPORTER": "none"})
    assert cfg.enabled and cfg.exporter == "otlp"


def test_endpoints_and_protocols() -> None:
    assert resolve(None, {}).endpoint is None
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4317",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://signal:4317",
    }
    assert resolve(None, env).endpoint == "http://signal:4317"
    assert resolve(TracingOptions(endpoint="http://flag:1"), env).endpoint == "http://flag:1"
    http = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    cfg = resolve(None, {**http, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert cfg.protocol == "http/protobuf" and cfg.endpoint == "http://c:4318/v1/traces"
    cfg = resolve(None, {**http, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x"})
    assert cfg.endpoint == "http://c:4318/x"  # the signal variable is used as given
    cfg = resolve(TracingOptions(protocol="http/protobuf", endpoint="http://c:4318/"), {})
    assert cfg.endpoint == "http://c:4318/v1/traces"
    assert resolve(None, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}).protocol == "grpc"


@pytest.mark.parametrize(
    ("sampler", "arg", "root", "parent_based"),
    [
        ("always_on", None, 1.0, False),
        ("always_off", None, 0.0, False),
        ("traceidratio", "0.5", 0.5, False),
        ("parentbased_always_on", None, 1.0, True),
        ("parentbased_always_off", None, 0.0, True),
        ("parentbased_traceidratio", "0.2", 0.2, True),
        ("parentbased_traceidratio", None, 0.01, True),
        ("parentbased_traceidratio", "lots", 0.01, True),
        ("parentbased_traceidratio", "2", 0.01, True),
        ("jaeger_remote", None, 0.01, True),  # unsupported -> default
    ],
)
def test_samplers(sampler: str, arg: str | None, root: float, parent_based: bool) -> None:
    env = {"OTEL_TRACES_SAMPLER": sampler}
    if arg is not None:
        env["OTEL_TRACES_SAMPLER_ARG"] = arg
    cfg = resolve(None, env)
    assert (cfg.root_ratio, cfg.parent_based) == (root, parent_based)


def test_flag_sampler_beats_env() -> None:
    env = {"OTEL_TRACES_SAMPLER": "always_off", "OTEL_TRACES_SAMPLER_ARG": "0.3"}
    cfg = resolve(TracingOptions(sampler="parentbased_traceidratio", ratio=1.0), env)
    assert cfg.root_ratio == 1.0


def test_service_name_and_resource_attributes() -> None:
    env = {
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=dev,hotlink.peer.email=x%40y, bad",
    }
    cfg = resolve(
        None,
        env,
        default_service_name="hotlink-agent",
        resource_attrs={"hotlink.peer.email": "a@b"},
    )
    assert cfg.service_name == "from-env"
    assert cfg.resource_attrs == {
        "hotlink.peer.email": "x@y",
        "deployment.environment": "dev",
        "service.name": "from-env",
    }
    cfg = resolve(TracingOptions(service_name="flag", resource_attrs={"k": "v"}), env)
    assert cfg.service_name == "flag" and cfg.resource_attrs["k"] == "v"


def test_cli_flags() -> None:
    ap = argparse.ArgumentParser()
    C.add_arguments(ap)
    o = C.options_from_args(ap.parse_args([]))
    assert o == TracingOptions()
    args = ap.parse_args(
        [
            "--otel",
            "--otel-endpoint",
            "http://x:4317",
            "--otel-protocol",
            "grpc",
            "--otel-sampler",
            "always_on",
            "--otel-sampler-arg",
            "0.5",
        ]
    )
    o = C.options_from_args(args)
    assert (o.enabled, o.endpoint, o.protocol, o.sampler, o.ratio) == (
        True,
        "http://x:4317",
        "grpc",
        "always_on",
        0.5,
    )
    assert C.options_from_args(ap.parse_args(["--no-otel"])).enabled is False
