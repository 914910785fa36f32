"""Helpers of scripts/check/deploy.sh: the checks that need to read YAML or JSON. Each
subcommand prints what it checked and exits 1 on a failure.

  compose-ha CONFIG_JSON          HA file: replicas, limits, health checks, restart policy
  compose-prod CONFIG_JSON        prod file: production profile, limits, health checks
  rule-tests RULES_DIR TESTS_DIR  every alert fires and stays silent; every recording rule tested
  dashboard DASHBOARD DATASOURCES OUT_RULES   panels, datasource, expressions to a rule file
  names EXPOSITION RULES_DIR DASHBOARD        every metric used is exported
  e2e-config SOURCE RULES_DIR TARGET OUT      Prometheus config for the end-to-end check
"""

import json
import re
import sys
from pathlib import Path

import yaml

failures = 0


def ok(message):
    print(f"  ok: {message}")


def fail(message):
    global failures
    failures += 1
    print(f"  FAIL: {message}")


def expect(condition, message):
    ok(message) if condition else fail(message)


# The resource limits each service of the compose files must have: (cpus, memory); face-api
# also reserves.
GIB, MIB = 1024**3, 1024**2
LIMITS = {
    "face-api": (2, 2 * GIB),
    "postgres": (2, 2 * GIB),
    "postgres-replica": (2, 2 * GIB),
    "redis": (1, GIB),
    "redis-replica": (1, GIB),
    "traefik": (0.5, 256 * MIB),
    "prometheus": (1, GIB),
    "grafana": (0.5, 512 * MIB),
}
FACE_API_RESERVATION = (0.5, 512 * MIB)


def limits_of(service, kind="limits"):
    res = service.get("deploy", {}).get("resources", {}).get(kind, {})
    return float(res.get("cpus", 0)), int(res.get("memory", 0))


def check_health_and_restart(services, need_health):
    for name, service in sorted(services.items()):
        health = service.get("healthcheck")
        if name in need_health or health:
            expect(
                health is not None
                and health.get("interval") == "30s"
                and health.get("retries") == 3
                and not health.get("disable"),
                f"{name}: health check every 30s, 3 retries",
            )
        policy = service.get("deploy", {}).get("restart_policy", {})
        expect(
            policy.get("condition") == "on-failure" and policy.get("max_attempts") == 3,
            f"{name}: restart on-failure, at most 3 attempts",
        )


def ready_probe(service, path="/health/ready"):
    return any(path in part for part in service.get("healthcheck", {}).get("test", []))


