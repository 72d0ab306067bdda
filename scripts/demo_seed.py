#!/usr/bin/env python3
"""Seed the local demo through the public API, as a project manager would:
organization "Riverside Water", projects "North Plant" and "South Plant", the
local broker adopted as each project's MQTT cluster, four gateways with
simulated water-plant devices, an enrollment token per gateway and a couple of
alert rules that fire now and then.

The broker's dynamic-security admin login comes from the environment
(WEIR_DEMO_MQTT_ADMIN_USER / WEIR_DEMO_MQTT_ADMIN_PASSWORD): the api logs in
with it to give every gateway a broker login of its own.

Prints `GATEWAY TOKEN` lines for the agents to enroll with. Standard library
only, so it runs on a fresh machine."""

import http.cookiejar
import json
import os
import sys
import urllib.error
import urllib.request

BASE, EMAIL, PASSWORD, BROKER = sys.argv[1:5]
MQTT_ADMIN = {"username": os.environ.get("WEIR_DEMO_MQTT_ADMIN_USER", ""),
              "password": os.environ.get("WEIR_DEMO_MQTT_ADMIN_PASSWORD", "")}
ORG = "riverside-water"

jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
csrf = None


def call(method, path, body=None, ok=(200, 201, 204)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if csrf and method != "GET":
        req.add_header("x-csrf-token", csrf)
    try:
        with opener.open(req) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        if e.code in ok:
            return e.code, None
        raise SystemExit(f"demo seed: {method} {path} failed: {e.code} {text}")


def ensure(path, body):
    """Create unless it exists (a second run reuses the data)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method="POST")
    req.add_header("content-type", "application/json")
    req.add_header("x-csrf-token", csrf)
    try:
        with opener.open(req) as r:
            return json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        if e.code == 409:
            return None
        raise SystemExit(f"demo seed: POST {path} failed: {e.code} {e.read().decode()}")


_, me = call("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
csrf = me.get("csrfToken") or me.get("csrf_token")

ensure("/api/v1/orgs", {"slug": ORG, "name": "Riverside Water",
                        "description": "Drinking water for the Riverside valley"})


def sim(name, kind, lo, hi, unit=None, period=None, step=None, fault=None, dtype="float64", decimals=2):
    sig = {"kind": kind, "min": lo, "max": hi}
    if period:
        sig["periodS"] = period
    if step:
        sig["step"] = step
    if fault is not None:
        sig["faultRate"] = fault
    tag = {"name": name, "address": "sim", "dataType": dtype, "signal": sig}
    if unit:
        tag["unit"] = unit
    if dtype.startswith("float"):
        tag["decimals"] = decimals
    return tag


GATEWAYS = {
    "north-plant": {
        "raw-water-ps1": ("Raw water pump station 1", [
            ("intake", 1000, [
                sim("intake_flow", "sine", 380, 520, "m3/h", period=900),
                sim("discharge_pressure", "randomWalk", 3.2, 4.1, "bar", step=0.01),
                sim("turbidity", "randomWalk", 1.0, 12.0, "NTU", step=0.02),
                sim("ph", "randomWalk", 6.8, 7.9, step=0.005),
            ]),
            ("pumps", 1000, [
                sim("pump1_running", "pump", 0, 1, period=1800, fault=0.0005, dtype="bool"),
                sim("pump1_fault", "pumpFault", 0, 1, fault=0.0005, dtype="bool"),
                sim("valve_position", "step", 20, 80, "%", period=600),
            ]),
        ]),
        "filtration": ("Rapid gravity filters", [
            ("filters", 1000, [
                sim("inlet_turbidity", "randomWalk", 0.5, 4.0, "NTU", step=0.02),
                sim("outlet_turbidity", "sine", 0.05, 0.3, "NTU", period=600),
                sim("head_loss", "ramp", 0.2, 2.5, "m", period=3600),
            ]),
        ]),
    },
    "south-plant": {
        "chlorination": ("Chlorine contact tank", [
            ("dosing", 1000, [
                sim("chlorine_residual", "randomWalk", 0.15, 1.6, "mg/L", step=0.02),
                sim("dose_rate", "sine", 1.5, 3.0, "kg/h", period=1200),
            ]),
        ]),
        "clear-well": ("Clear water storage", [
            ("levels", 2000, [
                sim("level", "sine", 2.0, 4.5, "m", period=3600),
                sim("outflow", "randomWalk", 300, 600, "m3/h", step=0.01),
            ]),
        ]),
    },
}

for project in GATEWAYS:
    ensure(f"/api/v1/orgs/{ORG}/projects",
           {"slug": project, "name": project.replace("-", " ").title()})
# The broker is the first project's cluster, shared with the others
# (a project reaches another project's cluster only when it is shared).
first, *others = GATEWAYS
cbase = f"/api/v1/orgs/{ORG}/projects/{first}/clusters"
cluster = {"name": "local-broker", "title": "Local Mosquitto", "backend": "external",
           "url": BROKER}
if MQTT_ADMIN["username"]:
    cluster.update(MQTT_ADMIN)
if ensure(cbase, cluster) is None and MQTT_ADMIN["username"]:
    # A cluster of an earlier demo: it gets the broker's admin login now.
    call("PATCH", f"{cbase}/local-broker", MQTT_ADMIN)
call("PATCH", f"{cbase}/local-broker", {"shared_with": others}, ok=(200, 422))

tokens = []
for project, gateways in GATEWAYS.items():
    pbase = f"/api/v1/orgs/{ORG}/projects/{project}"
    for gw, (site, groups) in gateways.items():
        device = {"name": gw.split("-")[0] + "-sim", "adapter": "simulator",
                  "simulator": {"seed": len(gw)},
                  "groups": [{"name": g, "intervalMs": iv, "tags": tags} for g, iv, tags in groups]}
        spec = {"site": {"name": site, "timezone": "Europe/London"}, "mode": "external",
                "clusterRef": "local-broker", "devices": [device],
                "uplink": {"lingerMs": 50}}
        created = ensure(f"{pbase}/gateways", {"name": gw, "spec": spec, "comment": "demo seed"})
        if created is not None:
            t = call("POST", f"{pbase}/gateways/{gw}/enrollment-tokens",
                     {"expires_in_secs": 86400, "max_uses": 1})[1]
            tokens.append((gw, t["token"]))

    rules = {
        "north-plant": [{"name": "Raw water turbidity high", "kind": "threshold",
                         "gateway": "raw-water-ps1", "tag": "turbidity", "op": ">",
                         "threshold": 10.0, "for_secs": 10, "severity": "warning",
                         "summary": "{{gateway}}/{{tag}} is {{value}}{{unit}} (limit {{threshold}}{{unit}})"}],
        "south-plant": [{"name": "Chlorine residual low", "kind": "threshold",
                         "gateway": "chlorination", "tag": "chlorine_residual", "op": "<",
                         "threshold": 0.3, "for_secs": 10, "severity": "critical",
                         "summary": "{{gateway}}/{{tag}} is {{value}}{{unit}} (limit {{threshold}}{{unit}})"},
                        {"name": "Clear well gateway offline", "kind": "gateway_offline",
                         "gateway": "clear-well", "for_secs": 0, "severity": "critical",
                         "summary": "{{gateway}} stopped reporting"}],
    }[project]
    _, existing = call("GET", f"{pbase}/alerts/rules")
    names = {r.get("name") for r in (existing.get("items", existing) if isinstance(existing, dict) else existing or [])}
    for r in rules:
        if r["name"] not in names:
            call("POST", f"{pbase}/alerts/rules", r)

for gw, token in tokens:
    print(gw, token)
