#!/usr/bin/python3
"""Checks docker-compose.yml without a Docker engine: `docker-compose config`
(Debian's docker-compose) validates and resolves it, then the wiring is
checked: the relay starts after the migration completed and PostgreSQL and
Kafka are healthy, both use the same database and the credentials PostgreSQL
is created with, Kafka is a single KRaft node whose advertised listener is
what the relay and Kafka UI dial, Kafka UI is on 8080, and every OUTBOX_*
variable is one the relay reads.

usage: check_compose.py --compose FILE --relay BIN
"""

import argparse
import base64
import math
import os
import re
import shutil
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkgcheck import Checker, RelayProcess, free_port, relay_env_names, unknown_env  # noqa: E402

RELAY, MIGRATE = "outbox-relay", "migrate"
INITDB = "/docker-entrypoint-initdb.d"


def compose_config(compose, env):
    exe = shutil.which("docker-compose")
    if not exe:
        raise SystemExit("docker-compose not found: install it (scripts/install-deps.sh)")
    # Only what the file may interpolate, so the machine's environment cannot
    # change the result; no .env file is read from a scratch project dir.
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    clean.update(env)
    p = subprocess.run([exe, "-f", compose, "--project-directory", os.path.dirname(os.path.abspath(compose)),
                        "config"], capture_output=True, text=True, env=clean, timeout=120)
    return p.returncode, p.stdout, p.stderr


def duration_s(s):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(s))
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0) if m and s else None


def listeners(value):
    """'PLAINTEXT://kafka:9092,CONTROLLER://:9093' -> {name: (host, port)}."""
    out = {}
    for item in filter(None, str(value).split(",")):
        name, _, addr = item.partition("://")
        host, _, port = addr.rpartition(":")
        out[name] = (host, int(port))
    return out


def ports_of(service):
    """[(host_ip, published, target)] of a service, from either form
    `docker-compose config` prints: "127.0.0.1:5432:5432/tcp" or a mapping."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((p.get("host_ip") or "", str(p.get("published", "")), int(p.get("target"))))
        else:
            parts = str(p).split("/")[0].split(":")
            ip = ":".join(parts[:-2]) if len(parts) > 2 else ""
            pub = parts[-2] if len(parts) > 1 else ""
            out.append((ip, pub, int(parts[-1])))
    return out


def initdb_roles(compose_dir, pg):
    """{role: attributes text} created by the SQL of the scripts mounted into
    the postgres container's /docker-entrypoint-initdb.d."""
    roles = {}
    for v in pg.get("volumes") or []:
        src, _, rest = str(v).partition(":") if isinstance(v, str) else (v.get("source", ""), "", v.get("target", ""))
        if not rest.startswith(INITDB):
            continue
        src = src if os.path.isabs(src) else os.path.join(compose_dir, src)
        for f in sorted(os.listdir(src)) if os.path.isdir(src) else []:
            text = open(os.path.join(src, f)).read()
            for m in re.finditer(r"CREATE ROLE\s+(\w+)\s+([^;]*);", text, re.I):
                roles[m.group(1)] = m.group(2)
    return roles


