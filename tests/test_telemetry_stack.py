"""The compose stack's OpenTelemetry Collector and Prometheus configs, checked offline.

The collector's own binary is not available here, so its config is parsed and checked for
what matters: every pipeline's components exist, each one masks email addresses (and the
masking pattern really masks them) and batches. Prometheus' config goes through promtool.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from service.__main__ import PROJECT_ROOT
from tests.test_compose import env_example, services

COLLECTOR_CONFIG = PROJECT_ROOT / "deploy" / "otel" / "collector.yaml"
PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"
MASKING = "transform/mask_emails"
SIGNALS = ("traces", "metrics", "logs")
# Every OTTL context a signal's data can carry an email in.
MASKED_CONTEXTS = {
    "trace_statements": {"resource", "span", "spanevent"},
    "metric_statements": {"resource", "datapoint"},
    "log_statements": {"resource", "log"},
}
OTTL_CALL = re.compile(
    r'^(replace_pattern|replace_all_patterns)\((\w+), (?:"value", )?"(.+)", "(.+)"\)$'
)


def collector() -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR_CONFIG.read_text())


def masking_statements(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """{"trace_statements": {"span": [statement, ...], ...}, ...}."""
    processor = config["processors"][MASKING]
    return {
        group: {entry["context"]: entry["statements"] for entry in processor.get(group, [])}
        for group in MASKED_CONTEXTS
    }


def pipeline_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    pipelines = config["service"]["pipelines"]
    for signal in SIGNALS:
        if signal not in pipelines:
            problems.append(f"no {signal} pipeline")
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                if component not in config.get(kind, {}):
                    problems.append(f"{name}: {kind[:-1]} {component} is not defined")
        processors = pipeline.get("processors", [])
        if MASKING not in processors:
            problems.append(f"{name}: does not mask emails")
        if not processors or processors[0] != "memory_limiter":
            problems.append(f"{name}: memory_limiter is not first")
        if not processors or processors[-1] != "batch":
            problems.append(f"{name}: batch is not last")
    return problems


def test_the_collector_config_parses_and_every_pipeline_masks_and_batches() -> None:
    config = collector()
    assert pipeline_problems(config) == []
    used = {
        kind: {c for pipeline in config["service"]["pipelines"].values() for c in pipeline[kind]}
        for kind in ("receivers", "processors", "exporters")
    }
    for kind, components in used.items():
        assert set(config[kind]) == components, f"{kind} defined but unused"
    assert config["service"]["extensions"] == list(config["extensions"])


def test_a_pipeline_without_masking_is_reported() -> None:
    config = collector()
    config["service"]["pipelines"]["logs"]["processors"].remove(MASKING)
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp/nowhere")
    assert pipeline_problems(config) == [
        "traces: exporter otlp/nowhere is not defined",
        "logs: does not mask emails",
    ]


def test_masking_covers_every_place_an_email_can_hide() -> None:
    statements = masking_statements(collector())
    for group, contexts in MASKED_CONTEXTS.items():
        assert set(statements[group]) == contexts, group
        for context, lines in statements[group].items():
            targets = {OTTL_CALL.match(line)[2] for line in lines}  # type: ignore[index]
            assert "attributes" in targets, (group, context)
    assert any("replace_pattern(body," in line for line in statements["log_statements"]["log"])
    assert any("replace_pattern(name," in line for line in statements["trace_statements"]["span"])


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("login failed for jane.doe+test@mail.example.co.uk", "login failed for [email]"),
        ("a@b.io and Z_9%x@sub-1.example.org", "[email] and [email]"),
        ("GET /api/profiles?who=jane.doe%40example.com", "GET /api/profiles?who=[email]"),
        ("user 42 logged in", "user 42 logged in"),
        ("twitter handle @jane, version 1.2@3", "twitter handle @jane, version 1.2@3"),
    ],
)
def test_the_masking_pattern_masks_emails_and_nothing_else(text: str, masked: str) -> None:
    calls = [
        OTTL_CALL.match(line)
        for contexts in masking_statements(collector()).values()
        for lines in contexts.values()
        for line in lines
    ]
    assert all(calls), "a masking statement has an unexpected shape"
    patterns = {(call[3], call[4]) for call in calls if call}
    assert len(patterns) == 1, "every statement should use the same pattern"
    ((pattern, replacement),) = patterns
    # The pattern is plain RE2 syntax, which Python's re reads the same way.
    assert re.sub(pattern, replacement, text) == masked


def test_the_collector_exports_to_the_stack_and_prometheus_scrapes_it() -> None:
    config = collector()
    stack = services()
    endpoints = [
        exporter.get("endpoint") or exporter["metrics_endpoint"]
        for exporter in config["exporters"].values()
    ]
    hosts = {re.sub(r"^https?://", "", endpoint).split(":")[0] for endpoint in endpoints}
    assert hosts == {"jaeger", "prometheus", "loki"}
    assert hosts <= set(stack)
    # The compose file mounts this config where the collector's command reads it.
    collector_service = stack["otel-collector"]
    mounted = {v.split(":")[1] for v in collector_service["volumes"] if "collector.yaml" in v}
    assert collector_service["command"] == [f"--config={mounted.pop()}"]
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    telemetry_port = reader["pull"]["exporter"]["prometheus"]["port"]
    otlp = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert otlp.endswith(":4318")  # what compose.yml gives the service as its OTLP endpoint
    assert f"otel-collector:{telemetry_port}" in scrape_targets()["otel-collector"]


def scrape_targets() -> dict[str, list[str]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_scrapes_the_api_and_the_worker_where_they_listen() -> None:
    assigned, _ = env_example()
    targets = scrape_targets()
    # The API's metrics listener, not PORT (which the proxy forwards to and which has none).
    assert assigned["METRICS_PORT"] != assigned["PORT"]
    assert targets["api"] == [f"api:{assigned['METRICS_PORT']}"]
    assert targets["worker"] == [f"worker:{assigned['WORKER_METRICS_PORT']}"]
    # Prometheus takes the collector's OTLP metrics on the path the exporter sends to.
    prometheus = services()["prometheus"]
    assert "--web.enable-otlp-receiver" in prometheus["command"]
    exporter = collector()["exporters"]["otlphttp/prometheus"]
    assert exporter["metrics_endpoint"] == "http://prometheus:9090/api/v1/otlp/v1/metrics"
