"""Grafana's provisioning and dashboards, checked against promtool and a live scrape.

Every PromQL expression of every dashboard (and every variable's `label_values` query),
once Grafana's variables are replaced by each value they can take, must pass `promtool
check rules`, and every metric, label and label value it asks for must be in what the
service really exports. The scrape comes from the processes compose runs: the API
under `python -m service serve` with two hypercorn workers and the arq worker, both in
prometheus_client's multiprocess mode as in the image (PROMETHEUS_MULTIPROC_DIR), since
that mode changes names (the API's per-process `process_cpu_seconds{pid}`). The test
drives them until every metric family has samples.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import yaml

from service.__main__ import PROJECT_ROOT
from service.metrics import MULTIPROC_ENV
from tests.conftest import TestServers
from tests.processes import free_port, service_env
from tests.test_metrics import Sample, get_metrics, live_pids, matching, start

GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA / "dashboards"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS_FILE = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE_FILE = PROJECT_ROOT / "compose.yml"

EXPECTED_DATASOURCES = {
    "prometheus": ("prometheus", "http://prometheus:9090"),
    "jaeger": ("jaeger", "http://jaeger:16686"),
    "loki": ("loki", "http://loki:3100"),
}
# Grafana's built-in interval variables, as the literal durations promtool is given.
INTERVAL_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
# Series Prometheus writes itself for every target: in no /metrics.
SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
# Labels Prometheus attaches to every series of a target.
TARGET_LABELS = frozenset({"job", "instance"})


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# PromQL's functions and aggregation operators (Prometheus 3), and its keywords.
PROMQL_FUNCTIONS = words(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv double_exponential_smoothing exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase info irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin
    sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time
    stdvar_over_time sum_over_time tan tanh time timestamp vector year
    avg bottomk count count_values group limitk limit_ratio max min quantile stddev stdvar
    sum topk
    """
)
PROMQL_KEYWORDS = words(
    "and or unless bool offset by without on ignoring group_left group_right inf nan start end"
)

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
STRING = re.compile(_STRING)
# An optional metric name, then `{...}` whose strings may hold any character.
SELECTOR = re.compile(rf"([a-zA-Z_:][\w:]*)?\s*\{{((?:{_STRING}|[^{{}}\"'`])*)\}}")
MATCHER = re.compile(rf"\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*({_STRING})\s*(?:,|$)")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
RANGE = re.compile(r"\[[^\[\]]*\]")  # ranges and subqueries
DURATION = re.compile(r"(?<![\w:])(?:\d+(?:ms|[smhdwy]))+(?![\w:])")  # offset 1h30m
NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)")
IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*")
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$([a-zA-Z_]\w*)")
LABEL_VALUES = re.compile(r"^\s*label_values\((.+),\s*([a-zA-Z_]\w*)\s*\)\s*$", re.DOTALL)


class Matcher(NamedTuple):
    label: str
    op: str
    value: str


class Selector(NamedTuple):
    metric: str
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Query:
    """A PromQL expression a dashboard runs, and the labels its result must carry."""

    where: str  # dashboard / panel / refId, for messages
    expr: str  # with Grafana's variables still in
    labels: tuple[str, ...] = ()  # a variable's label_values(..., label)


# job -> sample name -> label name -> the values its samples carry
Exported = Mapping[str, Mapping[str, Mapping[str, frozenset[str]]]]
# Label values a scrape cannot be expected to show yet (no job failed): service.metrics.count_job.
DOCUMENTED_VALUES = {
    ("background_jobs_total", "status"): frozenset({"enqueued", "started", "succeeded", "failed"})
}


# --- reading the files --------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def datasources() -> dict[str, dict[str, Any]]:
    """The provisioned datasources by uid."""
    config = yaml.safe_load(DATASOURCES_FILE.read_text())
    return {source["uid"]: source for source in config["datasources"]}


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in all_panels(dashboard.get("panels", [])) if panel["type"] != "row"]


