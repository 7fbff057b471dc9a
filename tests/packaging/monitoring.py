"""Checks of the chart's monitoring objects against the relay itself
(check_helm.py uses them): the metric names come from a running relay's
/metrics, and every PromQL expression of the Grafana dashboard and of the
PrometheusRule must name only series that relay exports, with counters and
histogram buckets read through rate() or increase(), quantiles from buckets
grouped by le; the alerts must match what docs/operations.md documents."""

import json
import os
import re

import yaml

# PromQL words that are not metric names.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
KEYWORDS = AGGREGATIONS | {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                           "offset", "and", "or", "unless", "inf", "nan", "atan2"}
RATE_FUNCS = ("rate", "irate", "increase")
# Labels Prometheus adds to every scraped series (the job and instance of any
# scrape; kubernetes_sd and a ServiceMonitor's namespace, pod, service,
# endpoint, container): a query may use them though the relay exports none.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Labels every relay series carries in some configurations though the metrics
# table names them only where the alerts group by them: outbox="<name>" with
# --outboxes-file (docs/operations.md, "Metrics and alerts").
RELAY_LABELS = {"outbox"}
# What each selector of a dashboard panel must match on: the dashboard's
# variables, so that picking a namespace, job, instance or outbox filters
# every panel alike.
PANEL_MATCHERS = {"namespace": "$namespace", "job": "$job", "instance": "$instance",
                  "outbox": "$outbox"}


