#!/usr/bin/env python3
"""Static checks of deploy/ (no Docker needed; CI does not run it):

- compose.yaml parses and has the stack issue 19 asks for: postgres, redis,
  an S3 store, two API instances (`serve`), one scheduler, and an nginx lb
  that proxies WebSocket upgrades to both instances;
- every metric the Grafana dashboard queries is one src/infra/metrics.rs
  defines (histograms by their _bucket/_count/_sum series).

    python3 scripts/check-deploy.py
"""
import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
errors = []


def check(ok, what):
    if not ok:
        errors.append(what)


compose = yaml.safe_load((root / "deploy/compose.yaml").read_text())
services = compose.get("services", {})
for name in ["postgres", "redis", "minio", "api1", "api2", "scheduler", "lb"]:
    check(name in services, f"compose: no service {name}")
for api in ["api1", "api2"]:
    s = services.get(api, {})
    check(s.get("command") == ["serve"], f"compose: {api} does not run serve")
    check(s.get("build", {}).get("dockerfile") == "Dockerfile", f"compose: {api} not built from the Dockerfile")
check(services.get("scheduler", {}).get("command") == ["scheduler"], "compose: scheduler command")
env = services.get("api1", {}).get("environment", {})
for key in ["DB_HOST", "REDIS_HOST", "S3_ENDPOINT"]:
    check(key in env, f"compose: api1 lacks {key}")
nginx = (root / "deploy/nginx.conf").read_text()
for needle in ["server api1:8080", "server api2:8080", "proxy_set_header Upgrade $http_upgrade",
               "proxy_set_header Connection $connection_upgrade", "proxy_http_version 1.1"]:
    check(needle in nginx, f"nginx.conf: no `{needle}`")
lb_volumes = " ".join(services.get("lb", {}).get("volumes", []))
check("nginx.conf" in lb_volumes, "compose: lb does not mount nginx.conf")

source = (root / "src/infra/metrics.rs").read_text()
defined = set(re.findall(r'(?:counter|gauge|histogram)!\(\s*"([a-z_]+)"', source))
histograms = set(re.findall(r'histogram!\(\s*"([a-z_]+)"', source))
dashboard = json.loads((root / "deploy/grafana/atoitalk-dashboard.json").read_text())
used = set()
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        used |= set(re.findall(r"\b([a-z][a-z_]*_(?:total|seconds|bucket|count|sum|sockets|connections|waiters))\b",
                               target["expr"]))
for name in sorted(used):
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    ok = name in defined or (base != name and base in histograms)
    check(ok, f"dashboard: {name} is not a metric of src/infra/metrics.rs")
check(used, "dashboard: no metric found")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"deploy ok: {len(services)} services, dashboard uses {len(used)} metric series names, all defined")