def check(c, cfg, known, prefixes, expect, compose_dir):
    svcs = cfg.get("services") or {}
    for name in ("postgres", "kafka", "kafka-ui", MIGRATE, RELAY):
        c.check(name in svcs, f"service {name}")
    if not all(n in svcs for n in ("postgres", "kafka", "kafka-ui", MIGRATE, RELAY)):
        return
    pg, kafka, ui, mig, relay = (svcs[n] for n in ("postgres", "kafka", "kafka-ui", MIGRATE, RELAY))
    env = lambda s: {k: ("" if v is None else str(v)) for k, v in (s.get("environment") or {}).items()}
    penv, kenv, uenv, menv, renv = env(pg), env(kafka), env(ui), env(mig), env(relay)

    # Start order and health.
    for name in ("postgres", "kafka", RELAY):
        test = (svcs[name].get("healthcheck") or {}).get("test")
        c.check(test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has a health check: {test}")
    deps = lambda s: {k: (v or {}).get("condition") for k, v in (s.get("depends_on") or {}).items()}
    c.eq(deps(relay), {MIGRATE: "service_completed_successfully", "postgres": "service_healthy",
                       "kafka": "service_healthy"}, "relay depends_on")
    c.eq(deps(mig), {"postgres": "service_healthy"}, "migrate depends_on")
    c.eq(deps(ui).get("kafka"), "service_healthy", "kafka-ui waits for a healthy Kafka")
    c.eq((mig.get("command") or [])[:1], ["migrate"], "migrate command")
    c.eq(relay.get("command"), ["run"], "relay command")
    c.check(str(mig.get("restart", "no")) in ("no", "False", "false"),
            f"migrate is one-shot: restart {mig.get('restart')!r}")
    c.check(relay.get("restart") in ("unless-stopped", "always", "on-failure"), "relay restarts")
    for s, name in ((mig, MIGRATE), (relay, RELAY)):
        ctx = (s.get("build") or {}).get("context") if isinstance(s.get("build"), dict) else s.get("build")
        c.check(ctx and os.path.isfile(os.path.join(ctx, (s.get("build") or {}).get("dockerfile", "Dockerfile"))),
                f"{name} is built from the repository's Dockerfile ({ctx})")
        c.check(s.get("read_only") is True, f"{name} has a read-only root filesystem")
        c.check(str(s.get("user", "")) not in ("0", "root"), f"{name} does not run as root")

    # Database: the same one for both; the migration as the superuser (DDL),
    # the relay as a role of its own that the initdb script creates without
    # any power to create, and that the migration grants DML rights to.
    c.eq(menv.get("OUTBOX_SCHEMA"), renv.get("OUTBOX_SCHEMA"), "migrate and relay schema")
    murl = urlsplit(menv.get("OUTBOX_DATABASE_URL", ""))
    url = urlsplit(renv.get("OUTBOX_DATABASE_URL", ""))
    for who, u in (("migrate", murl), ("relay", url)):
        c.check(u.scheme in ("postgres", "postgresql"), f"{who} database URL scheme {u.scheme!r}")
        c.eq(u.hostname, "postgres", f"{who} database host is the postgres service")
        c.eq(u.port or 5432, 5432, f"{who} database port")
        c.eq(u.path.lstrip("/"), penv.get("POSTGRES_DB"), f"{who} database name is PostgreSQL's")
    c.eq((unquote(murl.username or ""), unquote(murl.password or "")),
         (penv.get("POSTGRES_USER"), penv.get("POSTGRES_PASSWORD")), "migrate logs in as PostgreSQL's superuser")
    relay_user = unquote(url.username or "")
    c.check(relay_user and relay_user != penv.get("POSTGRES_USER"),
            f"the relay's database user {relay_user!r} is not the superuser {penv.get('POSTGRES_USER')!r}")
    roles = initdb_roles(compose_dir, pg)
    c.check(relay_user in roles, f"an initdb script creates the relay's role {relay_user!r}: {sorted(roles)}")
    for role, attrs in roles.items():
        c.check(re.search(r"\bNOSUPERUSER\b", attrs) and re.search(r"\bNOCREATEDB\b", attrs)
                and re.search(r"\bNOCREATEROLE\b", attrs) and not re.search(r"\bBYPASSRLS\b", attrs),
                f"role {role} may not create anything: {attrs!r}")
    c.eq(unquote(url.password or ""), penv.get("OUTBOX_RELAY_PASSWORD"),
         "the relay's password is the one PostgreSQL's initdb script is given")
    cmd = mig.get("command") or []
    grant = lambda flag: cmd[cmd.index(flag) + 1] if flag in cmd[:-1] else None
    c.eq(grant("--grant-relay"), relay_user, "migrate --grant-relay names the relay's role")
    c.check(grant("--grant-writer") in roles, f"migrate --grant-writer names a role the initdb script creates: {cmd}")

    # Published ports: on the host's loopback only (Kafka UI has no login, the
    # passwords are defaults); containers reach each other on the compose network.
    for name, s in svcs.items():
        for ip, pub, target in ports_of(s):
            c.eq(ip, "127.0.0.1", f"{name} publishes {pub}:{target} on 127.0.0.1 only")
    for k, v in expect.items():
        c.eq({**penv, **renv}.get(k), v, f"{k} from the environment")

    # Kafka: one KRaft node, both roles, its own controller quorum.
    c.check(not any(k.startswith("KAFKA_ZOOKEEPER") or k.startswith("KAFKA_CFG_ZOOKEEPER") for k in kenv),
            "no ZooKeeper settings")
    c.eq(set(kenv.get("KAFKA_PROCESS_ROLES", "").split(",")), {"broker", "controller"}, "KAFKA_PROCESS_ROLES")
    node = kenv.get("KAFKA_NODE_ID")
    lst = listeners(kenv.get("KAFKA_LISTENERS", ""))
    adv = listeners(kenv.get("KAFKA_ADVERTISED_LISTENERS", ""))
    ctl = kenv.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
    voters = kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    m = re.fullmatch(r"(\d+)@([^:,]+):(\d+)", voters)
    c.check(m and m.group(1) == node and m.group(2) in ("kafka", "localhost") and ctl in lst
            and int(m.group(3)) == lst[ctl][1],
            f"quorum voters {voters!r} is this node {node} on its {ctl} listener {lst.get(ctl)}")
    protomap = dict(x.split(":") for x in kenv.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",") if x)
    c.check(set(lst) <= set(protomap), f"every listener has a protocol: {sorted(lst)} vs {protomap}")
    c.check(ctl not in adv, "the controller listener is not advertised")
    try:
        c.eq(len(base64.urlsafe_b64decode(kenv.get("CLUSTER_ID", "") + "==")), 16, "CLUSTER_ID is a base64 UUID")
    except ValueError:
        c.check(False, f"CLUSTER_ID {kenv.get('CLUSTER_ID')!r} is base64")
    for k in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        c.eq(kenv.get(k), "1", f"{k} on a single node")
    c.eq(kenv.get("KAFKA_INTER_BROKER_LISTENER_NAME") in adv, True, "inter-broker listener is advertised")
    # What the relay and Kafka UI dial must be an advertised address reachable in the network.
    in_net = {f"{h}:{p}" for h, p in adv.values() if h == "kafka"}
    for who, val in (("relay", renv.get("OUTBOX_KAFKA_BROKERS", "")),
                     ("kafka-ui", uenv.get("KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS", ""))):
        c.check(val and set(val.split(",")) <= in_net, f"{who} bootstrap {val!r} is an advertised listener {in_net}")

    # Kafka UI on 8080.
    ports = [(pub, target) for _, pub, target in ports_of(ui)]
    c.check(("8080", 8080) in ports, f"kafka-ui published on 8080: {ui.get('ports')}")

    # The relay's HTTP listener, published and health-checked on /readyz.
    listen = renv.get("OUTBOX_HTTP_LISTEN", "")
    c.check(re.fullmatch(r"0\.0\.0\.0:\d+", listen), f"OUTBOX_HTTP_LISTEN {listen!r} listens on all addresses")
    port = int(listen.rsplit(":", 1)[1]) if ":" in listen else None
    c.check(any(target == port for _, _, target in ports_of(relay)), f"relay publishes its HTTP port {port}")
    test = " ".join((relay.get("healthcheck") or {}).get("test") or [])
    c.check("/readyz" in test and str(port) in test, f"relay health check asks /readyz on {port}: {test!r}")
    grace = duration_s(relay.get("stop_grace_period", "10s"))
    shutdown_ms = int(renv.get("OUTBOX_SHUTDOWN_TIMEOUT_MS", "10000"))
    c.check(grace and grace > math.ceil(shutdown_ms / 1000),
            f"stop_grace_period {relay.get('stop_grace_period')} exceeds the shutdown timeout {shutdown_ms} ms")

    # Every OUTBOX_* variable is one the relay reads.
    c.eq(unknown_env(set(menv) | set(renv), known, prefixes), [], "OUTBOX_* variables the relay does not read")
    for k in ("OUTBOX_DATABASE_URL", "OUTBOX_KAFKA_BROKERS"):
        c.check(renv.get(k), f"relay sets {k}")


