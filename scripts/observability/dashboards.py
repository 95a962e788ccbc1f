#!/usr/bin/env python3
"""Generates raftkv's Grafana dashboards (Uptime, Cluster, Node) as JSON.

The JSON files under charts/raftkv/dashboards/ are what ships (importable by
hand, or mounted as ConfigMaps for Grafana's sidecar); this script is their
source, so that every query is written once with the same label selectors.
Panels, variables and queries are made with the typed builders of Grafana's
grafana-foundation-sdk (the version scripts/test pins), so every field is one
Grafana's dashboard model has. `--check` exits non-zero when a committed file
differs from what it generates, or does not read back unchanged through the
SDK's typed models (CI runs it). tests/observability.rs runs every query below against a real
Prometheus scraping a real cluster.

Every query is keyed by $namespace and $cluster (the Helm release: a scrape
label set by the chart's ServiceMonitor), and per-pod panels also by $pod, so
two releases in one Prometheus never mix. The SLO stats are per cluster on
purpose: filtering a cluster's availability by pod would change its meaning.
"""

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as prom_models

OUT = Path(__file__).resolve().parents[2] / "charts" / "raftkv" / "dashboards"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

C = 'namespace="$namespace", cluster="$cluster"'
P = C + ', pod=~"$pod"'
BY = "namespace, cluster"


def writable_fraction(rng, step, step_s):
    """Seconds some node held a lease over the seconds the cluster existed.

    The numerator is the nodes' own integral of lease time (exact, whatever
    the scrape interval); the denominator counts the steps at which any
    target of the cluster was known to Prometheus, scraped or not, so time
    with every node down counts as unavailable.
    """
    return (
        f"clamp_max(sum by ({BY}) (increase(raftkv_lease_held_seconds_total{{{C}}}[{rng}]))"
        f" / on ({BY}) (count_over_time((max by ({BY}) (up{{{C}}}))[{rng}:{step}]) * {step_s}), 1)"
    )


def unavailable_seconds(rng, step, step_s):
    return (
        f"clamp_min(count_over_time((max by ({BY}) (up{{{C}}}))[{rng}:{step}]) * {step_s}"
        f" - on ({BY}) sum by ({BY}) (increase(raftkv_lease_held_seconds_total{{{C}}}[{rng}])), 0)"
    )


QUORUM = f"(floor(max by ({BY}) (raftkv_voters{{{C}}}) / 2) + 1)"
ZERO_WHILE_KNOWN = f"(0 * max by ({BY}) (up{{{C}}}))"
QUORUM_READY_NOW = (
    f"((count by ({BY}) (raftkv_ready{{{C}}} == 1) >= bool on ({BY}) {QUORUM})"
    f" or on ({BY}) {ZERO_WHILE_KNOWN})"
)
# Zero only while some target is down: right after a node starts, rate() has
# too few samples for a value, which is no data, not an outage.
ZERO_WHILE_DOWN = f"(0 * max by ({BY}) (up{{{C}}} == 0))"
# The share of the last rate window with a lease, from pods scraped now (a
# dead leader's last rate would hide the failover) whose series is older than
# the window (rate() under-counts a series that starts inside it).
LEASE = f"raftkv_lease_held_seconds_total{{{C}}}"
WRITABLE_NOW = (
    f"(clamp_max(sum by ({BY}) (rate({LEASE}[$__rate_interval])"
    f" and on ({BY}, pod) ({LEASE} offset $__rate_interval)"
    f" and on ({BY}, pod) (up{{{C}}} == 1)), 1)"
    f" or on ({BY}) {ZERO_WHILE_DOWN})"
)
RANGE = ("$__range", "$__interval", "($__interval_ms / 1000)")


def volume(metric):
    """A kubelet volume metric of each selected pod's claim (data-<pod>),
    joined to the pod's target so that it carries the cluster label and
    only the release's claims are shown (docs/observability.md)."""
    return (
        f"(max by (pod) (up{{{P}}}) * 0 + on (pod) group_left max by (pod) ("
        f'label_replace({metric}{{namespace="$namespace"}}, "pod", "$1", "persistentvolumeclaim", "data-(.+)")))'
    )
DAYS30 = ("30d", "1m", "60")


