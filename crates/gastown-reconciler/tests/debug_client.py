"""A foreign client of the debug service (ARCHITECTURE §3-§4, DOMAIN §D).

Run by tests/debug.rs with the test kit's Python (nats-py), against a server where:
- town py1 has 30 scripted events (rig_added at 2026-06-01T10:00:00Z, then one per second);
- town pybig has 20 000 events;
- town pyc had its first 5 events purged, with the purge point recorded in gastown-compaction
  (oldest kept event at 2026-06-01T10:00:05.000Z) and no snapshot;
- the prefix `busy` has a debug service that allows no fold.

    python debug_client.py <nats-url>

It requests every operation and every error of §D and checks bodies, key order and the
micro-service error headers. Any mismatch exits non-zero with a message on stderr.
"""

import asyncio
import json
import sys

import nats

FAILURES = []


def check(what, got, want):
    if got != want:
        FAILURES.append(f"{what}: got {got!r}, want {want!r}")


async def req(nc, subject, body=b""):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    msg = await nc.request(subject, body, timeout=30)
    return msg.data, (msg.headers or {})


async def expect_error(nc, what, subject, body, code, message):
    data, headers = await req(nc, subject, body)
    try:
        reply = json.loads(data)
    except ValueError:
        FAILURES.append(f"{what}: reply is not JSON: {data!r}")
        return
    check(f"{what} body", reply, {"error": message})
    check(f"{what} Nats-Service-Error-Code", headers.get("Nats-Service-Error-Code"), str(code))
    check(f"{what} Nats-Service-Error", headers.get("Nats-Service-Error"), message)


async def expect_ok(nc, what, subject, body=b""):
    data, headers = await req(nc, subject, body)
    check(f"{what} has no error code", headers.get("Nats-Service-Error-Code"), None)
    try:
        return json.loads(data), data.decode()
    except ValueError:
        FAILURES.append(f"{what}: reply is not JSON: {data!r}")
        return {}, ""