def exported_series(metrics_text):
    """{series name: family type} of a /metrics page in the text format: a
    histogram family f gives f_bucket, f_sum and f_count (f itself names no
    series), a summary f, f_sum and f_count. Every family the relay knows has
    its TYPE line even before it has samples, so a relay without a database
    lists them all."""
    out = {}
    for m in re.finditer(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$", metrics_text, re.M):
        name, kind = m.group(1), m.group(2)
        if kind == "histogram":
            out.update({name + s: kind for s in ("_bucket", "_sum", "_count")})
        elif kind == "summary":
            out.update({name + s: kind for s in ("", "_sum", "_count")})
        else:
            out[name] = kind
    for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", metrics_text, re.M):
        out.setdefault(m.group(1), "untyped")
    return out


def scraped_labels(metrics_text):
    """{series name: label names} of the samples of a /metrics page."""
    out = {}
    for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", metrics_text, re.M):
        labels = set(re.findall(r'([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"', m.group(2) or ""))
        out.setdefault(m.group(1), set()).update(labels)
    return out


def documented_metrics(docs_text):
    """{family: label names} of the metrics table of docs/operations.md,
    "Metrics and alerts": each backquoted `outbox_relay_x{a,b}` of a row's
    first cell."""
    section = docs_text.split("## Metrics and alerts", 1)[-1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not line.startswith("| `outbox_relay_"):
            continue
        for name, labels in re.findall(r"`(outbox_relay_\w+)(?:\{([^}]*)\})?`", cells[1]):
            out[name] = {x.strip() for x in labels.split(",") if x.strip()}
    return out


def family_of(name, series):
    """The family a series belongs to (a histogram's _bucket/_sum/_count)."""
    if series.get(name) in ("histogram", "summary"):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
    return name


def check_documented(c, series, seen, docs_path):
    """Every family the relay exports has a row in docs/operations.md's
    metrics table, naming every label its samples carry."""
    with open(docs_path) as f:
        documented = documented_metrics(f.read())
    for name in sorted({family_of(n, series) for n in series}):
        c.check(name in documented, f"docs/operations.md's metrics table lists {name}")
    for name, labels in seen.items():
        extra = labels - documented.get(family_of(name, series), set()) - {"le"}
        c.eq(sorted(extra), [], f"labels of {name} the metrics table does not name")
    return documented


def used_labels(expr, legend=""):
    """Label names an expression groups, joins or matches by, and a Grafana
    legend ({{label}}) or an alert's annotation ({{ $labels.label }}) shows."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    out = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", e):
        out |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    for m in re.finditer(r"\{([^{}]*)\}", e):
        out |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", m.group(1)))
    out |= set(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", legend or ""))
    out |= set(re.findall(r"\$labels\.([A-Za-z_]\w*)", legend or ""))
    return out


def promql_metrics(expr):
    """The metric names an expression selects: what is left once strings,
    label matchers, ranges, grouping clauses, Grafana variables, numbers,
    functions and keywords are taken out. Deliberately simple, and tested on
    the expressions below before it is trusted."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\[\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        if word.lower() in KEYWORDS or re.match(r"\s*\(", e[m.end():]):
            continue
        names.add(word)
    return names


def self_test(c):
    """The extractor, on expressions that would fool a careless one."""
    cases = (
        ('sum by (topic) (rate(outbox_relay_nope_total{topic=~"a|b", job="x"}[5m])) or vector(0)',
         {"outbox_relay_nope_total"}),
        ('histogram_quantile(0.99, sum by (le, namespace) (rate(a_bucket{le!="1e3"}[$__rate_interval])))',
         {"a_bucket"}),
        ("max(x{a=\"sum(y)\"}) > 1e3 unless on (pod) z offset 5m", {"x", "z"}),
        ("count(up == bool 0) / ignoring(job) group_left(pod) w", {"up", "w"}),
    )
    for expr, want in cases:
        c.eq(promql_metrics(expr), want, f"metrics named by {expr!r}")
    c.eq(variable_expr('label_values(outbox_relay_leader{namespace=~"$namespace"}, job)'),
         'outbox_relay_leader{namespace=~"$namespace"}', "label_values' series")
    c.eq(variable_expr("label_values(namespace)"), None, "label_values without a series")
    c.eq(selectors('x(outbox_relay_a{outbox=~"$outbox", job="j"}) / outbox_relay_b'),
         [("outbox_relay_a", {"outbox": ("=~", "$outbox"), "job": ("=", "j")}), ("outbox_relay_b", {})],
         "selectors")
    c.eq(used_labels('sum by (topic, le) (rate(x{job="a", namespace=~"b|c"}[1m])) / on(pod) y', "{{ topic }} {{le}} {{ $labels.pod }}"),
         {"topic", "le", "job", "namespace", "pod"}, "labels used")


def variable_expr(query):
    """The series expression of a Grafana Prometheus variable query, or None."""
    q = (query.get("query") if isinstance(query, dict) else query) or ""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*", q, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\s*(?:query_result|series)\((.*)\)\s*", q, re.S)
    if m:
        return m.group(1)
    return None


def check_expr(c, expr, series, what, documented=None, legend=""):
    """One PromQL expression: balanced, names at least one relay series and
    nothing the relay does not export, reads counters and buckets only through
    rate()/increase(), takes quantiles from buckets grouped by le."""
    c.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            and expr.count("[") == expr.count("]"), f"{what}: brackets balance in {expr!r}")
    names = promql_metrics(expr)
    c.check(any(n.startswith("outbox_relay_") for n in names), f"{what}: names a relay metric: {expr!r}")
    c.eq(sorted(n for n in names if n not in series), [], f"{what}: metrics the relay does not export")
    for m in re.finditer(r"\b(outbox_relay_[A-Za-z0-9_:]+)", expr):
        kind = series.get(m.group(1))
        before = expr[:m.start()]
        in_rate = re.search(r"\b(" + "|".join(RATE_FUNCS) + r")\(\s*$", before) is not None
        if kind in ("counter", "histogram"):
            c.check(in_rate, f"{what}: {m.group(1)} ({kind}) is read through rate() or increase()")
        elif kind == "gauge":
            c.check(not in_rate, f"{what}: gauge {m.group(1)} is not read through rate() or increase()")
    if documented is not None:
        allowed = set(TARGET_LABELS)
        if any(n.startswith("outbox_relay_") for n in names):
            allowed |= RELAY_LABELS
        for n in names:
            allowed |= documented.get(family_of(n, series), set())
            if n.endswith("_bucket"):
                allowed.add("le")
        labels = used_labels(expr, legend)
        c.eq(sorted(labels - allowed), [], f"{what}: labels its metrics do not carry")
    if "histogram_quantile" in expr:
        used = [n for n in names if n.startswith("outbox_relay_")]
        c.check(used and all(n.endswith("_bucket") and series.get(n) == "histogram" for n in used),
                f"{what}: histogram_quantile reads histogram buckets only: {used}")
        c.check(re.search(r"\bby\s*\([^)]*\ble\b", expr),
                f"{what}: histogram_quantile keeps the le label: {expr!r}")
    return names


def selectors(expr):
    """[(metric, {label: (op, value)})] of each relay metric selector of expr."""
    out = []
    for m in re.finditer(r"\b(outbox_relay_[A-Za-z0-9_:]+)\s*(?:\{([^{}]*)\})?", expr):
        matchers = {}
        for lm in re.finditer(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2) or ""):
            matchers[lm.group(1)] = (lm.group(2), lm.group(3))
        out.append((m.group(1), matchers))
    return out


def check_panel_selectors(c, what, expr):
    """Every relay metric a panel reads is selected by each dashboard variable
    (label=~"$variable"), so no panel ignores the namespace, job, instance or
    outbox picked; a query that filtered only some of its selectors would mix
    outboxes in one ratio."""
    sels = selectors(expr)
    c.check(sels, f"{what}: selects relay metrics: {expr!r}")
    for metric, matchers in sels:
        for label, var in PANEL_MATCHERS.items():
            c.eq(matchers.get(label), ("=~", var), f"{what}: {metric} matches {label}=~\"{var}\"")


