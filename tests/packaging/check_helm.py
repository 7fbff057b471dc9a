#!/usr/bin/python3
"""Checks the Helm chart helm/outbox-relay without Helm: builds helmrender
(Go text/template + sprig + Helm's functions, tests/packaging/helmrender) in
the build directory, renders the chart with the defaults and with overrides,
and checks what a cluster would get: the manifests parse, the probes hit the
relay's real paths and port, the database URL reaches the container only
through a Secret, every OUTBOX_* variable is one the relay reads, and the
settings that cannot work are refused with a message.

usage: check_helm.py --chart DIR --relay BIN --work DIR
"""

import argparse
import base64
import math
import os
import re
import shutil
import subprocess
import sys

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import monitoring  # noqa: E402
from pkgcheck import (Checker, RelayProcess, free_port, http_get,  # noqa: E402
                      relay_env_names, unknown_env)

HERE = os.path.dirname(os.path.abspath(__file__))
DB_URL = "postgres://relay:s3cr3t-pw@db.example:5432/app?sslmode=require"
MIGRATE_URL = "postgres://owner:ddl-s3cr3t@db.example:5432/app?sslmode=require"
SASL_PASSWORD = "kafka-s3cr3t"
# Every secret value any scenario passes: none may reach an env var, an
# argument or a ConfigMap of any rendered object.
SECRETS = (DB_URL, "s3cr3t-pw", MIGRATE_URL, "ddl-s3cr3t", SASL_PASSWORD)
NUMERIC = {"OUTBOX_BATCH_SIZE", "OUTBOX_PIPELINE_DEPTH", "OUTBOX_POLL_INTERVAL_MS",
           "OUTBOX_RETRY_BASE_MS", "OUTBOX_RETRY_MAX_MS", "OUTBOX_MAX_ATTEMPTS",
           "OUTBOX_SHUTDOWN_TIMEOUT_MS", "OUTBOX_RECONNECT_MAX_MS", "OUTBOX_LEADER_POLL_MS"}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def build_renderer(work):
    go = shutil.which("go")
    if not go:
        raise SystemExit("go not found: install golang-go and golang-github-masterminds-sprig-dev "
                         "(scripts/install-deps.sh)")
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "helmrender")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", CGO_ENABLED="0",
               GOCACHE=os.path.join(work, "gocache"), GOFLAGS="", GOENV="off")
    subprocess.run([go, "build", "-o", out, "."], cwd=os.path.join(HERE, "helmrender"), env=env,
                   check=True, timeout=600)
    return out


class Render:
    def __init__(self, renderer, chart, args):
        p = subprocess.run([renderer, *args, chart], capture_output=True, text=True, timeout=60)
        self.rc, self.text, self.err = p.returncode, p.stdout, p.stderr
        self.docs = [d for d in yaml.safe_load_all(p.stdout) if d] if p.returncode == 0 else []

    def all(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind, name=None):
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        return found[0] if len(found) == 1 else None


def hooks(doc):
    return set(filter(None, (doc["metadata"].get("annotations") or {}).get("helm.sh/hook", "").split(",")))


def matches(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def port_of(container, port):
    """A probe's or Service's port as a number: by name from the container's ports."""
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def env_entry(container, name):
    found = [e for e in container.get("env") or [] if e.get("name") == name]
    return found[-1] if found else None


def secret_value(secret, key):
    data = (secret or {}).get("data") or {}
    if key in data:
        try:
            return base64.b64decode(str(data[key]), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return f"<not base64: {data[key]!r}>"
    return ((secret or {}).get("stringData") or {}).get(key)


def secret_file(pod, container, path):
    """Where the file at path in the container comes from: {kind, name, key,
    mode, mount} of the secret or configMap volume item projected there, or
    None when no mounted volume item provides it."""
    for m in container.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/") + "/"
        if not path.startswith(mp):
            continue
        vol = next((v for v in pod.get("volumes") or [] if v.get("name") == m.get("name")), {})
        for kind, name_key in (("secret", "secretName"), ("configMap", "name")):
            src = vol.get(kind)
            if src is None:
                continue
            for item in src.get("items") or []:
                if item.get("path") == path[len(mp):]:
                    return {"kind": kind, "name": src.get(name_key), "key": item.get("key"),
                            "mode": item.get("mode", src.get("defaultMode", 0o644)), "mount": m}
    return None


def containers_of(d):
    spec = ((d.get("spec") or {}).get("template") or {}).get("spec") or d.get("spec") or {}
    return (spec.get("containers") or []) + (spec.get("initContainers") or [])


def check_no_secret_in_env(c, r):
    """Secrets only as files: no container of any rendered object gets a
    Secret through env or envFrom, and no secret value appears in an env
    value, an argument, a command or a ConfigMap."""
    for d in r.docs:
        for ctr in containers_of(d):
            what = f"{d['kind']} {d['metadata']['name']} container {ctr.get('name')}"
            refs = [e["name"] for e in ctr.get("env") or [] if "secretKeyRef" in (e.get("valueFrom") or {})]
            c.eq(refs, [], f"{what}: variables from a secretKeyRef")
            c.eq([e for e in ctr.get("envFrom") or [] if "secretRef" in e], [], f"{what}: envFrom Secrets")
            exposed = yaml.safe_dump({"env": ctr.get("env"), "args": ctr.get("args"),
                                      "command": ctr.get("command")})
            for secret in SECRETS:
                c.check(secret not in exposed, f"{what}: {secret!r} is not in its env, args or command")
    plain = "\n".join(yaml.safe_dump(d) for d in r.docs if d.get("kind") != "Secret")
    for secret in SECRETS:
        c.check(secret not in plain, f"{secret!r} appears only in Secrets")


def check_secret_mount(c, pod, ctr, what):
    """The secrets volume: read-only, no world bits, group-readable by fsGroup."""
    for m in ctr.get("volumeMounts") or []:
        vol = next((v for v in pod.get("volumes") or [] if v.get("name") == m.get("name")), {})
        if "secret" in vol:
            c.check(m.get("readOnly") is True, f"{what}: Secret volume {m.get('name')} mounted read-only")
            mode = vol["secret"].get("defaultMode", 0o644)
            c.check(mode & 0o007 == 0, f"{what}: Secret volume {m.get('name')} mode {oct(mode)} has no world bits")
            if mode & 0o070:
                c.check((pod.get("securityContext") or {}).get("fsGroup"),
                        f"{what}: group-readable Secret files need fsGroup")


def check_file_env(c, r, pod, ctr, name, want, what):
    """Variable name is a path to a file projected from (Secret name, key),
    holding value want[2] when the Secret is rendered."""
    path = (env_entry(ctr, name) or {}).get("value", "")
    f = secret_file(pod, ctr, path)
    if not c.check(f and f["kind"] == "secret", f"{what}: {name}={path!r} is a file of a mounted Secret"):
        return
    c.eq((f["name"], f["key"]), want[:2], f"{what}: {name} file's (Secret, key)")
    if len(want) > 2 and want[2] is not None:
        c.eq(secret_value(r.get("Secret", f["name"]), f["key"]), want[2], f"{what}: {name} file's content")


def check_security(c, pod, container, what):
    psc, csc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    c.check(non_root is True, f"{what}: runAsNonRoot true")
    c.check(uid is None or uid != 0, f"{what}: runAsUser is not 0 (got {uid})")
    c.check(csc.get("readOnlyRootFilesystem") is True, f"{what}: readOnlyRootFilesystem true")
    c.check(csc.get("allowPrivilegeEscalation") is False, f"{what}: allowPrivilegeEscalation false")
    c.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), f"{what}: capabilities drop ALL")
    c.check(csc.get("privileged") in (None, False), f"{what}: not privileged")


