"""A foreign client of the command service and the heartbeat stream (ARCHITECTURE §3-§4).

Run by tests/commands.rs with the test kit's Python (nats-py):

    python foreign_client.py <nats-url> <town>

It publishes JSON heartbeats with a JetStream publish to gastown.hb.<town>.<agent>, sends
commands with nc.request and checks the replies (bodies and micro-service error headers). Any
mismatch exits non-zero with a message on stderr.
"""

import asyncio
import json
import sys

import nats

FAILURES = []


def check(what, got, want):
    if got != want:
        FAILURES.append(f"{what}: got {got!r}, want {want!r}")


async def command(nc, town, name, body, headers=None):
    msg = await nc.request(f"gastown.cmd.{town}.{name}", json.dumps(body).encode(), timeout=10, headers=headers)
    return json.loads(msg.data), (msg.headers or {})


async def main(url, town):
    nc = await nats.connect(url)
    js = nc.jetstream()

    # A heartbeat, as an agent container publishes it (plain JetStream publish, JSON body).
    ack = await js.publish(
        f"gastown.hb.{town}.p1",
        json.dumps({"status": "running", "sent_at": 1, "active_tools": []}).encode(),
        headers={"Content-Type": "application/json"},
    )
    check("heartbeat stored in GASTOWN_HB", ack.stream, "GASTOWN_HB")

    reply, headers = await command(
        nc, town, "rig.add", {"rig_id": "r1", "name": "web", "git_url": "https://example.com/web.git"}
    )
    check("rig.add ok", reply.get("ok"), True)
    check("rig.add has a seq", isinstance(reply.get("seq"), int), True)
    check("rig.add has no error header", headers.get("Nats-Service-Error-Code"), None)

    reply, _ = await command(nc, town, "agent.register", {"agent_id": "p1", "role": "polecat", "rig_id": "r1"})
    check("agent.register ok", reply.get("ok"), True)

    body = {"bead_id": "b1", "title": "Fix login", "rig_id": "r1"}
    reply, _ = await command(nc, town, "bead.sling", body, headers={"Nats-Msg-Id": "sling-1"})
    check("bead.sling reply", reply, {"ok": True, "event_id": f"{town}:c:sling-1", "seq": reply.get("seq")})
    again, _ = await command(nc, town, "bead.sling", body, headers={"Nats-Msg-Id": "sling-1"})
    check(
        "repeated bead.sling",
        again,
        {"ok": True, "event_id": f"{town}:c:sling-1", "seq": reply.get("seq"), "duplicate": True},
    )

    reply, headers = await command(nc, town, "bead.sling", {"title": "no rig"})
    check(
        "bead.sling without rig_id",
        reply,
        {"ok": False, "error": {"code": "bad_request", "message": "missing required field: rig_id"}},
    )
    check("400 header", headers.get("Nats-Service-Error-Code"), "400")
    check("error message header", headers.get("Nats-Service-Error"), "missing required field: rig_id")

    reply, headers = await command(nc, town, "bead.sling", body)
    check("409 body", reply.get("error", {}).get("message"), "bead b1 already exists")
    check("409 header", headers.get("Nats-Service-Error-Code"), "409")

    # A heartbeat after the registration: the registration reset the agent's memory, so this one
    # reports p1 alive whatever the first one did.
    await js.publish(
        f"gastown.hb.{town}.p1",
        json.dumps({"status": "running", "sent_at": 2}).encode(),
        headers={"Content-Type": "application/json"},
    )

    reply, headers = await command(nc, town, "no.such", {})
    check("404 header", headers.get("Nats-Service-Error-Code"), "404")
    check("404 body", reply.get("error", {}).get("code"), "unknown_command")

    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    if FAILURES:
        for f in FAILURES:
            print(f, file=sys.stderr)
        sys.exit(1)
    print("ok")