async def main(url):
    nc = await nats.connect(url)

    # Discovery.
    data, _ = await req(nc, "$SRV.PING.gastown-reconciler")
    check("PING name", json.loads(data).get("name"), "gastown-reconciler")
    data, _ = await req(nc, "$SRV.INFO.gastown-reconciler")
    info = json.loads(data)
    check("INFO endpoint subject", [e.get("subject") for e in info.get("endpoints", [])], ["gastown.debug.*.*"])
    data, _ = await req(nc, "$SRV.STATS.gastown-reconciler")
    check("STATS has the endpoint", len(json.loads(data).get("endpoints", [])), 1)

    # status (D1): key order and content.
    status, text = await expect_ok(nc, "status", "gastown.debug.py1.status")
    check("status key order", list(status.keys()), ["townId", "seq", "alarmStatus", "agentMeta", "beadSummary"])
    check("status townId", status.get("townId"), "py1")
    alarm = status.get("alarmStatus", {})
    check(
        "alarmStatus keys",
        list(alarm.keys()),
        ["alarm", "agents", "beads", "patrol", "reconciler", "recentEvents", "draining", "drainStartedAt", "circuitBreaker"],
    )
    check("no pass yet: ownerWorker", alarm.get("reconciler", {}).get("ownerWorker", "missing"), None)
    check("intervalLabel", alarm.get("alarm", {}).get("intervalLabel"), "event-driven")
    check("recentEvents is a list", isinstance(alarm.get("recentEvents"), list), True)

    # dry-run (D2).
    dry, _ = await expect_ok(nc, "dry-run", "gastown.debug.py1.dry-run", {"now": "2026-06-01T11:00:00Z"})
    check("dry-run key order", list(dry.keys()), ["seq", "now", "actions", "metrics", "invariantViolations"])
    check("dry-run now", dry.get("now"), "2026-06-01T11:00:00.000Z")
    check("dry-run seq", dry.get("seq"), status.get("seq"))
    check(
        "dry-run metrics keys",
        list(dry.get("metrics", {}).keys()),
        ["actionsEmitted", "actionsByType", "pendingEventCount", "eventsDrained"],
    )
    check("dry-run eventsDrained (decisions at 10 and 20)", dry.get("metrics", {}).get("eventsDrained"), 9)
    early, _ = await expect_ok(nc, "dry-run early now", "gastown.debug.py1.dry-run", {"now": "2020-01-01T00:00:00Z"})
    check("an early now is raised to the clock", early.get("now"), "2026-06-01T10:00:29.000Z")

    # replay (D3).
    window = {"from": "2026-06-01T10:00:05Z", "to": "2026-06-01T10:00:09.000Z"}
    rep, _ = await expect_ok(nc, "replay", "gastown.debug.py1.replay", window)
    check(
        "replay key order",
        list(rep.keys()),
        ["eventsReplayed", "fromSeq", "toSeq", "actions", "actionsByType", "stateSnapshot"],
    )
    check("replay eventsReplayed", rep.get("eventsReplayed"), 5)
    check("replay stateSnapshot keys", list(rep.get("stateSnapshot", {}).keys()), ["agents", "nonTerminalBeads"])
    empty, _ = await expect_ok(
        nc, "empty replay", "gastown.debug.py1.replay", {"from": "2026-06-01T09:00:00Z", "to": "2026-06-01T09:30:00Z"}
    )
    check("empty window", (empty.get("eventsReplayed"), empty.get("fromSeq"), empty.get("toSeq")), (0, None, None))

    # Every error, code and message.
    r = "gastown.debug.py1.replay"
    missing = "Missing required fields: from, to (ISO timestamps)"
    await expect_error(nc, "replay without fields", r, {}, 400, missing)
    await expect_error(nc, "replay without to", r, {"from": "2026-06-01T10:00:00Z"}, 400, missing)
    invalid = "Invalid date format. Use ISO 8601 timestamps."
    await expect_error(nc, "replay bad date", r, {"from": "yesterday", "to": "2026-06-01T10:00:00Z"}, 400, invalid)
    await expect_error(
        nc,
        "replay from after to",
        r,
        {"from": "2026-06-01T10:01:00Z", "to": "2026-06-01T10:00:00Z"},
        400,
        '"from" must be before or equal to "to"',
    )
    await expect_error(
        nc,
        "replay bad timeout",
        r,
        {"from": "2026-06-01T10:00:00Z", "to": "2026-06-01T10:01:00Z", "timeout_ms": 0},
        400,
        "invalid timeout_ms",
    )
    await expect_error(nc, "dry-run bad now", "gastown.debug.py1.dry-run", {"now": "soon"}, 400, invalid)
    for op, body in [("status", b""), ("dry-run", b""), ("replay", window)]:
        await expect_error(nc, f"{op} unknown town", f"gastown.debug.nobody.{op}", body, 404, "unknown town: nobody")
    await expect_error(
        nc,
        "replay too large",
        "gastown.debug.pybig.replay",
        {"from": "2026-06-01T09:00:00Z", "to": "2026-06-30T00:00:00Z", "timeout_ms": 1},
        413,
        "window too large to replay within 1 ms; narrow the window",
    )
    await expect_error(
        nc,
        "replay before the retained history",
        "gastown.debug.pyc.replay",
        {"from": "2026-06-01T10:00:00Z", "to": "2026-06-01T10:00:20Z"},
        422,
        '"from" is before the retained history (oldest event at 2026-06-01T10:00:05.000Z)',
    )
    for op, body in [("status", b""), ("dry-run", b""), ("replay", window)]:
        await expect_error(nc, f"{op} busy", f"busy.debug.py1.{op}", body, 503, "busy, retry")

    await nc.close()
    if FAILURES:
        for f in FAILURES:
            print(f, file=sys.stderr)
        sys.exit(1)
    print("debug client: all checks passed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
