"""The dashboard and the alert rules read only what the code exports, and every alert has a runbook.

Every PromQL expression of deploy/grafana/dashboards/*.json and deploy/prometheus/alerts.yml is
parsed by promql-parser (a port of Prometheus' own parser), so one that Prometheus would refuse
fails here; each series it selects must be one the platform's metrics classes export, computed
from the classes themselves on a fresh registry, or one Prometheus makes (`up`); each label it
matches on must be one the series has. A metric renamed in the code without the dashboard or the
rules following it fails here instead of showing an empty panel or an alert that never fires.
Each alert has a severity, a summary and a description, and its `runbook` is a section of
docs/operations.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from eventstore.metrics import AppendMetrics
from gateway.metrics import GatewayMetrics
from handlers.metrics import AgentMetrics, ModelMetrics
from handlers.system_monitor import MonitorMetrics
from projections.metrics import ProjectionMetrics
from runtime.command_metrics import CommandMetrics

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
COMPOSE = DEPLOY / "compose.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

METRICS_CLASSES = (
    GatewayMetrics,
    CommandMetrics,
    AppendMetrics,
    ProjectionMetrics,
    AgentMetrics,
    ModelMetrics,
    MonitorMetrics,
)
TARGET_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus adds to every series it scrapes."""
BUILT_IN = {"up": TARGET_LABELS}
"""Series Prometheus makes itself, with their labels."""
SERIES_OF_TYPE = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
"""The series a family of each type is exposed as: name plus each suffix."""
SEVERITIES = frozenset({"warning", "critical"})
GRAFANA_INTERVALS = re.compile(
    r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}"
)
"""Grafana's built-in range variables, which it replaces before a query reaches Prometheus."""

Json = dict[str, Any]


def exported_series() -> dict[str, frozenset[str]]:
    """Every series the metrics classes export, with its label names: each class instantiated
    on a fresh registry and each collected family expanded by its type."""
    registry = CollectorRegistry()
    labels: dict[str, frozenset[str]] = {}
    for cls in METRICS_CLASSES:
        metrics = cls(registry)
        for value in vars(metrics).values():
            if isinstance(value, MetricWrapperBase):
                # A labelled family has no sample, and so shows no label names, until a child
                # exists: the names are read from the metric the class made.
                [family] = value.describe()
                labels[family.name] = frozenset(value._labelnames)
    series: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        assert family.type in SERIES_OF_TYPE, f"{family.name}: a {family.type} is not expected"
        assert family.name in labels, f"{family.name}: not an attribute of its class"
        for suffix in SERIES_OF_TYPE[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[family.name + suffix] = labels[family.name] | extra
    return series


EXPORTED = exported_series()


def load_yaml(path: Path) -> Json:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expression) of every query target of every dashboard."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                where = f"{path.name}: {panel['title']} {target['refId']}"
                found.append((where, target["expr"]))
    return found


def alert_rules() -> list[Json]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def rule_queries() -> list[tuple[str, str]]:
    return [(f"alerts.yml: {rule['alert']}", rule["expr"]) for rule in alert_rules()]


QUERIES = dashboard_queries() + rule_queries()


def selectors(expression: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of the expression, as Prometheus' grammar parses it."""
    parsed = promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expression))
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(parsed, visit)
    return found