def scrape_jobs() -> set[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


def prometheus_queries(dashboard: dict[str, Any]) -> list[Query]:
    """The expressions of the targets and variables that use the Prometheus datasource."""
    prometheus_uids = {uid for uid, ds in datasources().items() if ds["type"] == "prometheus"}
    title = dashboard["title"]
    queries = []
    for panel in data_panels(dashboard):
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel["datasource"])["uid"]
            if uid in prometheus_uids:
                where = f"{title} / {panel['title']} / {target['refId']}"
                queries.append(Query(where, target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query" and variable["datasource"]["uid"] in prometheus_uids:
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = LABEL_VALUES.match(text)
            assert match, f"{title} / ${variable['name']}: not label_values(selector, label)"
            queries.append(Query(f"{title} / ${variable['name']}", match[1], (match[2],)))
    return queries


# --- Grafana variables --------------------------------------------------------------------


def variable_choices(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each variable's possible values, as Grafana puts them into a query.

    A custom variable: each option alone, and all of them (a regex alternation, or its
    allValue); a query variable: its allValue (its values are only known at run time).
    """
    choices = {name: [duration] for name, duration in INTERVAL_VARIABLES.items()}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable["type"] == "custom":
            options = [option.strip() for option in variable["query"].split(",")]
            every = variable.get("allValue") or "(" + "|".join(options) + ")"
            choices[name] = [*options, every] if variable.get("includeAll") else options
        elif variable["type"] == "query":
            choices[name] = [variable.get("allValue") or ".*"]
        else:
            raise AssertionError(f"${name}: variable type {variable['type']} not handled here")
    return choices


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with $name, ${name}, ${name:format} and [[name]] replaced by `values`."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {expr}")
        return values[name]

    return VARIABLE.sub(value, expr)


def expansions(expr: str, choices: Mapping[str, list[str]]) -> list[str]:
    """`expr` for every combination of the variables' values."""
    names = sorted(choices)
    combinations = itertools.product(*(choices[name] for name in names))
    found = {substitute(expr, dict(zip(names, combo, strict=True))) for combo in combinations}
    return sorted(found)


def concrete_queries(dashboard: dict[str, Any]) -> list[tuple[Query, str]]:
    choices = variable_choices(dashboard)
    return [
        (query, expr)
        for query in prometheus_queries(dashboard)
        for expr in expansions(query.expr, choices)
    ]


def all_concrete_queries() -> list[tuple[Query, str]]:
    return [pair for path in dashboard_files() for pair in concrete_queries(load_dashboard(path))]


# --- PromQL: metric names and labels ------------------------------------------------------


def unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def parse_matchers(body: str) -> tuple[Matcher, ...]:
    matchers = []
    position = 0
    while body[position:].strip():
        match = MATCHER.match(body, position)
        assert match, f"cannot read label matchers {{{body}}}"
        matchers.append(Matcher(match[1], match[2], unquote(match[3])))
        position = match.end()
    return tuple(matchers)


def selectors(expr: str) -> list[Selector]:
    """Every series selector: `name{...}`, `{__name__="name", ...}` and bare `name`."""
    found = []

    def named(match: re.Match[str]) -> str:
        matchers = parse_matchers(match[2])
        name = match[1]
        if name is None:
            names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
            assert names, f"a selector without a metric name: {match[0]}"
            name = names[0]
        found.append(Selector(name, tuple(m for m in matchers if m.label != "__name__")))
        return " "

    rest = SELECTOR.sub(named, expr)
    found.extend(Selector(name, ()) for name in bare_identifiers(rest))
    return found


def bare_identifiers(expr: str) -> list[str]:
    """The metric names left once strings, ranges, clauses, numbers and functions are gone."""
    text = STRING.sub(" ", expr)
    text = RANGE.sub(" ", text)
    text = GROUPING.sub(" ", text)
    text = DURATION.sub(" ", text)
    text = NUMBER.sub(" ", text)
    return [
        name
        for name in IDENTIFIER.findall(text)
        if name not in PROMQL_FUNCTIONS and name.lower() not in PROMQL_KEYWORDS
    ]


def metric_names(expr: str) -> set[str]:
    return {selector.metric for selector in selectors(expr)}


def grouping_labels(expr: str) -> dict[str, set[str]]:
    """Labels of by/without/on/ignoring clauses ("every") and group_left/right ("some")."""
    clauses: dict[str, set[str]] = {"every": set(), "some": set()}
    for keyword, labels in GROUPING.findall(STRING.sub(" ", expr)):
        kind = "some" if keyword.startswith("group_") else "every"
        clauses[kind] |= {label.strip() for label in labels.split(",") if label.strip()}
    return clauses


def selected_jobs(selector: Selector, jobs: set[str]) -> set[str]:
    """The scrape jobs whose series the selector's `job` matchers let through."""
    selected = set(jobs)
    for matcher in selector.matchers:
        if matcher.label != "job":
            continue
        if matcher.op in ("=", "!="):
            hit = {job for job in jobs if job == matcher.value}
        else:
            hit = {job for job in jobs if re.fullmatch(matcher.value, job)}
        selected &= hit if matcher.op in ("=", "=~") else jobs - hit
    return selected


def label_values(
    selector: Selector, exported: Exported, jobs: set[str]
) -> dict[str, set[str]] | None:
    """label -> values of the selector's series in the jobs it selects; None: not exported."""
    wanted = selected_jobs(selector, jobs)
    if selector.metric in SCRAPE_SERIES and wanted:
        return {"job": wanted, "instance": set()}
    found = [exported[job].get(selector.metric) for job in sorted(wanted & set(exported))]
    if not any(labels is not None for labels in found):
        return None
    values: dict[str, set[str]] = {"job": wanted & set(exported), "instance": set()}
    for labels in found:
        for label, seen in (labels or {}).items():
            values.setdefault(label, set()).update(seen)
    return values


def labels_of(selector: Selector, exported: Exported, jobs: set[str]) -> frozenset[str] | None:
    """The labels the selector's series carry, or None if no scraped job exports it."""
    values = label_values(selector, exported, jobs)
    return None if values is None else frozenset(values) | TARGET_LABELS


def missing_metrics(expr: str, exported: Exported, jobs: set[str]) -> list[Selector]:
    """The selectors of `expr` whose metric no job they select exports."""
    return [selector for selector in selectors(expr) if labels_of(selector, exported, jobs) is None]


def missing_labels(
    expr: str, exported: Exported, jobs: set[str], required: tuple[str, ...] = ()
) -> list[str]:
    """Matcher, grouping and `required` labels that the metrics they apply to lack."""
    problems = []
    known = [(s, labels_of(s, exported, jobs)) for s in selectors(expr)]
    known_labels = [(s, labels) for s, labels in known if labels is not None]
    for selector, labels in known_labels:
        problems += [
            f"{selector.metric} has no label {m.label}"
            for m in selector.matchers
            if m.label not in labels
        ]
    clauses = grouping_labels(expr)
    for label in sorted(clauses["every"] | set(required)):
        problems += [
            f"{s.metric} has no label {label}" for s, ls in known_labels if label not in ls
        ]
    for label in sorted(clauses["some"]):
        if not any(label in labels for _s, labels in known_labels):
            problems.append(f"no metric has the label {label}")
    return sorted(set(problems))


def unmatched_values(expr: str, exported: Exported, jobs: set[str]) -> list[str]:
    """`=` and `=~` matchers that no value the service produces satisfies."""
    problems = []
    for selector in selectors(expr):
        values = label_values(selector, exported, jobs)
        if values is None or selector.metric in SCRAPE_SERIES:
            continue
        for matcher in selector.matchers:
            if matcher.label in TARGET_LABELS or matcher.op not in ("=", "=~"):
                continue
            documented = DOCUMENTED_VALUES.get((selector.metric, matcher.label), frozenset())
            seen = values.get(matcher.label, set()) | documented
            if matcher.op == "=":
                hit = matcher.value in seen
            else:
                hit = any(re.fullmatch(matcher.value, value) for value in seen)
            if not hit:
                problems.append(
                    f'{selector.metric}{{{matcher.label}{matcher.op}"{matcher.value}"}} '
                    f"matches none of {sorted(seen)}"
                )
    return problems


# --- the live scrape ----------------------------------------------------------------------


def exported_names(samples: list[Sample]) -> dict[str, dict[str, frozenset[str]]]:
    """sample name -> label name -> values, from a scrape."""
    names: dict[str, dict[str, set[str]]] = {}
    for sample in samples:
        labels = names.setdefault(sample.name, {})
        for label, value in sample.labels.items():
            labels.setdefault(label, set()).add(value)
    return {
        name: {label: frozenset(values) for label, values in labels.items()}
        for name, labels in names.items()
    }


def families_have_samples(samples: list[Sample], names: tuple[str, ...]) -> bool:
    return all(matching(samples, name) for name in names)


API_FAMILIES = (
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "background_jobs_total",
    "database_queries_total",
    "database_connection_pool",
    "process_resident_memory_bytes",
    "process_cpu_seconds",
    "process_open_fds",
)
WORKER_FAMILIES = ("background_jobs_total", "database_queries_total", "database_connection_pool")


def api_driven(samples: list[Sample]) -> bool:
    return (
        families_have_samples(samples, API_FAMILIES)
        and len(live_pids(samples)) == 2
        and bool(matching(samples, "http_requests_total", status="503"))
        and bool(matching(samples, "http_requests_total", status="404"))
        and bool(matching(samples, "background_jobs_total", status="enqueued"))
    )


def worker_driven(samples: list[Sample]) -> bool:
    return families_have_samples(samples, WORKER_FAMILIES) and bool(
        matching(samples, "background_jobs_total", status="succeeded")
    )


async def drive_the_api(base_url: str) -> None:
    """Answers of every kind, and an export for the worker."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        expected = {
            "/healthz": 200,
            "/products": 200,
            "/products/918273645": 404,
            "/no/such/page": 404,
            "/error?code=503": 503,
        }
        for path, status in expected.items():
            assert (await http.get(path)).status_code == status, path
        response = await http.post("/export", json={"format": "csv"})
        assert response.status_code == 202, response.text
        export_id = response.json()["job_id"]
        deadline = time.monotonic() + 30
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = (await http.get(f"/exports/{export_id}")).json()
            if body["status"] in ("complete", "failed"):
                break
            await asyncio.sleep(0.1)
        assert body.get("status") == "complete", body


async def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
async def exported(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Exported]:
    """job -> sample name -> label -> values, from a real API and worker once driven."""
    tmp = tmp_path_factory.mktemp("dashboards")
    api_port, api_metrics_port, worker_port = free_port(), free_port(), free_port()
    common = {"DATABASE_URL": TestServers.database_url, "REDIS_URL": TestServers.redis_url}
    # Scraped where Prometheus scrapes it (prometheus.yml): the API's own METRICS_PORT.
    api_env = service_env(
        **common,
        PORT=str(api_port),
        METRICS_PORT=str(api_metrics_port),
        WEB_CONCURRENCY="2",
        **{MULTIPROC_ENV: str(tmp / "api")},
    )
    # `python -m service serve` makes its directory; the worker needs one that exists.
    worker_metrics = tmp / "worker"
    worker_metrics.mkdir()
    worker_env = service_env(
        **common,
        WORKER_METRICS_PORT=str(worker_port),
        WORKER_HEALTH_CHECK_INTERVAL="1",
        **{MULTIPROC_ENV: str(worker_metrics)},
    )
    processes: list[subprocess.Popen[bytes]] = []
    api_log, worker_log = tmp / "api.log", tmp / "worker.log"
    try:
        with api_log.open("wb") as log:
            api = start(["-m", "service", "serve"], api_env, log, processes)
        with worker_log.open("wb") as log:
            worker = start(["-m", "arq", "jobs.worker.WorkerSettings"], worker_env, log, processes)
        api_url = f"http://127.0.0.1:{api_port}"
        api_metrics = f"http://127.0.0.1:{api_metrics_port}/metrics"
        await get_metrics(api_metrics, api, api_log, lambda s: len(live_pids(s)) == 2)
        await get_metrics(f"http://127.0.0.1:{worker_port}/metrics", worker, worker_log)

        await drive_the_api(api_url)
        api_samples = await get_metrics(api_metrics, api, api_log, api_driven)
        worker_samples = await get_metrics(
            f"http://127.0.0.1:{worker_port}/metrics", worker, worker_log, worker_driven
        )
        yield {"api": exported_names(api_samples), "worker": exported_names(worker_samples)}
    finally:
        await stop_all(processes)


# --- provisioning -------------------------------------------------------------------------


def test_the_three_datasources_are_provisioned_with_fixed_uids() -> None:
    config = yaml.safe_load(DATASOURCES_FILE.read_text())
    by_uid = datasources()

    assert config["apiVersion"] == 1
    assert len(by_uid) == len(config["datasources"]), "duplicate uids"
    assert {uid: (ds["type"], ds["url"]) for uid, ds in by_uid.items()} == EXPECTED_DATASOURCES
    assert [uid for uid, ds in by_uid.items() if ds.get("isDefault")] == ["prometheus"]
    derived = by_uid["loki"]["jsonData"]["derivedFields"]
    assert derived and {field["datasourceUid"] for field in derived} == {"jaeger"}
    for field in derived:
        assert field["url"] == "$${__value.raw}"  # `$$`: not expanded from the environment
    json_line = next(f for f in derived if f.get("matcherType", "regex") == "regex")
    line = '{"level": "INFO", "trace_id": "' + "0af7651916cd43dd8448eb211c80319c" + '"}'
    match = re.search(json_line["matcherRegex"], line)
    assert match and match[1] == "0af7651916cd43dd8448eb211c80319c"
    assert by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"


def test_the_dashboard_provider_reads_the_directory_compose_mounts() -> None:
    providers = yaml.safe_load(PROVIDERS_FILE.read_text())
    grafana = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])

    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == Path(provider["options"]["path"])
    assert (DASHBOARDS_DIR / home.name).is_file()


# --- the dashboards -----------------------------------------------------------------------


def test_every_dashboard_is_wired_to_provisioned_datasources() -> None:
    sources = datasources()
    paths = dashboard_files()
    assert paths, f"no dashboard in {DASHBOARDS_DIR}"
    uids = []
    for path in paths:
        dashboard = load_dashboard(path)
        assert dashboard.get("uid") and dashboard.get("title"), path.name
        uids.append(dashboard["uid"])
        panels = data_panels(dashboard)
        assert panels, path.name
        ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            where = f"{path.name} / {panel['title']}"
            references = [panel["datasource"]]
            references += [t["datasource"] for t in panel["targets"] if "datasource" in t]
            for reference in references:
                assert reference["uid"] in sources, where
                assert reference["type"] == sources[reference["uid"]]["type"], where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), f"{where} / {target.get('refId')}"
        for variable in dashboard.get("templating", {}).get("list", []):
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in sources, variable["name"]
    assert len(uids) == len(set(uids)), "two dashboards share a uid"


def test_the_service_dashboard_has_the_panels_it_promises() -> None:
    dashboard = load_dashboard(DASHBOARDS_DIR / "service.json")
    exprs = {panel["title"]: panel["targets"][0]["expr"] for panel in data_panels(dashboard)}

    assert (dashboard["uid"], dashboard["title"]) == ("quart-service", "Quart service")
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "http_request_duration_seconds_bucket" in exprs["p95 latency per endpoint"]
    assert "histogram_quantile(0.95," in exprs["p95 latency per endpoint"]
    rated = [expr for expr in exprs.values() if "rate(" in expr]
    assert rated and all("[$__rate_interval]" in expr for expr in rated)


def test_every_expression_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package"
    exprs = sorted({expr for _query, expr in all_concrete_queries()})
    assert exprs

    def check(rules: list[str]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "rules.yml"
        records = [
            {"record": f"dashboard:expr_{number}:check", "expr": expr}
            for number, expr in enumerate(rules)
        ]
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
        return subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )

    checked = check(exprs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
    broken = check(["sum by (endpoint (rate(http_requests_total[5m]))"])
    assert broken.returncode != 0, "promtool accepted a broken expression"


def test_every_metric_the_dashboards_use_is_exported(exported: Exported) -> None:
    jobs = scrape_jobs()
    problems = [
        f"{query.where}: {expr}: {missing.metric} is not exported by the jobs "
        f"{sorted(selected_jobs(missing, jobs))} (scraped here: {sorted(exported)})"
        for query, expr in all_concrete_queries()
        for missing in missing_metrics(expr, exported, jobs)
    ]
    assert not problems, "\n".join(problems)


def test_every_label_the_dashboards_use_is_on_its_metric(exported: Exported) -> None:
    jobs = scrape_jobs()
    problems = [
        f"{query.where}: {expr}: {missing}"
        for query, expr in all_concrete_queries()
        for missing in missing_labels(expr, exported, jobs, query.labels)
    ]
    assert not problems, "\n".join(problems)


def test_every_label_value_the_dashboards_ask_for_occurs(exported: Exported) -> None:
    jobs = scrape_jobs()
    problems = [
        f"{query.where}: {expr}: {unmatched}"
        for query, expr in all_concrete_queries()
        for unmatched in unmatched_values(expr, exported, jobs)
    ]
    assert not problems, "\n".join(problems)


def test_a_misspelled_metric_or_label_is_reported(exported: Exported) -> None:
    jobs = scrape_jobs()
    statuses = sorted(exported["api"]["http_requests_total"]["status"])

    def missing(expr: str) -> list[str]:
        return [selector.metric for selector in missing_metrics(expr, exported, jobs)]

    assert missing("rate(http_request_total[5m])") == ["http_request_total"]
    # Exported, but not by the job asked for; the single-process name is not exported.
    assert missing('rate(http_requests_total{job="worker"}[5m])') == ["http_requests_total"]
    assert missing('process_cpu_seconds_total{job="api"}') == ["process_cpu_seconds_total"]
    assert missing('sum(rate(http_requests_total{job="api"}[5m])) / up') == []
    assert missing_labels(
        'sum by (route) (rate(http_requests_total{job="api", code="500"}[5m]))', exported, jobs
    ) == ["http_requests_total has no label code", "http_requests_total has no label route"]
    assert unmatched_values(
        'background_jobs_total{status="failure"} + on () http_requests_total{status=~"5xx"}',
        exported,
        jobs,
    ) == [
        'background_jobs_total{status="failure"} matches none of '
        "['enqueued', 'failed', 'started', 'succeeded']",
        f'http_requests_total{{status=~"5xx"}} matches none of {statuses}',
    ]


# --- the extractor on its own -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names", "groupings"),
    [
        ("up", {"up"}, set()),
        (
            'histogram_quantile(0.9, sum by (le, path) (rate(a_bucket{x="}{", y=~"5.."}[5m])))',
            {"a_bucket"},
            {"le", "path"},
        ),
        (
            "sum(rate(a_total[1h:5m] offset 1d)) without (pid) / on (job) group_left (env) b",
            {"a_total", "b"},
            {"pid", "job"},
        ),
        (
            'label_replace(c, "dst", "$1", "src", "(.*)") > bool 1e3 and d:rule:ratio',
            {"c", "d:rule:ratio"},
            set(),
        ),
        ('{__name__="e_total", job="api"} * 2', {"e_total"}, set()),
    ],
)
def test_the_extractor_finds_only_metric_names(
    expr: str, names: set[str], groupings: set[str]
) -> None:
    assert metric_names(expr) == names
    assert grouping_labels(expr)["every"] == groupings


def test_grafana_variables_are_replaced_for_every_choice() -> None:
    choices = {"__rate_interval": ["5m"], "job": ["api", "worker", "(api|worker)"]}

    assert expansions('rate(x{job=~"$job"}[$__rate_interval])', choices) == [
        'rate(x{job=~"(api|worker)"}[5m])',
        'rate(x{job=~"api"}[5m])',
        'rate(x{job=~"worker"}[5m])',
    ]
    assert substitute('y{a=~"${job:regex}"}[[job]]', {"job": "api"}) == 'y{a=~"api"}api'
    with pytest.raises(KeyError):
        substitute('z{a="$nope"}', {"job": "api"})