def q(expr, legend="", instant=False, fmt=None):
    """A Prometheus query of a panel (its refId is given by the panel)."""
    t = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DS)
    t = t.instant() if instant else t.range()
    if fmt:
        t = t.format(fmt)
    return t


def quantiles(metric, by, qs, legend):
    return [
        q(
            f"histogram_quantile({v}, sum by ({by}, le) (rate({metric}_bucket{{{P}}}[$__rate_interval])))",
            legend.format(q=name),
        )
        for v, name in qs
    ]


def thresholds(steps):
    return (dash.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for c, v in steps]))


def legend():
    return (common.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM).show_legend(True))


def panel(builder, title, desc, targets, unit="short", w=12, h=8):
    """Fills what every panel has: title, description, the data source,
    queries (refIds A, B, ...), unit and size (placed by `layout`)."""
    builder.title(title).description(desc).datasource(DS).unit(unit).span(w).height(h)
    for i, t in enumerate(targets):
        builder.with_target(t.ref_id(chr(ord("A") + i)))
    return builder


def ts(title, desc, targets, unit="short", w=12, stack=False):
    p = panel(timeseries.Panel(), title, desc, targets, unit, w)
    p.draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
    p.show_points(cm.VisibilityMode.NEVER).legend(legend())
    p.tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.NONE))
    if stack:
        p.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL).group("A"))
    return p


def right_axis(p, ref):
    """Draws query `ref` of panel `p` against a right-hand axis."""
    return p.override_by_query(ref, [dm.DynamicConfigValue(
        id_val="custom.axisPlacement", value=cm.AxisPlacement.RIGHT)])


def stat(title, desc, expr, unit, steps, w=4, decimals=None, legend="{{cluster}}"):
    p = panel(stat_panel.Panel(), title, desc, [q(expr, legend, instant=True)], unit, w, h=5)
    p.thresholds(thresholds(steps))
    if decimals is not None:
        p.decimals(decimals)
    p.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
    p.color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
    return p.text_mode(cm.BigValueTextMode.VALUE)


def timeline(title, desc, targets, steps, mappings=None, h=6, w=24):
    p = panel(statetimeline.Panel(), title, desc, targets, "short", w, h)
    p.thresholds(thresholds(steps))
    p.color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    if mappings:
        p.mappings([dm.ValueMap(options={
            k: dm.ValueMappingResult(text=v) for k, v in mappings.items()})])
    p.show_value(cm.VisibilityMode.NEVER).merge_values(True).row_height(0.8)
    return p.legend(legend())


SLO_STEPS = [("red", None), ("orange", 0.99), ("green", 0.999)]


def uptime_panels():
    rng, d30 = RANGE, DAYS30
    return [
        stat("Writes possible (range)",
             "Share of the dashboard's time range during which a leader held a valid lease "
             "(writes and lease reads served), from the nodes' raftkv_lease_held_seconds_total. "
             "Time with every member down counts as unavailable.",
             writable_fraction(*rng), "percentunit", SLO_STEPS, decimals=3),
        stat("Quorum ready (range)",
             "Share of the time range during which at least a quorum of voters was ready "
             "(/readyz: a member that knows a leader and has applied what was committed).",
             f"avg_over_time({QUORUM_READY_NOW}[$__range:$__interval])",
             "percentunit", SLO_STEPS, decimals=3),
        stat("Writes possible (30 days)",
             "As 'Writes possible', over the last 30 days (1-minute resolution for the "
             "denominator; the lease time itself is exact).",
             writable_fraction(*d30), "percentunit", SLO_STEPS, decimals=3),
        stat("Error budget left (30 days)",
             "Share of the 30-day error budget of the $slo % target not spent yet; "
             "negative when the target is missed.",
             f"1 - (1 - {writable_fraction(*d30)}) / (1 - $slo / 100)",
             "percentunit", [("red", None), ("orange", 0), ("green", 0.25)], decimals=1),
        stat("Unavailable (range)",
             "Seconds of the time range without a leader holding a lease.",
             unavailable_seconds(*rng), "s", [("green", None), ("orange", 1), ("red", 60)],
             decimals=1),
        stat("Leader changes (range)",
             "Leader changes seen by the member that saw the most.",
             f"max by ({BY}) (increase(raftkv_leader_changes_total{{{C}}}[$__range]))",
             "short", [("green", None), ("orange", 1), ("red", 4)], decimals=0),
        timeline("Unavailable intervals",
                 "Red where writes were not possible (no leader with a lease) or fewer than a "
                 "quorum of members were ready, at the graph's resolution.",
                 [q(WRITABLE_NOW, "writes possible"), q(QUORUM_READY_NOW, "quorum ready")],
                 [("red", None), ("orange", 0.5), ("green", 0.99)]),
        ts("Lease held, by pod",
           "Share of each second that each pod held the leader lease; the stack is 100 % "
           "while the cluster is available.",
           [q(f"rate(raftkv_lease_held_seconds_total{{{P}}}[$__rate_interval])", "{{pod}}")],
           "percentunit", stack=True),
        ts("Ready members and quorum",
           "Members answering /readyz, targets Prometheus can scrape, and the quorum size.",
           [q(f"count by ({BY}) (raftkv_ready{{{C}}} == 1)", "ready"),
            q(f"sum by ({BY}) (up{{{C}}})", "scraped"),
            q(QUORUM, "quorum")]),
    ]