def selector_name(selector: promql_parser.VectorSelector) -> str | None:
    """The metric name, written before the braces or as an exact `__name__` matcher."""
    if selector.name:
        return selector.name
    names = [
        m.value
        for m in selector.matchers.matchers
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
    ]
    return names[0] if names else None


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a document: lower case, punctuation dropped,
    spaces to hyphens, `-1`, `-2`… after a repeated one. Code blocks hold no headings."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not heading:
            continue
        text = re.sub(r"`|\*\*|__", "", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


# -- the metrics the code exports ----------------------------------------------------------------


def test_the_series_come_from_the_classes_by_type() -> None:
    # One of each type, as the exposition format names them.
    assert EXPORTED["sutazai_commands_total"] == {"command", "outcome"}
    assert "sutazai_commands_created" in EXPORTED
    assert "sutazai_commands" not in EXPORTED
    assert EXPORTED["sutazai_command_seconds_bucket"] == {"command", "le"}
    assert {"sutazai_command_seconds_sum", "sutazai_command_seconds_count"} <= set(EXPORTED)
    assert EXPORTED["sutazai_agents"] == {"heartbeat"}
    assert EXPORTED["sutazai_dlq_messages"] == frozenset()


# -- every expression parses and reads what is exported ------------------------------------------


def test_there_is_a_dashboard_and_there_are_rules() -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana/dashboards"
    assert len(dashboard_queries()) >= 20
    assert len(rule_queries()) >= 8


@pytest.mark.parametrize(("where", "expression"), QUERIES, ids=[w for w, _ in QUERIES])
def test_every_query_parses_and_reads_exported_series(where: str, expression: str) -> None:
    found = selectors(expression)
    assert found, f"{where}: selects no series"
    for selector in found:
        name = selector_name(selector)
        assert name, f"{where}: {selector} names no metric"
        known = EXPORTED.get(name, BUILT_IN.get(name))
        assert known is not None, f"{where}: {name} is exported by no metrics class"
        matched = {m.name for m in selector.matchers.matchers} - {"__name__"}
        unknown = matched - known - TARGET_LABELS
        assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"


def test_a_misspelled_metric_is_caught() -> None:
    # The check above is not vacuous: a name one letter off is not exported.
    [selector] = selectors("max(sutazai_dlq_mesages) > 0")
    assert selector_name(selector) not in EXPORTED
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("rate(sutazai_commands_total[5m]")


def test_every_job_selected_is_scraped() -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    for where, expression in QUERIES:
        for selector in selectors(expression):
            for matcher in selector.matchers.matchers:
                if matcher.name == "job" and matcher.op == promql_parser.MatchOp.Equal:
                    assert matcher.value in jobs, f"{where}: no scrape job {matcher.value}"


# -- the dashboard as Grafana provisions it ------------------------------------------------------


def test_every_panel_reads_the_provisioned_datasource() -> None:
    [source] = load_yaml(DATASOURCES)["datasources"]
    expected = {"type": source["type"], "uid": source["uid"]}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"], path
        assert dashboard["title"], path
        assert dashboard["schemaVersion"] >= 36, path
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == expected, panel["title"]
            assert panel.get("targets"), f"{panel['title']}: no query"
            for target in panel["targets"]:
                assert target["datasource"] == expected, panel["title"]


def mounted(service: Json) -> dict[str, Path]:
    """A compose service's bind mounts: container path -> path in the source tree."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (COMPOSE.parent / source).resolve()
    return mounts


def test_compose_mounts_the_dashboards_and_the_rules_where_they_are_read() -> None:
    services = load_yaml(COMPOSE)["services"]
    grafana = mounted(services["grafana"])
    for path in sorted(DASHBOARD_PROVIDERS.glob("*.yaml")):
        for provider in load_yaml(path)["providers"]:
            folder = grafana.get(provider["options"]["path"])
            assert folder is not None, f"{path.name}: {provider['options']['path']} not mounted"
            assert {p.resolve() for p in DASHBOARDS} <= set(folder.glob("*.json"))
    prometheus = mounted(services["prometheus"])
    for rule_file in load_yaml(PROMETHEUS)["rule_files"]:
        assert prometheus.get(rule_file) == ALERTS.resolve(), rule_file


# -- the alerts ----------------------------------------------------------------------------------


def test_every_alert_is_named_once_with_severity_summary_and_description() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), names
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        if "for" in rule:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0, rule["alert"]


def test_every_runbook_is_a_section_of_the_operations_guide() -> None:
    anchors = github_anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert (ROOT / page).resolve() == OPERATIONS.resolve(), rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no #{anchor}"


def test_the_anchors_are_githubs() -> None:
    text = "# Operations\n## Read the dashboard\n### DLQNotEmpty\n## Alerts\n## Alerts\n"
    text += "```sh\n# not a heading\n```\n## `sutazai doctor`, then (what) to do\n"
    assert github_anchors(text) == {
        "operations",
        "read-the-dashboard",
        "dlqnotempty",
        "alerts",
        "alerts-1",
        "sutazai-doctor-then-what-to-do",
    }