def check_outbox_variable(c, v):
    """The outbox variable: the outboxes of --outboxes-file, several at once,
    All by default; All is .* because {outbox=~".*"} also matches series
    without the label (an empty label value matches .*), so a relay with one
    outbox, whose series have no outbox label, still shows. An empty or
    missing allValue would make Grafana send the values it listed, (a|b),
    which drops those series."""
    q = variable_expr(v.get("query")) or ""
    c.check(re.search(r",\s*outbox\s*\)\s*$", (v.get("query") or {}).get("query", "")),
            f"outbox variable lists label_values(..., outbox): {v.get('query')!r}")
    for label, var in PANEL_MATCHERS.items():
        if label != "outbox":
            c.check(f'{label}=~"{var}"' in q, f"outbox variable follows ${label}: {q!r}")
    c.eq((v.get("includeAll"), v.get("allValue"), v.get("multi")), (True, ".*", True),
         "outbox variable: includeAll, allValue .*, multi")
    cur = v.get("current") or {}
    c.check(cur.get("value") in ("$__all", ["$__all"]), f"outbox variable is All by default: {cur!r}")
    c.check(re.fullmatch(v.get("allValue") or "^$", ""),
            "the outbox variable's All value matches the empty label value (series without it)")


def panels_of(dash):
    for p in dash.get("panels") or []:
        yield p
        yield from p.get("panels") or []  # collapsed rows hold their panels


def check_dashboard(c, r, chart, series, documented, label=("grafana_dashboard", "1"), namespace="default"):
    """The dashboard ConfigMap of render r: labelled for the sidecar, holding
    the chart's dashboard file verbatim (the one source, which docs/grafana/
    links to), a valid dashboard whose every query the relay can answer."""
    path = os.path.join(chart, "dashboards", "outbox-relay.json")
    docs = os.path.join(chart, "..", "..", "docs", "grafana", "outbox-relay.json")
    c.check(os.path.islink(docs) and os.path.realpath(docs) == os.path.realpath(path),
            "docs/grafana/outbox-relay.json links to the chart's dashboards/outbox-relay.json (one source)")
    cms = [d for d in r.all("ConfigMap") if (d["metadata"].get("labels") or {}).get(label[0]) is not None]
    if not c.eq(len(cms), 1, f"ConfigMaps labelled {label[0]}"):
        return
    cm = cms[0]
    c.eq(cm["metadata"]["labels"][label[0]], label[1], f"dashboard label {label[0]}")
    c.eq(cm["metadata"].get("namespace"), namespace, "dashboard ConfigMap namespace")
    data = cm.get("data") or {}
    c.eq(list(data), ["outbox-relay.json"], "dashboard ConfigMap keys")
    text = data.get("outbox-relay.json", "")
    with open(path) as f:
        c.eq(text, f.read().rstrip("\n"), "dashboard ConfigMap holds the chart's file verbatim")
    try:
        dash = json.loads(text)
    except ValueError as e:
        c.check(False, f"dashboard is JSON: {e}")
        return
    c.check(dash.get("uid") and dash.get("title") and isinstance(dash.get("schemaVersion"), int),
            "dashboard has uid, title and schemaVersion")
    c.check("__inputs" not in dash, "no __inputs (the sidecar does not fill ${DS_...}): a datasource variable")
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
    ds = variables.get("datasource") or {}
    c.eq((ds.get("type"), ds.get("query")), ("datasource", "prometheus"), "datasource variable")
    for name in ("namespace", "instance", "outbox"):
        c.check(variables.get(name, {}).get("type") == "query", f"the {name} variable")
    check_outbox_variable(c, variables.get("outbox") or {})
    ds_ref = {"type": "prometheus", "uid": "${datasource}"}
    exprs = []
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        c.eq(v.get("datasource"), ds_ref, f"variable {name} uses the datasource variable")
        e = variable_expr(v.get("query"))
        if c.check(e, f"variable {name}: a label_values(series, label) query"):
            exprs.append((f"variable {name}", e, "", name))
    ids, used = set(), set()
    for p in panels_of(dash):
        title = p.get("title")
        c.check(p.get("id") not in ids, f"panel {title!r}: id {p.get('id')} is unique")
        ids.add(p.get("id"))
        c.check(all(k in (p.get("gridPos") or {}) for k in "xywh"), f"panel {title!r} has a gridPos")
        if p.get("type") == "row":
            continue
        c.eq(p.get("datasource"), ds_ref, f"panel {title!r} uses the datasource variable")
        targets = p.get("targets") or []
        c.check(targets, f"panel {title!r} has queries")
        for t in targets:
            c.eq(t.get("datasource", ds_ref), ds_ref, f"panel {title!r} query {t.get('refId')} datasource")
            exprs.append((f"panel {title!r}", t.get("expr", ""), t.get("legendFormat", ""), None))
    for what, e, legend, var_label in exprs:
        names = check_expr(c, e, series, what, documented, legend)
        if var_label:
            c.check(var_label in TARGET_LABELS | RELAY_LABELS,
                    f"{what}: lists values of a label every series has")
        used |= names
        if what.startswith("panel"):
            check_panel_selectors(c, what, e)
    # What an operator opens it for (issue 19, item 6).
    for need in ("outbox_relay_pending_rows", "outbox_relay_oldest_pending_age_seconds",
                 "outbox_relay_messages_published_total", "outbox_relay_messages_failed_total",
                 "outbox_relay_messages_dead_lettered_total", "outbox_relay_leader",
                 "outbox_relay_publish_ack_seconds_bucket",
                 "outbox_relay_dead_letter_rows", "outbox_relay_event_lag_seconds_bucket"):
        c.check(need in used, f"the dashboard shows {need}")
    c.check(any("histogram_quantile" in x[1] for x in exprs), "latency quantiles from histogram buckets")
    # Per outbox where outboxes differ: one outbox's backlog, lag, leader or
    # dead letters must not hide behind another's (a max or sum over all).
    for need in ("outbox_relay_pending_rows", "outbox_relay_oldest_pending_age_seconds",
                 "outbox_relay_leader", "outbox_relay_dead_letter_rows"):
        c.check(any(need in promql_metrics(e) and re.search(r"\bby\s*\([^)]*\boutbox\b", e)
                    and "outbox" in used_labels("", legend)
                    for what, e, legend, _ in exprs if what.startswith("panel")),
                f"a panel shows {need} by outbox, named in its legend")