def cluster_panels():
    return [
        timeline("Leader",
                 "Which pod is leader (green) over time.",
                 [q(f"max by (pod) (raftkv_is_leader{{{P}}})", "{{pod}}")],
                 [("transparent", None), ("green", 1)],
                 mappings={"0": "follower", "1": "leader"}),
        ts("Term", "The Raft term each pod is in.",
           [q(f"max by (pod) (raftkv_term{{{P}}})", "{{pod}}")]),
        ts("Leader changes and elections",
           "Leader changes each pod saw, and elections it started, per interval.",
           [q(f"sum by (pod) (increase(raftkv_leader_changes_total{{{P}}}[$__rate_interval]))",
              "{{pod}} leader changes"),
            q(f"sum by (pod) (increase(raftkv_elections_started_total{{{P}}}[$__rate_interval]))",
              "{{pod}} elections started")]),
        ts("Lease remaining", "Time left on the leader's lease (0 on followers).",
           [q(f"max by (pod) (raftkv_lease_remaining_seconds{{{P}}})", "{{pod}}")], "s"),
        ts("Commit and applied index", "Highest committed and applied log index per pod.",
           [q(f"max by (pod) (raftkv_commit_index{{{P}}})", "{{pod}} commit"),
            q(f"max by (pod) (raftkv_applied_index{{{P}}})", "{{pod}} applied")]),
        ts("Apply lag", "Committed entries not applied yet (commit - applied).",
           [q(f"max by (pod) (raftkv_commit_lag{{{P}}})", "{{pod}}")]),
        ts("Follower replication lag",
           "Entries each follower is behind the leader's log, as the leader sees it.",
           [q(f"max by (pod, peer) (raftkv_follower_lag_entries{{{P}}})",
              "{{pod}} -> node {{peer}}")]),
        ts("Proposals per second", "Client proposals committed and failed.",
           [q(f"sum by (pod) (rate(raftkv_proposals_committed_total{{{P}}}[$__rate_interval]))",
              "{{pod}} committed"),
            q(f"sum by (pod) (rate(raftkv_proposals_failed_total{{{P}}}[$__rate_interval]))",
              "{{pod}} failed")], "ops"),
        ts("Keys", "Keys in each pod's state machine.",
           [q(f"max by (pod) (raftkv_keys{{{P}}})", "{{pod}}")]),
        ts("Peer messages dropped", "Raft messages dropped because a peer's queue was full.",
           [q(f"sum by (pod) (rate(raftkv_peer_messages_dropped_total{{{P}}}[$__rate_interval]))",
              "{{pod}}")], "ops"),
        panel(table.Panel(), "Members", "Each pod's node id, Raft cluster id and version.",
              [q(f"max by (pod, node_id, cluster_id, version) (raftkv_node_info{{{P}}})",
                 instant=True, fmt=prom_models.PromQueryFormat.TABLE)], w=24, h=6)
        .show_header(True)
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "Value": True}})),
    ]