def check_release(c, r, exp, known, prefixes):
    """Invariants of every successful render, then the scenario's expectations (exp)."""
    c.check(r.rc == 0, f"renders (exit {r.rc}): {r.err.strip()[-500:]}")
    if r.rc != 0:
        return
    for d in r.docs:
        meta = d.get("metadata") or {}
        c.check(d.get("apiVersion") and d.get("kind") and meta.get("name"),
                f"document has apiVersion, kind and metadata.name: {str(d)[:80]}")
        c.check(DNS1123.match(meta.get("name", "")) and len(meta.get("name", "")) <= 63,
                f"{d.get('kind')} name {meta.get('name')!r} is a DNS-1123 label")
        for k, v in (meta.get("labels") or {}).items():
            c.check(isinstance(v, str) and len(v) <= 63, f"{d.get('kind')} label {k}={v!r} is a short string")

    deps = r.all("Deployment")
    if not c.eq(len(deps), 1, "Deployments"):
        return
    dep = deps[0]
    pod = dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"].get("labels") or {}
    containers = pod.get("containers") or []
    if not c.eq(len(containers), 1, "containers in the relay pod"):
        return
    ctr = containers[0]
    c.eq(dep["spec"].get("replicas"), exp["replicas"], "Deployment replicas")
    c.check(matches(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pods")
    c.eq(ctr.get("args"), ["run"], "relay container args")
    if "image" in exp:
        c.eq(ctr.get("image"), exp["image"], "relay image")

    # Settings: the ConfigMap behind envFrom, all strings, all known to the relay.
    cm_refs = [e["configMapRef"]["name"] for e in ctr.get("envFrom") or [] if "configMapRef" in e]
    c.eq(len(cm_refs), 1, "envFrom ConfigMaps")
    cm = r.get("ConfigMap", cm_refs[0]) if cm_refs else None
    if not c.check(cm is not None, f"ConfigMap {cm_refs} of envFrom is rendered"):
        return
    data = cm.get("data") or {}
    for k, v in data.items():
        c.check(isinstance(v, str), f"ConfigMap {k} is a string (got {v!r})")
    for k in NUMERIC & data.keys():
        c.check(re.fullmatch(r"[0-9]+", str(data[k])), f"ConfigMap {k}={data[k]!r} is a plain integer")
    for k, v in exp.get("config", {}).items():
        c.eq(data.get(k), v, f"ConfigMap {k}")
    for k in exp.get("config_absent", []):
        c.check(k not in data, f"ConfigMap has no {k}")
    listen = data.get("OUTBOX_HTTP_LISTEN", "")
    c.eq(listen, f"{exp.get('listen_host', '0.0.0.0')}:{exp['port']}", "OUTBOX_HTTP_LISTEN")
    listen_port = int(listen.rsplit(":", 1)[1]) if ":" in listen else None

    env_names = set(data) | {e["name"] for e in ctr.get("env") or []}
    chart_secrets = [s for s in r.all("Secret") if not hooks(s)]
    for s in chart_secrets:
        env_names |= set((s.get("data") or {}).keys())
    c.eq(unknown_env(env_names, known, prefixes), [], "OUTBOX_* variables the relay does not read")

    # HTTP: container port "http", probes and Service all on the listen port.
    http = [p for p in ctr.get("ports") or [] if p.get("name") == "http"]
    c.check(len(http) == 1 and http[0].get("containerPort") == listen_port,
            f"container port named http is the listen port {listen_port}: {ctr.get('ports')}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (ctr.get(probe) or {}).get("httpGet") or {}
        c.eq(get.get("path"), path, f"{probe} path")
        c.eq(port_of(ctr, get.get("port")), listen_port, f"{probe} port")
        c.check(get.get("scheme", "HTTP") == "HTTP", f"{probe} scheme HTTP")
    svcs = r.all("Service")
    if c.eq(len(svcs), 1, "Services"):
        svc = svcs[0]
        c.check(matches(svc["spec"]["selector"], pod_labels), "Service selector matches the relay pods")
        ports = svc["spec"]["ports"]
        c.check(len(ports) == 1 and ports[0].get("name") == "http"
                and port_of(ctr, ports[0].get("targetPort")) == listen_port,
                f"Service port http targets the listen port: {ports}")
        c.eq(ports[0].get("port"), exp.get("service_port", exp["port"]), "Service port")

    # Only the relay pods are selected (not the migration Job's pod).
    for job in r.all("Job"):
        jl = job["spec"]["template"]["metadata"].get("labels") or {}
        c.check(not matches(dep["spec"]["selector"]["matchLabels"], jl),
                "Deployment selector leaves the Job's pod out")
        for s in svcs:
            c.check(not matches(s["spec"]["selector"], jl), "Service selector leaves the Job's pod out")

    # Pod identity, security, resources, shutdown.
    inst = env_entry(ctr, "OUTBOX_INSTANCE_ID") or {}
    c.eq(((inst.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath"), "metadata.name",
         "OUTBOX_INSTANCE_ID from the pod name")
    check_security(c, pod, ctr, "relay")
    res = ctr.get("resources") or {}
    c.check((res.get("requests") or {}).get("memory") and (res.get("limits") or {}).get("memory"),
            f"relay has memory requests and limits: {res}")
    c.check(pod.get("automountServiceAccountToken") is False, "no service account token mounted")
    shutdown_ms = int(data.get("OUTBOX_SHUTDOWN_TIMEOUT_MS", "10000"))
    grace = pod.get("terminationGracePeriodSeconds")
    c.check(isinstance(grace, int) and grace > math.ceil(shutdown_ms / 1000),
            f"terminationGracePeriodSeconds {grace} exceeds the shutdown timeout {shutdown_ms} ms")
    if "grace" in exp:
        c.eq(grace, exp["grace"], "terminationGracePeriodSeconds")
    ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
    c.check(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/config", "")), "pod has checksum/config")

    # Secrets: files of a read-only Secret volume only, never in env, args or plain text.
    check_no_secret_in_env(c, r)
    check_secret_mount(c, pod, ctr, "relay")
    c.check(env_entry(ctr, "OUTBOX_DATABASE_URL") is None, "relay has no OUTBOX_DATABASE_URL variable")
    check_file_env(c, r, pod, ctr, "OUTBOX_DATABASE_URL_FILE", (*exp["db_ref"], exp.get("db_url")), "relay")
    db_file = secret_file(pod, ctr, (env_entry(ctr, "OUTBOX_DATABASE_URL_FILE") or {}).get("value", "")) or {}
    if exp.get("db_url"):
        sec = r.get("Secret", db_file.get("name"))
        c.check(sec is not None and not hooks(sec), f"Secret {db_file.get('name')} is rendered by the chart")
    else:
        c.check(r.get("Secret", db_file.get("name")) is None, f"existing Secret {db_file.get('name')} is not rendered")
        c.eq(chart_secrets, [], "chart Secrets with an existing Secret")
    for name, want in exp.get("secret_files", {}).items():
        check_file_env(c, r, pod, ctr, name, want, "relay")
    c.eq(sorted(e["name"] for e in ctr.get("env") or [] if e["name"].endswith("_FILE")),
         sorted(["OUTBOX_DATABASE_URL_FILE", *exp.get("secret_files", {})]), "relay's *_FILE variables")

    # PostgreSQL CA: mounted and named by PGSSLROOTCERT when configured, in both pods.
    ca = exp.get("pg_ca")
    pods = [("relay", pod, ctr)] + [("migration", j["spec"]["template"]["spec"],
                                     j["spec"]["template"]["spec"]["containers"][0]) for j in r.all("Job")]
    for who, p, k in pods:
        root = (env_entry(k, "PGSSLROOTCERT") or {}).get("value")
        if ca:
            f = secret_file(p, k, root or "")
            c.check(f and (f["kind"], f["name"], f["key"]) == ca[:3],
                    f"{who}: PGSSLROOTCERT={root!r} is {ca[:3]} mounted ({f})")
            c.check(f and f["mount"].get("readOnly") is True, f"{who}: CA mounted read-only")
            c.eq((env_entry(k, "PGSSLMODE") or {}).get("value"), ca[3], f"{who}: PGSSLMODE")
        else:
            c.eq((root, env_entry(k, "PGSSLMODE")), (None, None), f"{who}: no PGSSLROOTCERT/PGSSLMODE without a CA")

    # NetworkPolicy: the relay pods, ingress to the HTTP port only.
    nps = r.all("NetworkPolicy")
    np_exp = exp.get("netpol", {"from": None, "egress": False})
    if np_exp is None:
        c.eq(nps, [], "NetworkPolicies when disabled")
    elif c.eq(len(nps), 1, "NetworkPolicies"):
        spec = nps[0]["spec"]
        c.check(matches(spec["podSelector"].get("matchLabels"), pod_labels), "NetworkPolicy selects the relay pods")
        for job in r.all("Job"):
            c.check(not matches(spec["podSelector"].get("matchLabels"),
                                job["spec"]["template"]["metadata"].get("labels")),
                    "NetworkPolicy leaves the migration Job's pod out")
        ing = spec.get("ingress") or []
        c.check(len(ing) == 1 and [(p.get("port"), p.get("protocol")) for p in ing[0].get("ports") or []]
                == [(listen_port, "TCP")], f"NetworkPolicy ingress only to the HTTP port {listen_port}: {ing}")
        c.eq(ing[0].get("from") if ing else None, np_exp["from"], "NetworkPolicy ingress sources")
        types = spec.get("policyTypes") or []
        if np_exp["egress"]:
            c.eq(types, ["Ingress", "Egress"], "NetworkPolicy policyTypes")
            eg = spec.get("egress") or []
            c.check(eg and [(p.get("port"), p.get("protocol")) for p in eg[0].get("ports") or []]
                    == [(53, "UDP"), (53, "TCP")] and not eg[0].get("to"), f"egress to DNS first: {eg[:1]}")
            c.eq(eg[1:], np_exp["egress"], "NetworkPolicy egress rules after DNS")
        else:
            c.eq(types, ["Ingress"], "NetworkPolicy policyTypes (egress open)")

    # Disruption budget: present with 2+ replicas, lets one pod go, never all.
    pdbs = r.all("PodDisruptionBudget")
    if exp["pdb"]:
        if c.eq(len(pdbs), 1, "PodDisruptionBudgets"):
            spec = pdbs[0]["spec"]
            c.check(matches(spec["selector"]["matchLabels"], pod_labels), "PDB selector matches the relay pods")
            c.check(spec.get("minAvailable") == 1 or spec.get("maxUnavailable") == 1,
                    f"PDB minAvailable 1 or maxUnavailable 1: {spec}")
            c.check(("minAvailable" in spec) != ("maxUnavailable" in spec), "PDB sets exactly one bound")
    else:
        c.eq(pdbs, [], "PodDisruptionBudgets with one replica")

    # Migration: a pre-install/pre-upgrade hook with the same database and schema.
    jobs = r.all("Job")
    if exp["migration"]:
        if c.eq(len(jobs), 1, "migration Jobs"):
            job = jobs[0]
            c.check({"pre-install", "pre-upgrade"} <= hooks(job), f"Job hooks {hooks(job)}")
            jpod = job["spec"]["template"]["spec"]
            jc = jpod["containers"][0]
            c.eq(jc.get("args"), exp.get("job_args", ["migrate"]), "Job args")
            c.eq(jc.get("image"), ctr.get("image"), "Job image")
            c.check(jpod.get("restartPolicy") in ("Never", "OnFailure"), "Job restartPolicy")
            check_security(c, jpod, jc, "migration")
            schema = (env_entry(jc, "OUTBOX_SCHEMA") or {}).get("value")
            c.eq(schema, data.get("OUTBOX_SCHEMA"), "Job OUTBOX_SCHEMA")
            c.eq(unknown_env({e["name"] for e in jc.get("env") or []}, known, prefixes), [],
                 "Job variables the relay does not read")
            check_secret_mount(c, jpod, jc, "migration")
            c.check(env_entry(jc, "OUTBOX_DATABASE_URL") is None, "Job has no OUTBOX_DATABASE_URL variable")
            jf = secret_file(jpod, jc, (env_entry(jc, "OUTBOX_DATABASE_URL_FILE") or {}).get("value", "")) or {}
            jref = {"name": jf.get("name"), "key": jf.get("key")}
            # DDL and DML credentials apart: the relay's pods cannot mount the Job's Secret.
            rel = secret_file(pod, ctr, (env_entry(ctr, "OUTBOX_DATABASE_URL_FILE") or {}).get("value", "")) or {}
            c.check(jf and rel and jf["name"] != rel["name"],
                    f"Job's database Secret {jf.get('name')} is not the relay's {rel.get('name')}")
            c.check(jf.get("name") not in {v.get("secret", {}).get("secretName") for v in pod.get("volumes") or []},
                    "the relay pod mounts nothing of the Job's Secret")
            if exp.get("migrate_url"):
                # Hooks run before the release's own Secret exists: the Job's must be a hook too, made first.
                hs = r.get("Secret", jref.get("name"))
                c.check(hs is not None and "pre-install" in hooks(hs) and "pre-upgrade" in hooks(hs),
                        f"Job's Secret {jref.get('name')} is a pre-install/pre-upgrade hook")
                if hs is not None:
                    weight = lambda d: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
                    c.check(weight(hs) < weight(job), "Job's Secret is created before the Job")
                    c.eq(secret_value(hs, jref.get("key")), exp["migrate_url"], "database URL in the Job's Secret")
            else:
                c.eq((jref.get("name"), jref.get("key")), exp["migrate_ref"], "Job's database URL file (Secret, key)")
    else:
        c.eq(jobs, [], "migration Jobs when disabled")

    # Monitoring.
    sms = r.all("ServiceMonitor")
    if exp.get("monitoring"):
        if c.eq(len(sms), 1, "ServiceMonitors") and svcs:
            sm = sms[0]["spec"]
            c.check(matches(sm["selector"]["matchLabels"], svcs[0]["metadata"]["labels"]),
                    "ServiceMonitor selects the Service")
            ep = sm["endpoints"][0]
            c.eq((ep.get("port"), ep.get("path")), ("http", "/metrics"), "ServiceMonitor endpoint")
        monitoring.check_rules(c, r, exp["metrics"], exp["documented"], exp["docs"],
                               exp.get("lag_threshold", 300))
    else:
        c.eq(sms + r.all("PrometheusRule"), [], "monitoring objects when disabled")
    if not exp.get("dashboard"):
        c.eq([d["metadata"]["name"] for d in r.all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")],
             [], "no dashboard ConfigMap unless grafanaDashboard.enabled")


def check_against_relay(c, r, relay, existing_secret, work, existing_cm=None):
    """Starts the real relay with the environment and the files the chart
    gives its container (ConfigMap, env, the Secret and CA volumes projected
    into a scratch directory standing for the pod's filesystem; the database
    and Kafka replaced by closed local ports, the HTTP port by a free one) and
    checks that it accepts the configuration and answers the probes' paths:
    liveness 200, readiness 503 while the database is unreachable, /metrics.
    Then SIGTERM must end it with status 0. Returns its /metrics page ("" when
    it did not answer)."""
    dep = r.get("Deployment")
    if not c.check(dep, "a Deployment to run"):
        return
    pod = dep["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    root = os.path.join(work, "pod-root")
    shutil.rmtree(root, ignore_errors=True)
    env = {}
    for src in ctr.get("envFrom") or []:
        if "configMapRef" in src:
            env.update((r.get("ConfigMap", src["configMapRef"]["name"]) or {}).get("data") or {})
    for e in ctr.get("env") or []:
        vf = e.get("valueFrom") or {}
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "fieldRef" in vf:
            env[e["name"]] = "outbox-relay-7d4b9c-x2x9q"
    # Files: every variable naming a path under a mount must find the file the
    # volume projects there, with the Secret's (or ConfigMap's) content.
    mounts = [m.get("mountPath", "").rstrip("/") + "/" for m in ctr.get("volumeMounts") or []]
    for name, value in list(env.items()):
        if not any(value.startswith(mp) for mp in mounts):
            continue
        f = secret_file(pod, ctr, value)
        if not c.check(f, f"{name}={value}: a volume item is mounted there"):
            continue
        if f["kind"] == "secret":
            sec = r.get("Secret", f["name"])
            content = secret_value(sec, f["key"]) if sec else existing_secret.get(f["key"])
        else:
            content = (existing_cm or {}).get(f["key"])
        if not c.check(content is not None, f"{name}: {f['kind']} {f['name']} has key {f['key']}"):
            continue
        local = os.path.join(root, value.lstrip("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as out:
            out.write(content + "\n")  # a trailing newline, as kubectl create secret --from-file often leaves
        env[name] = local
    c.check(env.get("OUTBOX_DATABASE_URL_FILE", "").startswith(root), "the container gets OUTBOX_DATABASE_URL_FILE")
    # The database and Kafka: closed local ports (the file's URL was checked above).
    with open(env.get("OUTBOX_DATABASE_URL_FILE", os.path.join(root, "db-url")), "w") as out:
        out.write("postgresql://relay:pw@127.0.0.1:1/app?connect_timeout=2\n")
    env["OUTBOX_KAFKA_BROKERS"] = "127.0.0.1:1"
    host = env.get("OUTBOX_HTTP_LISTEN", "").rsplit(":", 1)[0]
    port = free_port()
    env["OUTBOX_HTTP_LISTEN"] = f"{host}:{port}"
    live = ctr["livenessProbe"]["httpGet"]["path"]
    ready = ctr["readinessProbe"]["httpGet"]["path"]
    with RelayProcess(relay, ctr.get("args", []), env) as proc:
        if not proc.wait_live(c, port, live):
            return
        status, body = http_get(port, ready)
        c.eq(status, 503, f"readiness {ready} while the database is unreachable ({body.strip()})")
        status, body = http_get(port, "/metrics")
        c.eq(status, 200, "/metrics")
        c.check("outbox_relay_leader" in body, "/metrics has outbox_relay_leader")
        c.eq(proc.stop(), 0, "relay exit status after SIGTERM")
        return body if status == 200 else ""


def check_outboxes(c, r, relay, work):
    """values outboxes (values-outboxes.yaml): the outboxes file rendered in
    a ConfigMap and mounted where OUTBOX_OUTBOXES_FILE says, each outbox's
    database-url-file the key of its own Secret, no process-wide URL; then
    the real relay reads the file (projected into a scratch pod root, the
    databases replaced by closed ports) and serves both outboxes."""
    import json
    dep = r.get("Deployment")
    if not c.check(dep, "a Deployment to run"):
        return
    pod = dep["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    cm = r.get("ConfigMap", "test-outbox-relay-outboxes") or {}
    try:
        outboxes = json.loads((cm.get("data") or {}).get("outboxes.json", ""))
    except ValueError as e:
        c.check(False, f"outboxes.json is JSON: {e}")
        return
    c.eq([o.get("name") for o in outboxes], ["orders", "billing_v2"], "outboxes in the file")
    c.eq({k: v for k, v in outboxes[0].items() if k != "database-url-file"},
         {"name": "orders", "schema": "outbox", "default-topic": "orders", "max-attempts": 20,
          "exactly-once": True, "route": ["order.*=orders", "payment.*=payments"]}, "outbox orders")
    c.eq(outboxes[1].get("schema"), "billing_outbox", "outbox billing_v2 schema")
    env = dict((r.get("ConfigMap", "test-outbox-relay") or {}).get("data") or {})
    for e in ctr.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
    c.check("OUTBOX_DATABASE_URL_FILE" not in env, "no process-wide OUTBOX_DATABASE_URL_FILE")
    c.eq(r.all("Secret"), [], "no Secret of the release (each outbox names its own)")
    path = env.get("OUTBOX_OUTBOXES_FILE", "")
    f = secret_file(pod, ctr, path)
    c.check(f and (f["kind"], f["name"], f["key"]) == ("configMap", "test-outbox-relay-outboxes", "outboxes.json"),
            f"OUTBOX_OUTBOXES_FILE={path} is the outboxes ConfigMap's file: {f}")
    root = os.path.join(work, "pod-root-outboxes")
    shutil.rmtree(root, ignore_errors=True)
    for o, want in zip(outboxes, [("orders-db-app", "uri"), ("billing-db", "relay-url")]):
        f = secret_file(pod, ctr, o.get("database-url-file", ""))
        c.check(f and (f["kind"], f["name"], f["key"]) == ("secret",) + want,
                f"outbox {o.get('name')}: database-url-file is key {want[1]} of Secret {want[0]}: {f}")
        local = os.path.join(root, o["database-url-file"].lstrip("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as out:
            out.write("postgresql://relay:pw@127.0.0.1:1/app?connect_timeout=2\n")
        o["database-url-file"] = local
    local = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "w") as out:
        json.dump(outboxes, out)
    env["OUTBOX_OUTBOXES_FILE"] = local
    env["OUTBOX_KAFKA_BROKERS"] = "127.0.0.1:1"
    port = free_port()
    env["OUTBOX_HTTP_LISTEN"] = f"127.0.0.1:{port}"
    with RelayProcess(relay, ctr.get("args", []), env) as proc:
        if not proc.wait_live(c, port, ctr["livenessProbe"]["httpGet"]["path"]):
            return
        status, body = http_get(port, ctr["readinessProbe"]["httpGet"]["path"])
        c.check(status == 503 and "outbox orders:" in body and "outbox billing_v2:" in body,
                f"readiness names both outboxes while their databases are unreachable: {status} {body.strip()}")
        status, body = http_get(port, "/metrics")
        c.check(status == 200 and 'outbox_relay_leader{outbox="orders"}' in body
                and 'outbox_relay_leader{outbox="billing_v2"}' in body, "/metrics labels each outbox")
        c.eq(proc.stop(), 0, "relay exit status after SIGTERM")


def outboxes_variant(work, name, index, key, value):
    """values-outboxes.yaml with outboxes[index][key] = value, written to
    work (the renderer's --set does not index lists); returns its path."""
    with open(os.path.join(HERE, "values-outboxes.yaml")) as f:
        values = yaml.safe_load(f)
    values["outboxes"][index][key] = value
    path = os.path.join(work, f"values-outboxes-{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(values, f)
    return path


def check_values_documented(c, chart):
    """Every leaf key of values.yaml has a comment right above it (or on its
    line), and every value is read by some template."""
    lines = open(os.path.join(chart, "values.yaml")).read().splitlines()
    key_re = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    stack, leaves = [], []
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        nxt = next((ln for ln in lines[i + 1:] if ln.strip() and not ln.strip().startswith("#")), "")
        is_section = rest.strip() == "" and len(nxt) - len(nxt.lstrip()) > indent
        stack.append((indent, key))
        if is_section:
            continue
        leaves.append(".".join(path))
        above = lines[i - 1].strip() if i else ""
        c.check(above.startswith("#") or "#" in rest, f"values.yaml {'.'.join(path)} has a comment")
    c.check(len(leaves) > 30, f"values.yaml parsed ({len(leaves)} values)")
    tdir = os.path.join(chart, "templates")
    text = "".join(open(os.path.join(tdir, f)).read() for f in os.listdir(tdir))
    for leaf in leaves:
        parts = leaf.split(".")
        used = any(re.search(re.escape(".Values." + ".".join(parts[:k])) + r"(?![A-Za-z0-9_.])", text)
                   for k in range(len(parts), 0, -1))
        c.check(used, f"values.yaml {leaf} is used by a template")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chart", required=True)
    ap.add_argument("--relay", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    renderer = build_renderer(a.work)
    known, prefixes = relay_env_names(a.relay)
    c = Checker("helm")
    render = lambda *args: Render(renderer, a.chart, list(args))
    required = ["--set", f"database.url={DB_URL}", "--set", f"migration.databaseUrl={MIGRATE_URL}",
                "--set", "kafka.brokers=kafka:9092"]

    c.section("values.yaml")
    check_values_documented(c, a.chart)

    c.section("defaults")
    base = render(*required)
    check_release(c, base, {
        "replicas": 2, "port": 9400, "image": "outbox-relay:0.1.0", "grace": 30,
        "db_ref": ("test-outbox-relay", "OUTBOX_DATABASE_URL"), "db_url": DB_URL,
        "migrate_url": MIGRATE_URL, "pdb": True, "migration": True, "monitoring": False,
        "config": {"OUTBOX_KAFKA_BROKERS": "kafka:9092", "OUTBOX_SCHEMA": "outbox",
                   "OUTBOX_SHUTDOWN_TIMEOUT_MS": "10000", "OUTBOX_RETRY_MAX_MS": "300000"},
        "config_absent": ["OUTBOX_DEFAULT_TOPIC", "OUTBOX_ROUTES", "OUTBOX_RETENTION",
                          "OUTBOX_DATABASE_URL", "OUTBOX_TRANSACTIONAL_ID",
                          "OUTBOX_PROGRESS_TOPIC"],
    }, known, prefixes)
    # The relay's own list of series: what the dashboard and the alerts may name.
    scrape = check_against_relay(c, base, a.relay, {}, a.work) or ""
    series = monitoring.exported_series(scrape)
    c.check("outbox_relay_publish_ack_seconds_bucket" in series and "outbox_relay_leader" in series,
            f"series read from the relay's /metrics: {sorted(series)[:5]}...")
    docs = os.path.join(a.chart, "..", "..", "docs", "operations.md")
    documented = monitoring.check_documented(c, series, monitoring.scraped_labels(scrape), docs)
    upgrade = render("--upgrade", *required)
    c.eq(upgrade.text, base.text, "an upgrade renders as an install")
    changed = render(*required, "--set", "config.batchSize=500")
    csum = lambda r: (r.get("Deployment") or {}).get("spec", {}).get("template", {}) \
        .get("metadata", {}).get("annotations", {}).get("checksum/config")
    c.check(csum(changed) and csum(changed) != csum(base), "a config change changes checksum/config (pods roll)")

    c.section("overrides (values file)")
    over = render("-f", os.path.join(HERE, "values-override.yaml"))
    check_release(c, over, {
        "replicas": 3, "port": 9500, "service_port": 9600, "grace": 80,
        "image": "registry.example.com/outbox-relay@sha256:" + "0123456789abcdef" * 4,
        "db_ref": ("orders-db-app", "uri"), "db_url": None, "migrate_ref": ("orders-db-owner", "uri"),
        "secret_files": {"OUTBOX_RDKAFKA_SASL_USERNAME_FILE": ("orders-db-app", "kafka-user"),
                         "OUTBOX_RDKAFKA_SASL_PASSWORD_FILE": ("orders-db-app", "kafka-password")},
        "pg_ca": ("configMap", "orders-db-ca", "root.pem", "verify-full"),
        "job_args": ["migrate", "--grant-relay", "outbox_relay", "--grant-writer", "outbox_writer"],
        "netpol": {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                               "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 9093, "protocol": "TCP"}]}]},
        "pdb": True, "migration": True, "monitoring": True, "metrics": series, "docs": docs,
        "documented": documented,
        "config": {"OUTBOX_KAFKA_BROKERS": "kafka-0.kafka:9093,kafka-1.kafka:9093",
                   "OUTBOX_SCHEMA": "orders_outbox", "OUTBOX_RETRY_MAX_MS": "3600000",
                   "OUTBOX_SHUTDOWN_TIMEOUT_MS": "60000", "OUTBOX_ROUTES": "order.*=orders,user.created=users",
                   "OUTBOX_DEFAULT_TOPIC": "events", "OUTBOX_RETENTION": "7d", "OUTBOX_LEADER_POLL_MS": "500",
                   "OUTBOX_LOG_LEVEL": "debug", "OUTBOX_RDKAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                   "OUTBOX_RDKAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                   "OUTBOX_RDKAFKA_COMPRESSION_TYPE": "zstd", "OUTBOX_EXACTLY_ONCE": "true",
                   "OUTBOX_TRANSACTIONAL_ID": "orders-outbox",
                   "OUTBOX_PROGRESS_TOPIC": "relay-progress"},
    }, known, prefixes)
    check_against_relay(c, over, a.relay, {"uri": DB_URL, "kafka-user": "relay", "kafka-password": SASL_PASSWORD,
                                           "unrelated": "not mounted"}, a.work,
                        {"root.pem": "-----BEGIN CERTIFICATE-----"})
    pdb = over.get("PodDisruptionBudget")
    c.check(pdb and pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"],
            "podDisruptionBudget.maxUnavailable replaces minAvailable")
    dep = over.get("Deployment") or {}
    aff = dep.get("spec", {}).get("template", {}).get("spec", {}).get("affinity", {})
    c.check("requiredDuringSchedulingIgnoredDuringExecution" in aff.get("podAntiAffinity", {}),
            "podAntiAffinityPreset hard")
    ctr = (dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}])[0]
    c.eq((env_entry(ctr, "OUTBOX_RDKAFKA_CLIENT_ID") or {}).get("value"), "orders-outbox", "extraEnv")
    sm = over.get("ServiceMonitor") or {}
    c.eq(sm.get("metadata", {}).get("labels", {}).get("release"), "prometheus", "serviceMonitor.labels")

    c.section("overrides (--set): SASL secret, one replica, no migration")
    sasl = render(*required, "--set", f"kafka.secretProperties.sasl\\.password={SASL_PASSWORD}",
                  "--set-string", "kafka.properties.sasl\\.username=relay",
                  "--set", "replicaCount=1,migration.enabled=false,networkPolicy.enabled=false",
                  "--set", "database.tls.caSecret=pg-ca,database.tls.sslmode=verify-ca",
                  "--set", "http.port=9401", "--set", "config.batchSize=null")
    check_release(c, sasl, {
        "replicas": 1, "port": 9401, "service_port": 9400, "db_ref": ("test-outbox-relay", "OUTBOX_DATABASE_URL"),
        "db_url": DB_URL, "pdb": False, "migration": False, "monitoring": False,
        "config": {"OUTBOX_RDKAFKA_SASL_USERNAME": "relay"},
        "config_absent": ["OUTBOX_RDKAFKA_SASL_PASSWORD", "OUTBOX_BATCH_SIZE"],
        "secret_files": {"OUTBOX_RDKAFKA_SASL_PASSWORD_FILE":
                         ("test-outbox-relay", "OUTBOX_RDKAFKA_SASL_PASSWORD", SASL_PASSWORD)},
        "pg_ca": ("secret", "pg-ca", "ca.crt", "verify-ca"),
        "netpol": None,
    }, known, prefixes)
    check_against_relay(c, sasl, a.relay, {"ca.crt": "-----BEGIN CERTIFICATE-----"}, a.work)

    c.section("dual-stack listener")
    v6 = render(*required, "--set", "http.listenAddress=[::]")
    check_release(c, v6, {
        "replicas": 2, "port": 9400, "listen_host": "[::]", "db_ref": ("test-outbox-relay", "OUTBOX_DATABASE_URL"),
        "db_url": DB_URL, "migrate_url": MIGRATE_URL, "pdb": True, "migration": True, "monitoring": False,
    }, known, prefixes)

    c.section("grafana dashboard")
    monitoring.self_test(c)
    dash = render(*required, "--set", "grafanaDashboard.enabled=true")
    check_release(c, dash, {
        "replicas": 2, "port": 9400, "db_ref": ("test-outbox-relay", "OUTBOX_DATABASE_URL"), "db_url": DB_URL,
        "migrate_url": MIGRATE_URL, "pdb": True, "migration": True, "monitoring": False, "dashboard": True,
    }, known, prefixes)
    monitoring.check_dashboard(c, dash, a.chart, series, documented)
    dash = render(*required, "--set", "grafanaDashboard.enabled=true,grafanaDashboard.label=dashboards",
                  "--set", "grafanaDashboard.labelValue=outbox,grafanaDashboard.namespace=monitoring",
                  "--set", "grafanaDashboard.annotations.grafana_folder=Outbox")
    monitoring.check_dashboard(c, dash, a.chart, series, documented, ("dashboards", "outbox"), "monitoring")
    cm = next((d for d in dash.all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")), {})
    c.eq(cm.get("metadata", {}).get("annotations"), {"grafana_folder": "Outbox"}, "grafanaDashboard.annotations")

    c.section("outboxes (values file)")
    multi = render("-f", os.path.join(HERE, "values-outboxes.yaml"))
    c.check(multi.rc == 0, f"two outboxes render: {multi.err[-300:]}")
    check_no_secret_in_env(c, multi)
    check_outboxes(c, multi, a.relay, a.work)

    c.section("refused settings")
    for args, needle in (
        ([], "database.url is required"),
        (["--set", f"database.url={DB_URL}", "--set", f"migration.databaseUrl={MIGRATE_URL}"],
         "kafka.brokers is required"),
        (["--set", f"database.url={DB_URL}", "--set", "kafka.brokers=k:9092"], "migration.databaseUrl is required"),
        (["--set", f"database.url={DB_URL}", "--set", f"migration.databaseUrl={DB_URL}", "--set",
          "kafka.brokers=k:9092"], "must differ from database.url"),
        (["--set", "kafka.brokers=k:9092,secret.existingSecret=db,migration.existingSecret=db"],
         "must differ from secret.existingSecret"),
        (required + ["--set", "secret.envFromExistingSecret=true"], "envFromExistingSecret was removed"),
        (required + ["--set", "kafka.secretPropertyKeys.sasl\\.password=pw"], "secret.existingSecret, which is not set"),
        (required + ["--set", "database.tls.caSecret=a,database.tls.caConfigMap=b"], "not both"),
        (required + ["--set", "podSecurityContext.fsGroup=null"], "fsGroup is required"),
        (required + ["--set", "http.listenAddress=::"], "http.listenAddress"),
        (required + ["--set", "networkPolicy.egress.restrict=true"], "networkPolicy.egress.rules"),
        (required + ["--set", "terminationGracePeriodSeconds=10"], "must exceed"),
        (required + ["--set", "secret.existingSecret=db"], "not both"),
        (required + ["--set", "grafanaDashboard.enabled=true,grafanaDashboard.label="], "grafanaDashboard.label"),
        (["--set", "kafka.brokers=k:9092,secret.existingSecret=db,migration.enabled=false",
          "--set", "kafka.secretProperties.sasl\\.password=x"], "existingSecret"),
        (["--set", "kafka.brokers=k:9092,secret.existingSecret=db,secret.databaseUrlKey=,migration.enabled=false"],
         "databaseUrlKey"),
        (["-f", os.path.join(HERE, "values-outboxes.yaml"), "--set", "migration.enabled=true"],
         "migration.enabled must be false with outboxes"),
        (["-f", outboxes_variant(a.work, "bad-name", 1, "name", "Billing")], "outboxes[1].name"),
        (["-f", outboxes_variant(a.work, "dup-name", 1, "name", "orders")], "two are named orders"),
        (["-f", outboxes_variant(a.work, "no-secret", 0, "databaseUrlSecret", "")], "needs databaseUrlSecret"),
        (["-f", os.path.join(HERE, "values-outboxes.yaml"), "--set", f"database.url={DB_URL}"],
         "leave database.url empty"),
    ):
        r = render(*args)
        c.check(r.rc != 0 and needle in r.err, f"{args} is refused naming {needle!r}: exit {r.rc}, {r.err[-300:]}")
    c.finish()


if __name__ == "__main__":
    main()