def check_running(c, cfg, relay_bin):
    """Runs the real binary with the services' environments (database and
    Kafka replaced by closed local ports, the HTTP port by a free one): the
    migration must get past its configuration (exit 1 for the unreachable
    database, not 2 for a refused setting); the relay must serve /healthz,
    and its health check command must fail while /readyz says not ready
    (no database) yet pass against /healthz, so it can pass at all."""
    svcs = cfg.get("services") or {}
    if not all(svcs.get(n, {}).get("command") for n in (MIGRATE, RELAY)):
        c.check(False, "migrate and relay services with commands to run")
        return
    local_db = "postgresql://relay:pw@127.0.0.1:1/app?connect_timeout=2"
    menv = {k: str(v) for k, v in (svcs[MIGRATE].get("environment") or {}).items()}
    menv["OUTBOX_DATABASE_URL"] = local_db
    cmd = list(svcs[MIGRATE]["command"])
    with RelayProcess(relay_bin, cmd, menv) as proc:
        try:
            rc = proc.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None
        c.eq(rc, 1, "migrate with an unreachable database exits 1 (2 is a refused setting) "
             + proc.proc.stderr.read()[-300:])
    renv = {k: str(v) for k, v in (svcs[RELAY].get("environment") or {}).items()}
    listen = renv.get("OUTBOX_HTTP_LISTEN", "")
    old_port, port = listen.rsplit(":", 1)[-1], free_port()
    renv.update(OUTBOX_DATABASE_URL=local_db, OUTBOX_KAFKA_BROKERS="127.0.0.1:1",
                OUTBOX_HTTP_LISTEN=f"{listen.rsplit(':', 1)[0]}:{port}")
    test = (svcs[RELAY].get("healthcheck") or {}).get("test") or []
    with RelayProcess(relay_bin, svcs[RELAY]["command"], renv) as proc:
        if not proc.wait_live(c, port, "/healthz"):
            return
        if c.check(test[:1] in (["CMD"], ["CMD-SHELL"]), f"health check form {test[:1]}"):
            argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
            argv = [a.replace(f"/{old_port}", f"/{port}").replace(f":{old_port}", f":{port}") for a in argv]
            run = lambda av: subprocess.run(av, capture_output=True, timeout=30).returncode
            c.check(run(argv) != 0, "health check fails while the relay is not ready")
            c.eq(run([a.replace("/readyz", "/healthz") for a in argv]), 0,
                 "the same health check passes against /healthz")
        c.eq(proc.stop(), 0, "relay exit status after SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose", required=True)
    ap.add_argument("--relay", required=True)
    a = ap.parse_args()
    known, prefixes = relay_env_names(a.relay)
    c = Checker("compose")

    c.section("defaults")
    rc, out, err = compose_config(a.compose, {})
    c.check(rc == 0, f"docker-compose config accepts the file (exit {rc}): {err.strip()[-500:]}")
    if rc == 0:
        cfg = yaml.safe_load(out)
        check(c, cfg, known, prefixes, {}, os.path.dirname(os.path.abspath(a.compose)))
        c.section("the relay run with the services' environments")
        check_running(c, cfg, a.relay)

    c.section("credentials from the environment")
    env = {"POSTGRES_USER": "orders", "POSTGRES_PASSWORD": "s3cr3t", "POSTGRES_DB": "orders",
           "OUTBOX_RELAY_PASSWORD": "relay-s3cr3t", "OUTBOX_WRITER_PASSWORD": "writer-s3cr3t",
           "OUTBOX_SCHEMA": "orders_outbox", "OUTBOX_DEFAULT_TOPIC": "order-events"}
    rc, out, err = compose_config(a.compose, env)
    c.check(rc == 0, f"docker-compose config with variables (exit {rc}): {err.strip()[-500:]}")
    if rc == 0:
        check(c, yaml.safe_load(out), known, prefixes,
              {k: v for k, v in env.items() if k not in ("POSTGRES_USER", "POSTGRES_DB")},
              os.path.dirname(os.path.abspath(a.compose)))
    c.finish()


if __name__ == "__main__":
    main()