def strip_selectors(expr):
    """An alert's expression without the chart's namespace/job selector."""
    return re.sub(r"\{[^{}]*\}", "", expr)


def check_rules(c, r, series, documented, docs_path, lag_threshold):
    """The PrometheusRule: each expression as check_expr wants, and the same
    alerts (name, expression without the chart's selectors, for) as the rules
    docs/operations.md shows and its table documents."""
    rules = r.all("PrometheusRule")
    if not c.eq(len(rules), 1, "PrometheusRules"):
        return
    alerts = [x for g in rules[0]["spec"]["groups"] for x in g["rules"]]
    used = set()
    for a in alerts:
        legend = " ".join(str(v) for v in (a.get("annotations") or {}).values())
        used |= check_expr(c, a["expr"], series, f"alert {a.get('alert')}", documented, legend)
        c.check('namespace="' in a["expr"] and 'job="' in a["expr"],
                f"alert {a.get('alert')} selects the release's namespace and job: {a['expr']!r}")
    c.check("outbox_relay_oldest_pending_age_seconds" in used, "an alert on outbox lag")
    c.check(re.search(r"> *" + re.escape(str(lag_threshold)) + r"\b",
                      next((a["expr"] for a in alerts if a.get("alert") == "OutboxRelayLagHigh"), "")),
            f"OutboxRelayLagHigh uses prometheusRule.oldestPendingAgeSeconds ({lag_threshold})")
    # Dead letters by the table's size, which a restart does not reset; the
    # counter's increase() forgot them when the relay restarted.
    dl = next((a["expr"] for a in alerts if a.get("alert") == "OutboxRelayDeadLetters"), "")
    c.check("outbox_relay_dead_letter_rows" in dl and "_total" not in dl,
            f"OutboxRelayDeadLetters watches the outbox_relay_dead_letter_rows gauge, not a counter: {dl!r}")
    with open(docs_path) as f:
        docs = f.read()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", docs, re.S) if "OutboxRelay" in b]
    if not c.eq(len(blocks), 1, "docs/operations.md has one YAML block of the alerts"):
        return
    doc_rules = [x for g in (yaml.safe_load(blocks[0]) or {}).get("groups") or [] for x in g.get("rules") or []]
    shown = lambda rs: [(x.get("alert"), strip_selectors(str(x.get("expr"))), x.get("for")) for x in rs]
    c.eq(shown(doc_rules), shown(alerts), "docs/operations.md's alerts (name, expr without selectors, for) "
         "are the chart's")
    section = docs.split("## Metrics and alerts", 1)[-1].split("\n## ", 1)[0]
    for a in alerts:
        row = next((ln for ln in section.splitlines() if ln.startswith(f"| `{a['alert']}`")), None)
        c.check(row and row.count("|") >= 5, f"docs/operations.md's alert table has a row for {a['alert']}")