def node_panels():
    lat = [(0.5, "p50"), (0.99, "p99")]
    return [
        ts("Requests per second, by method", "Client gRPC requests answered.",
           [q(f"sum by (method) (rate(raftkv_grpc_request_duration_seconds_count{{{P}}}[$__rate_interval]))",
              "{{method}}")], "reqps"),
        ts("Request latency, by method", "Client gRPC latency percentiles from the histogram.",
           quantiles("raftkv_grpc_request_duration_seconds", "method", lat, "{{{{method}}}} {q}"),
           "s"),
        ts("gRPC requests by code",
           "Client-port answers per second by gRPC status code. UNAVAILABLE includes a "
           "follower's redirects to the leader and the retryable answers around a leader "
           "change; see RaftkvGrpcErrors for the codes that are the server's fault.",
           [q(f"sum by (code) (rate(raftkv_grpc_requests_total{{{P}}}[$__rate_interval]))",
              "{{code}}")], "reqps"),
        ts("Peer round trip",
           "On the leader: from a heartbeat to a peer to its answer (p50, p99), i.e. the "
           "network both ways and the peer's loop. Above ~100 ms see RaftkvPeerSlow.",
           quantiles("raftkv_peer_round_trip_seconds", "pod, peer", lat,
                     "{{{{pod}}}} -> node {{{{peer}}}} {q}"), "s"),
        ts("Disk",
           "What the node stores on its volume: WAL segments and the snapshot file in force "
           "(counted by the node as it writes), and the volume's used bytes (kubelet).",
           [q(f"max by (pod) (raftkv_wal_bytes{{{P}}})", "{{pod}} WAL"),
            q(f"max by (pod) (raftkv_snapshot_bytes{{{P}}})", "{{pod}} snapshot"),
            q(volume("kubelet_volume_stats_used_bytes"), "{{pod}} volume used")], "bytes"),
        ts("Volume free",
           "Free share of each pod's data volume (kubelet). Under 20 % and falling see "
           "RaftkvVolumeFillingUp; under 10 %, RaftkvVolumeFull.",
           [q(f"{volume('kubelet_volume_stats_available_bytes')}"
              f" / on (pod) {volume('kubelet_volume_stats_capacity_bytes')}", "{{pod}}")],
           "percentunit"),
        ts("WAL fsync latency",
           "Duration of one WAL sync (group commit). Raft waits for it before acknowledging or "
           "voting: a p99 above ~100 ms means elections (see RaftkvWalFsyncSlow).",
           quantiles("raftkv_wal_fsync_duration_seconds", "pod",
                     [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")], "{{{{pod}}}} {q}"), "s"),
        ts("WAL syncs per second", "Group commits per second.",
           [q(f"sum by (pod) (rate(raftkv_wal_fsync_duration_seconds_count{{{P}}}[$__rate_interval]))",
              "{{pod}}")], "ops"),
        right_axis(
            ts("Snapshots",
               "Snapshots taken or installed per interval (left), and the log index the latest "
               "one covers (right).",
               [q(f"sum by (pod) (increase(raftkv_snapshot_count_total{{{P}}}[$__rate_interval]))",
                  "{{pod}} snapshots"),
                q(f"max by (pod) (raftkv_snapshot_last_index{{{P}}})", "{{pod}} last index")]),
            "B"),
        ts("Snapshot duration", "Time to take and save a snapshot (p99).",
           quantiles("raftkv_snapshot_duration_seconds", "pod", [(0.99, "p99")],
                     "{{{{pod}}}} {q}"), "s"),
        ts("CPU", "CPU seconds per second used by the raftkv process, user and system "
           "(the node's own counters, in microsecond steps).",
           [q(f"sum by (pod) (rate(raftkv_process_cpu_seconds_total{{{P}}}[$__rate_interval]))",
              "{{pod}}")],
           "percentunit"),
        ts("Memory", "Resident memory of the raftkv process.",
           [q(f"process_resident_memory_bytes{{{P}}}", "{{pod}}")], "bytes"),
        ts("Open file descriptors", "Open fds, and the share of the limit in use.",
           [q(f"process_open_fds{{{P}}}", "{{pod}}")]),
        stat("Restarts (range)",
             "Container restarts from kube-state-metrics where it runs; otherwise process "
             "restarts seen by Prometheus (a new process start time).",
             f'max by (pod) (increase(kube_pod_container_status_restarts_total{{namespace="$namespace", pod=~"$pod"}}[$__range]))'
             f" or max by (pod) (changes(process_start_time_seconds{{{P}}}[$__range]))",
             "short", [("green", None), ("orange", 1), ("red", 3)], w=12, decimals=0,
             legend="{{pod}}"),
    ]


def variables():
    def query_var(name, label, query, multi=False):
        v = (dash.QueryVariable(name).label(label).datasource(DS)
             .query({"query": query, "refId": name})
             .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
             .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(multi).include_all(multi))
        return v.all_value(".*") if multi else v

    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_var("namespace", "Namespace", "label_values(raftkv_is_leader, namespace)"),
        query_var("cluster", "Cluster (release)",
                  'label_values(raftkv_is_leader{namespace="$namespace"}, cluster)'),
        query_var("pod", "Pod",
                  'label_values(raftkv_is_leader{namespace="$namespace", cluster="$cluster"}, pod)',
                  multi=True),
        dash.CustomVariable("slo").label("SLO target (%)").values("99.9,99.5,99,99.99")
        .current(dm.VariableOption(text="99.9", value="99.9")),
    ]


def annotations():
    """The leader changes, on every time series (Grafana adds its built-in
    "Annotations & Alerts" itself; the typed model has no `builtIn`, and no
    title or text format: the text is the series' labels, i.e. the pod)."""
    leader = (dash.AnnotationQuery().name("Leader changes").datasource(DS).enable(True)
              .icon_color("orange")
              .expr(f"max by ({BY}, pod) (raftkv_is_leader{{{C}}}) == 1"
                    f" unless max by ({BY}, pod) (raftkv_is_leader{{{C}}} offset 1m) == 1"))
    return [leader]


def layout(panels):
    """Places panels left to right in rows of 24 columns (a panel that does
    not fit the row starts the next); ids in order."""
    x = y = row_h = 0
    for i, p in enumerate(panels, 1):
        g = p.build().grid_pos
        if x + g.w > 24:
            x, y, row_h = 0, y + row_h, 0
        p.id(i).grid_pos(dm.GridPos(h=g.h, w=g.w, x=x, y=y))
        x, row_h = x + g.w, max(row_h, g.h)
    return panels


def dashboard(uid, title, desc, panels):
    d = (dash.Dashboard(title).uid(uid).description(desc).tags(["raftkv"]).editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).version(1).time("now-6h", "now")
         .refresh("30s").timezone("").variables(variables()).annotations(annotations())
         .link(dash.DashboardLink("raftkv").type(dm.DashboardLinkType.DASHBOARDS)
               .tags(["raftkv"]).as_dropdown(True).include_vars(True).keep_time(True)))
    for p in layout(panels):
        d.with_panel(p)
    return d.build()


DASHBOARDS = {
    "raftkv-uptime.json": dashboard(
        "raftkv-uptime", "raftkv / Uptime",
        "Availability of each raftkv cluster: time with a leader holding a lease, time with a "
        "quorum of ready members, the 30-day SLO and its error budget.", uptime_panels()),
    "raftkv-cluster.json": dashboard(
        "raftkv-cluster", "raftkv / Cluster",
        "Raft state of a raftkv cluster: leader, term, elections, lease, commit and apply, "
        "replication lag, proposals, keys.", cluster_panels()),
    "raftkv-node.json": dashboard(
        "raftkv-node", "raftkv / Node",
        "One raftkv pod: gRPC rate, latency and codes, peer round trips, disk and volume, "
        "WAL fsync, snapshots, process resources, restarts.", node_panels()),
}


def untyped_fields(text):
    """What of a dashboard's JSON Grafana's typed model does not know: the
    file is read into the SDK's models (panels and queries by their plugin
    types) and written back; any field lost or changed on the way is
    reported. Empty for everything this script writes."""
    plugins.register_default_plugins()
    data = json.loads(text)
    again = json.loads(json.dumps(dm.Dashboard.from_json(data), cls=JSONEncoder))
    return diff(data, again)


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in b:
                out.append(f"{path}.{k}: unknown to the typed model")
            elif k not in a:
                continue  # a default the model adds
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} reads back as {b!r}"]


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, d in DASHBOARDS.items():
        text = json.dumps(d, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            else:
                stale += [f"{path}{d}" for d in untyped_fields(text)]
        else:
            path.write_text(text)
    if stale:
        print("out of date (run scripts/observability/dashboards.py) or not of the typed model:",
              *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