def compose_ha(path):
    config = json.loads(Path(path).read_text())
    services = config["services"]
    wanted = {"traefik", "face-api", "postgres", "postgres-replica", "redis", "redis-replica",
              "minio", "prometheus", "grafana", "jaeger"}
    expect(wanted <= services.keys(), f"services {sorted(wanted)} present")
    api = services["face-api"]
    expect(api.get("deploy", {}).get("replicas") == 3, "face-api: 3 replicas")
    expect("container_name" not in api and not api.get("ports"),
           "face-api: no container name or host port (replicas sit behind Traefik)")
    for name, (cpus, memory) in LIMITS.items():
        expect(limits_of(services[name]) == (cpus, memory), f"{name}: limits {cpus} CPU, {memory // MIB} MiB")
    expect(limits_of(api, "reservations") == FACE_API_RESERVATION, "face-api: reserves 0.5 CPU, 512 MiB")
    check_health_and_restart(services, LIMITS.keys())
    expect(ready_probe(api, "/health/read"), "face-api: health check on /health/read (routable while PostgreSQL is down)")
    env = api.get("environment", {})
    expect(env.get("VISAGE_PROFILE") == "production", "face-api: production profile")
    expect("@postgres:5432/" in env.get("VISAGE_DATABASE__URL", ""), "face-api: PostgreSQL primary")
    expect(env.get("VISAGE_IMAGES__BACKEND") == "s3" and "minio" in env.get("VISAGE_IMAGES__S3_ENDPOINT", ""),
           "face-api: images on MinIO")
    expect(env.get("VISAGE_TRACING__OTLP_ENDPOINT", "").endswith(":4318"), "face-api: traces to Jaeger OTLP/HTTP")
    command = " ".join(services["traefik"].get("command", []))
    ports = {(p.get("published"), p.get("target")) for p in services["traefik"].get("ports", [])}
    expect("acme" in command and "tlschallenge" in command, "traefik: Let's Encrypt resolver")
    expect(("8080", 8080) in ports and ("443", 443) in ports, "traefik: 443 and the dashboard on 8080")
    labels = api.get("labels", {})
    expect(labels.get("traefik.http.routers.face-api.tls.certresolver") == "le", "face-api: routed over TLS by Traefik")
    retry = "traefik.http.middlewares.face-api-retry.retry."
    expect(all(labels.get(f"traefik.http.routers.{r}.middlewares") == "face-api-retry" for r in ("face-api", "face-api-local"))
           and labels.get(retry + "status") == "502" and labels.get(retry + "retrynonidempotentmethod") == "true",
           "face-api: Traefik retries a 502 from a dying replica on another, POSTs too")
    expect(labels.get("traefik.http.services.face-api.loadbalancer.healthcheck.path") == "/health/read",
           "face-api: Traefik routes by /health/read, so verify and identify go on while PostgreSQL is down")
    expect(labels.get("traefik.http.services.face-api.loadbalancer.healthcheck.interval") == "1s"
           and "traefik.http.services.face-api.loadbalancer.passivehealthcheck.maxfailedattempts" in labels,
           "face-api: Traefik checks readiness every second and skips a replica that just failed")
    replica = " ".join(services["redis-replica"].get("command", []))
    expect("--replicaof redis 6379" in replica, "redis-replica follows redis")
    expect(services["postgres-replica"]["environment"].get("PRIMARY_HOST") == "postgres",
           "postgres-replica streams from postgres")


def compose_prod(path):
    config = json.loads(Path(path).read_text())
    services = config["services"]
    api = services["face-api"]
    expect(api.get("environment", {}).get("VISAGE_PROFILE") == "production", "face-api: production profile")
    for name in ("face-api", "postgres", "redis"):
        expect(limits_of(services[name]) == LIMITS[name], f"{name}: the required limits")
    check_health_and_restart(services, {"face-api", "postgres", "redis"})
    expect(ready_probe(api), "face-api: health check on /health/ready")


def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


def rules_of(rules_dir):
    alerts, records = {}, {}
    for path in sorted(Path(rules_dir).glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule["expr"]
                else:
                    records[rule["record"]] = rule["expr"]
    return alerts, records


def rule_tests(rules_dir, tests_dir):
    alerts, records = rules_of(rules_dir)
    fires, silent, recorded = set(), set(), set()
    for path in sorted(Path(tests_dir).glob("*.yml")):
        for test in load_yaml(path).get("tests", []):
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
            for case in test.get("promql_expr_test", []):
                if case.get("exp_samples") and case["expr"] in records:
                    recorded.add(case["expr"])
    for name in sorted(alerts):
        expect(name in fires and name in silent, f"alert {name}: a test where it fires and one where it stays silent")
    for name in sorted(records):
        expect(name in recorded, f"recording rule {name}: a test of its value")
    required = {"biometric:far:5m", "biometric:frr:5m", "biometric:eer:5m", "biometric:compliance:far",
                "biometric:compliance:frr", "biometric:compliance:overall", "biometric:latency:p95:5m",
                "biometric:throughput:5m"}
    expect(required <= records.keys(), "the required recording rules all exist")
    required_alerts = {"HighFAR", "CriticalEER", "HighSeverityFalseAccepts", "SpoofingAttackDetected", "HighFRR",
                   "HighEER", "LowLivenessDetectionRate", "VerificationLatencyHigh"}
    expect(required_alerts <= alerts.keys(), "the required biometric alerts all exist")


# The dashboard's panels, in order (12: no GPU here, see the panel's description).
PANELS = [
    ("FAR/FRR Compliance", "stat"), ("Equal Error Rate", "gauge"), ("Overall Compliance Status", "stat"),
    ("FAR/FRR Trend (24h)", "timeseries"), ("False Accepts by Severity", "timeseries"),
    ("False Rejects by Severity", "timeseries"), ("Liveness Detection Rate", "timeseries"),
    ("Spoofing Attacks", "piechart"), ("P95 Response Time", "timeseries"),
    ("Verification Throughput", "timeseries"), ("Confidence Distribution", "heatmap"),
    ("GPU Utilization", "timeseries"),
]
# Grafana's variables, replaced by a duration so that promtool can parse the expression.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def panel_expressions(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield panel, target, expr


def dashboard(path, datasources_path, out_rules):
    board = json.loads(Path(path).read_text())
    uids = {d["uid"] for d in load_yaml(datasources_path)["datasources"] if d["type"] == "prometheus"}
    panels = board["panels"]
    expect(len(panels) == 12, f"{len(panels)} panels (12 wanted)")
    for i, (panel, (title, kind)) in enumerate(zip(panels, PANELS), 1):
        expect(title in panel["title"] and panel["type"] == kind, f"panel {i}: {kind} '{panel['title']}'")
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        expect(panel.get("targets") and all(s and s.get("uid") in uids for s in sources),
               f"panel {i}: queries the provisioned Prometheus datasource")
    bars = [p for p in panels[4:6] if p["fieldConfig"]["defaults"].get("custom", {}).get("drawStyle") == "bars"
            and p["fieldConfig"]["defaults"]["custom"].get("stacking", {}).get("mode") == "normal"]
    expect(len(bars) == 2, "panels 5 and 6 are stacked bars")
    expect(panels[3].get("timeFrom") == "24h", "panel 4 shows 24 hours")
    rules = [{"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr}
             for p, t, expr in panel_expressions(board)]
    Path(out_rules).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    ok(f"{len(rules)} panel expressions written to {out_rules} for promtool")


KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan"}


def metric_names(expr):
    """Metric names a PromQL expression selects (a lexer's view: strings, label matchers,
    ranges, grouping clauses, numbers and function calls removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+|ms|s|m|h|d|w|y)?", "", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


# Series from elsewhere than visage: Prometheus's own per-target series and redis_exporter's.
NOT_FROM_VISAGE = {"up", "redis_memory_used_bytes", "redis_memory_max_bytes"}


def names(exposition, rules_dir, dashboard_path):
    exported = set()
    for line in Path(exposition).read_text().splitlines():
        if line and not line.startswith("#"):
            exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    alerts, records = rules_of(rules_dir)
    used = {}
    for name, expr in list(alerts.items()) + list(records.items()):
        for metric in metric_names(expr):
            used.setdefault(metric, set()).add(f"rule {name}")
    for panel, target, expr in panel_expressions(json.loads(Path(dashboard_path).read_text())):
        for metric in metric_names(expr):
            used.setdefault(metric, set()).add(f"panel {panel['id']}")
    print(f"  the running service exported {len(exported)} series names")
    for metric in sorted(used):
        where = ", ".join(sorted(used[metric]))
        if metric in exported:
            ok(f"{metric} exported by visage ({where})")
        elif metric in records:
            ok(f"{metric} is a recording rule ({where})")
        elif metric in NOT_FROM_VISAGE:
            ok(f"{metric} comes from Prometheus or an exporter ({where})")
        else:
            fail(f"{metric} is used ({where}) but the service does not export it")


def e2e_config(source, rules_dir, target, out):
    """The stack's Prometheus configuration with its face-api job pointed at one local target,
    fast intervals and the rule files by absolute path."""
    config = load_yaml(source)
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(Path(rules_dir).resolve() / "*.yml")]
    config.pop("alerting", None)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "face-api")
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]
    Path(out).write_text(yaml.safe_dump(config, sort_keys=False))
    ok(f"job face-api ({job['metrics_path']}) scrapes {target}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"compose-ha": compose_ha, "compose-prod": compose_prod, "rule-tests": rule_tests, "dashboard": dashboard,
     "names": names, "e2e-config": e2e_config}[command](*args)
    sys.exit(1 if failures else 0)
