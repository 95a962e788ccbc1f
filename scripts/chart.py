#!/usr/bin/env python3
"""Render, lint and validate the Helm chart (charts/raftkv) offline.

Helm itself renders (PyPI `helm-python-sdk`: Helm's Go SDK behind a C ABI,
no cluster needed) and every rendered object is validated against the
Kubernetes OpenAPI schemas of a current release in strict mode (PyPI
`kubernetes-validate`: unknown fields are errors). See docs/kubernetes.md.

  chart.py render [--set K=V ...] [--json] [--upgrade-from N]
                                             print the manifests (of an upgrade from N
                                             replicas: with the scale-down hook)
  chart.py check                             lint + render + validate + guards + k8s/ == render
  chart.py write-k8s                         regenerate k8s/ from the default render
  chart.py compare FILE                      `raftctl manifests -o json` (FILE) against the
                                             chart rendered with the same values
  chart.py scrape-config [--release R] [--set ...] --pod raftkv-0=HOST[:PORT] ...
                                             the Prometheus scrape configs the Prometheus
                                             Operator generates for the enabled monitor,
                                             service discovery stood in by static targets

The container tests (tests/containers.rs) call `render --json` and start
containers exactly as the rendered pod template says.
"""
import argparse
import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "raftkv")
K8S = os.path.join(ROOT, "k8s")
RELEASE = "raftkv"
NAMESPACE = "default"
# The newest Kubernetes minor the installed kubernetes-validate knows.
KUBE_VERSION = kubernetes_validate.latest_version()
# Kinds of the Prometheus Operator and cert-manager: no Kubernetes schema
# covers them (their apiVersion is checked).
CRD_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "PodMonitor": "monitoring.coreos.com/v1",
             "PrometheusRule": "monitoring.coreos.com/v1", "Certificate": "cert-manager.io/v1"}

# A non-default set: 5 replicas, no persistence, monitoring (ServiceMonitor,
# rules, dashboards) and the network policy on, hard anti-affinity.
NON_DEFAULT = {
    "replicas": 5,
    "cluster": {"initialMembers": 5},
    "persistence": {"enabled": False},
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True},
    },
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}]},
    "antiAffinity": {"type": "hard"},
}


def render(values=None, revision=1, is_upgrade=False, name=RELEASE):
    """Rendered objects (dicts), hooks included, in a stable order."""
    chart = helm.Chart.load(CHART)
    out = chart.render(values or {}, name=name, namespace=NAMESPACE,
                       revision=revision, is_install=not is_upgrade, is_upgrade=is_upgrade)
    objects = []
    for path in sorted(out):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(out[path]):
            if doc:
                objects.append(doc)
    return objects


def notes(values=None):
    chart = helm.Chart.load(CHART)
    out = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, revision=1, is_install=True)
    return next(v for k, v in out.items() if k.endswith("NOTES.txt"))


def is_hook(obj):
    return "helm.sh/hook" in (obj.get("metadata", {}).get("annotations") or {})


def validate(objects, where):
    """Strict schema validation of every object; CRD kinds get a shape check."""
    for obj in objects:
        name = f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") in CRD_KINDS:
            assert obj["apiVersion"] == CRD_KINDS[obj["kind"]], name
            assert isinstance(obj.get("spec"), dict) and obj["spec"], name
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise SystemExit(f"{name} is invalid for Kubernetes {KUBE_VERSION}: {e.message} at {list(e.path)}")


def render_error(values, is_upgrade=False):
    """The error message of a render that must fail, or None if it rendered."""
    try:
        render(values, revision=2 if is_upgrade else 1, is_upgrade=is_upgrade)
    except helm.HelmError as e:
        return str(e)
    return None


def lint(values=None):
    report = helm.lint(CHART, values or {}, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    if bad or report.get("errors"):
        raise SystemExit(f"helm lint: {bad or report['errors']}")


def k8s_objects():
    """The kustomize base: kustomization.yaml's resources, in its order."""
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    objects = []
    for res in kustomization["resources"]:
        with open(os.path.join(K8S, res)) as f:
            objects.extend(d for d in yaml.safe_load_all(f) if d)
    return kustomization, objects


def k8s_files(objects):
    """Default render → {file name: YAML text}; hooks (helm test) left out."""
    files = {}
    for obj in objects:
        if is_hook(obj):
            continue
        fname = f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        files[fname] = yaml.safe_dump(obj, sort_keys=False)
    header = ("# Generated from charts/raftkv with default values by\n"
              "# `python3 scripts/chart.py write-k8s`; do not edit by hand\n"
              "# (a test fails when this base and the chart's render differ).\n")
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": list(files)}
    files["kustomization.yaml"] = header + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def _block_strings(dumper, text):
    """Multi-line strings (the ConfigMap's config.yaml) as readable blocks."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


yaml.SafeDumper.add_representer(str, _block_strings)


def key(obj):
    return (obj["kind"], obj["metadata"]["name"])


def check():
    steps = []

    def ok(what):
        steps.append(what)
        print(f"ok: {what}")

    lint()
    lint(NON_DEFAULT)
    for tls, _, _ in TLS_SOURCES.values():
        lint(with_values(NON_DEFAULT, tls=dict(tls, enabled=True)))
    ok(f"helm lint --strict (defaults and non-default set), Kubernetes {KUBE_VERSION}")

    default = render()
    validate(default, "default render")
    kinds = sorted({o["kind"] for o in default})
    ok(f"default render: {len(default)} objects valid (strict): {', '.join(kinds)}")
    check_default(default)
    check_update_strategy()
    ok("default render: StatefulSet/Services/PDB/probes/security as designed; update strategy from values")

    other = render(NON_DEFAULT)
    validate(other, "non-default render")
    check_non_default(other)
    check_user_rules()
    check_test_pod()
    check_monitors()
    check_rules_see_targets()
    ok(f"non-default render: {len(other)} objects valid (strict); user alert rules kept verbatim; "
       "the test pod selected by nothing but the client port's policy; each monitor scrapes each pod once; "
       "the alert rules select and group by labels the monitors set")

    # Scaling must not change the pod template (no rolling restart on scale).
    sts3 = find(render({"replicas": 3}), "StatefulSet")
    sts5 = find(render({"replicas": 5}), "StatefulSet")
    assert sts3["spec"]["template"] == sts5["spec"]["template"], "replicas changed the pod template"
    assert sts5["spec"]["replicas"] == 5
    check_pdb()
    # A settings change does change it (checksum annotation rolls the pods).
    changed = find(render({"raft": {"snapshotThreshold": 5}}), "StatefulSet")
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != \
        sts3["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    ok("scaling keeps the pod template; a config change rolls it; PDB keeps quorum at 1, 3, 5, 7 live replicas")

    guards = {
        "even replicas": ({"replicas": 4}, "is even"),
        "zero replicas": ({"replicas": 0}, "replicas"),
        "negative replicas": ({"replicas": -1}, "replicas"),
        "bad size": ({"persistence": {"size": "lots"}}, "not a Kubernetes quantity"),
        "bad size unit": ({"persistence": {"size": "10GB"}}, "not a Kubernetes quantity"),
        "even founders": ({"cluster": {"initialMembers": 2}}, "initialMembers"),
        "unknown value": ({"replica": 3}, "replica"),
        "wrong type": ({"replicas": "three"}, "replicas"),
        "bad enum": ({"log": {"format": "xml"}}, "format"),
        "bad port": ({"ports": {"peer": 70000}}, "peer"),
        "lease not below election": ({"raft": {"leaseMs": 400}}, "leaseMs"),
        "fewer pods than founders at install": ({"replicas": 1}, "cluster.initialMembers (3)"),
        "rolling update settings with OnDelete": (
            {"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}}, "rollingUpdate"),
        "negative partition": ({"updateStrategy": {"rollingUpdate": {"partition": -1}}}, "partition"),
        "negative minReadySeconds": ({"minReadySeconds": -1}, "minReadySeconds"),
        "tls certManager without an issuer": (
            {"tls": {"enabled": True, "source": "certManager"}}, "tls.certManager.issuerRef.name"),
        "tls existingSecret without a name": (
            {"tls": {"enabled": True, "source": "existingSecret", "existingSecret": {"clientName": "c"}}},
            "tls.existingSecret.name"),
        "tls existingSecret without a client Secret for helm test": (
            {"tls": {"enabled": True, "source": "existingSecret", "existingSecret": {"name": "s"}}},
            "tls.existingSecret.clientName"),
        "tls existingSecret: the members' Secret as the client's": (
            {"tls": {"enabled": True, "source": "existingSecret", "existingSecret": {"name": "s", "clientName": "s"}}},
            "client certificate of its own"),
        "tls issuer with another source": (
            {"tls": {"enabled": True, "certManager": {"issuerRef": {"name": "ca"}}}}, "tls.source is generate"),
        "tls existing Secret with another source": (
            {"tls": {"enabled": True, "source": "certManager", "certManager": {"issuerRef": {"name": "ca"}},
                     "existingSecret": {"name": "s"}}}, "tls.source is certManager"),
        "tls members below replicas": ({"tls": {"enabled": True, "members": 1}}, "tls.members: 1"),
        "tls unknown source": ({"tls": {"enabled": True, "source": "vault"}}, "source"),
        "tls unknown setting": ({"tls": {"enabled": True, "ca": "x"}}, "ca"),
        "tls zero validity": ({"tls": {"enabled": True, "generate": {"days": 0}}}, "days"),
    }
    for what, (values, needle) in guards.items():
        err = render_error(values)
        assert err is not None, f"{what}: rendered, should have been refused"
        assert needle in err, f"{what}: refused, but the message does not say why: {err}"
    # Value sets that must render (each one was refused once).
    accepted = {
        # As a subchart, Helm hands the parent's `global` to this chart.
        "subchart globals": {"global": {"imageRegistry": "x"}},
    }
    for what, values in accepted.items():
        err = render_error(values)
        assert err is None, f"{what}: refused, should render: {err}"
    # Below the founders after install: a scale-down once members were
    # removed (raftctl scale 1, then the same replicas on the next upgrade).
    err = render_error({"replicas": 1}, is_upgrade=True)
    assert err is None, f"an upgrade to fewer replicas than founders refused: {err}"
    accepted["upgrade below the founders"] = {"replicas": 1}
    ok(f"{len(guards)} bad value sets refused with a clear message, {len(accepted)} good ones rendered")

    check_scale_down_hook()
    ok("helm upgrade 5 -> 3: a pre-upgrade Job runs `raftctl scale 3` on this StatefulSet, RBAC (created first) "
       "grants exactly raftctl's calls, a failed Job is kept, nothing of the workload selects its pod; "
       "3 -> 3, 3 -> 5 and helm template: no hook; any release name, name override and client port: "
       "the Job passes the StatefulSet's selector and port")

    runs = check_backup()
    ok(f"backup.enabled ({runs} value sets): a CronJob (Forbid) runs `raftctl snapshot save --dir /backup --keep N` of "
       "the image against the client Service and port, on the chart's claim or the volume given, with the "
       "workload's security settings and the client certificate under TLS; the NetworkPolicy admits its pod to "
       "the client port only")
    check_restore()
    ok("restore.fromSnapshot: an init container restores the backup into the node's data directory as the "
       "member its pod name says, founders as voters, once (skips an initialized directory and non-founders); "
       "refused without file or volume and on upgrade")

    check_test_user()
    ok("auth.testUser: both helm test containers authenticate as the Secret's user (RAFTKV_USER and "
       "RAFTKV_PASSWORD from its keys, nothing on the command line), with and without TLS from every source; "
       "refused without helm test or with an empty key")

    check_tls()
    ok("tls.enabled: each source (generate, certManager, existingSecret) at 3 and 5 members mounts the Secret, "
       "sets the node's and helm test's TLS settings and keeps probes and NetworkPolicy; the Certificates name "
       "every member; generated certificates chain and are kept across upgrades; TLS off renders as before")

    text = notes()
    assert "raftctl" in text and "port-forward" in text and "helm test" in text, text
    assert "CANARY" not in text and "CANARY" in notes({"updateStrategy": {"rollingUpdate": {"partition": 2}}})
    assert "raftctl scale 3` first" in text and "scaleDownHook.enabled=false" not in text, text
    assert "raftctl scale 3` first" in notes({"nameOverride": "kv", "ports": {"client": 8000}})
    other = notes({"scaleDownHook": {"enabled": False}})
    assert "raftctl scale 3` first" not in other and "scaleDownHook.enabled=false" in other, other
    ok("NOTES.txt tells how to reach the cluster with raftctl, how a scale-down goes (through the hook, or by hand "
       "when it is off or cannot work), and when a canary partition holds a rollout")

    kustomization, base = k8s_objects()
    validate(base, "k8s/")
    expected = [o for o in default if not is_hook(o)]
    assert sorted(map(key, base)) == sorted(map(key, expected)), "k8s/ lists other objects than the chart"
    for obj in expected:
        twin = next(o for o in base if key(o) == key(obj))
        assert twin == obj, f"k8s/ {key(obj)} differs from the chart's render: run scripts/chart.py write-k8s"
    ok(f"k8s/ ({len(base)} objects) equals the default render and is valid")
    print(f"chart check: {len(steps)} checks passed")


def find(objects, kind, name=None):
    return next(o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def check_default(objs):
    sts = find(objs, "StatefulSet")
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == "raftkv-headless"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault" and pod["securityContext"]["runAsNonRoot"]
    assert pod["terminationGracePeriodSeconds"] >= 10
    assert pod["affinity"]["podAntiAffinity"] and pod["topologySpreadConstraints"]
    assert "checksum/config" in spec["template"]["metadata"]["annotations"]
    env = {e["name"] for e in c["env"]}
    assert {"RAFTKV_CONFIG", "RAFTKV_POD_NAME", "RAFTKV_NAMESPACE"} <= env, env
    assert "RAFTKV_REPLICAS" not in env, "the replica count must not be in the pod template"
    headless = find(objs, "Service", "raftkv-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert find(objs, "Service", "raftkv")["spec"]["type"] == "ClusterIP"
    cfg = yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"])
    assert cfg["replicas"] == 3 and cfg["statefulset"] == "raftkv" and cfg["auto_join"] is True, cfg
    test = [o for o in objs if is_hook(o)]
    assert len(test) == 1 and test[0]["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert not any(o["kind"] in set(CRD_KINDS) | {"NetworkPolicy", "Secret"} for o in objs)


def check_non_default(objs):
    kinds = {o["kind"] for o in objs}
    # The PodMonitor is the ServiceMonitor's alternative (check_monitors).
    assert set(CRD_KINDS) - {"PodMonitor", "Certificate"} <= kinds and "NetworkPolicy" in kinds, kinds
    sts = find(objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 5 and "volumeClaimTemplates" not in sts["spec"]
    assert any("emptyDir" in v for v in sts["spec"]["template"]["spec"]["volumes"])
    assert "requiredDuringSchedulingIgnoredDuringExecution" in sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    np = find(objs, "NetworkPolicy")
    peer_rule = np["spec"]["ingress"][0]
    assert peer_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "raftkv"
    client_rule = np["spec"]["ingress"][1]
    assert [p["port"] for p in client_rule["ports"]] == [7379], "only the client port is open to clients"
    dashboards = os.path.join(CHART, "dashboards")
    want = len([f for f in os.listdir(dashboards) if f.endswith(".json")]) if os.path.isdir(dashboards) else 0
    got = [o for o in objs if o["kind"] == "ConfigMap" and "-dashboard-" in o["metadata"]["name"]]
    assert len(got) == want, (len(got), want)
    # The PrometheusRule carries the plain rules file's groups unchanged
    # (check_monitors: the monitors give every series the labels they key by).
    with open(os.path.join(CHART, "rules", "raftkv-alerts.yaml")) as f:
        rules_file = yaml.safe_load(f)
    assert find(objs, "PrometheusRule")["spec"]["groups"] == rules_file["groups"]


def quorum(n):
    return n // 2 + 1


def _scaled(value, total):
    """An int-or-percent PDB value against `total` pods, rounded up as the
    disruption controller does (GetScaledValueFromIntOrPercent, roundUp)."""
    if isinstance(value, str) and value.endswith("%"):
        return -(-int(value[:-1]) * total // 100)
    return int(value)


def disruptions_allowed(pdb, expected, healthy):
    """status.disruptionsAllowed the disruption controller computes for
    `pdb` when the StatefulSet asks for `expected` pods and `healthy` are
    ready: healthy - desiredHealthy, never negative."""
    spec = pdb["spec"]
    if "minAvailable" in spec:
        desired = _scaled(spec["minAvailable"], expected)
    else:
        desired = expected - _scaled(spec["maxUnavailable"], expected)
    return max(0, healthy - desired)


def check_pdb():
    """The PDB must keep a quorum of the replicas that run now, which
    `raftctl scale` changes without touching the PDB: one rendered budget,
    applied to 1, 3, 5 and 7 ready members, allows n - quorum(n) evictions."""
    for values in ({}, {"replicas": 5, "cluster": {"initialMembers": 5}}):
        pdb = find(render(values), "PodDisruptionBudget")
        got = {n: disruptions_allowed(pdb, n, n) for n in (1, 3, 5, 7)}
        want = {n: n - quorum(n) for n in (1, 3, 5, 7)}
        assert got == want, f"PDB {pdb['spec']} (values {values}) allows {got} disruptions, quorum needs {want}"
        # One member down already: no further eviction may take a vote.
        for n in (3, 5, 7):
            assert disruptions_allowed(pdb, n, n - 1) == n - 1 - quorum(n), (pdb["spec"], n)


def check_update_strategy():
    """updateStrategy and minReadySeconds come from values; the defaults
    render what the chart always rendered (a plain RollingUpdate)."""
    spec = find(render(), "StatefulSet")["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}, spec["updateStrategy"]
    assert "minReadySeconds" not in spec, spec
    canary = {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
              "minReadySeconds": 10}
    err = render_error(canary)
    assert err is None, f"a canary update strategy refused: {err}"
    objs = render(canary)
    validate(objs, "canary render")
    spec = find(objs, "StatefulSet")["spec"]
    assert spec["updateStrategy"] == canary["updateStrategy"], spec["updateStrategy"]
    assert spec["minReadySeconds"] == 10, spec
    assert find(render({"updateStrategy": {"type": "OnDelete"}}), "StatefulSet")["spec"]["updateStrategy"] \
        == {"type": "OnDelete"}


def selector_matches(selector, labels):
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against
    a label set; an empty selector matches everything."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def pod_selectors(objs):
    """Every selector of pods in `objs`, as (where, LabelSelector): workload,
    PDB, Service and PodMonitor selectors, affinity and spread terms,
    NetworkPolicy targets and peers. ServiceMonitors select Services and are
    checked by check_monitors."""
    found = []

    def walk(node, path, kind):
        if isinstance(node, dict):
            for k, v in node.items():
                here = f"{path}.{k}"
                if k in ("selector", "labelSelector", "podSelector") and isinstance(v, dict) \
                        and kind != "ServiceMonitor":
                    if kind == "Service" and k == "selector":
                        v = {"matchLabels": v}  # a Service's selector is a plain map
                    found.append((here, v))
                else:
                    walk(v, here, kind)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]", kind)

    for o in objs:
        walk(o.get("spec"), f"{o['kind']}/{o['metadata']['name']}.spec", o["kind"])
    return found


def check_test_pod():
    """The helm test pod has labels of its own: no workload selector (the
    StatefulSet's, the PDB's, a Service's, a monitor's, an anti-affinity or
    spread term, the NetworkPolicy's target or its members-only peer rule)
    selects it. Only the NetworkPolicy rule for the client port admits it,
    also when clients are limited to selected namespaces. It is scheduled
    and pulled like the workload."""
    extra = {"imagePullSecrets": [{"name": "regcred"}], "nodeSelector": {"pool": "db"},
             "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}
    for policy in ({}, {"clientNamespaceSelector": {"matchLabels": {"team": "apps"}}}):
        values = json.loads(json.dumps(NON_DEFAULT))
        values["networkPolicy"].update(policy)
        values.update(extra)
        objs = render(values)
        validate(objs, "test pod render")
        test = next(o for o in objs if is_hook(o) and o["kind"] == "Pod")
        labels = test["metadata"].get("labels") or {}
        np = find(objs, "NetworkPolicy")
        client_rules = [f"NetworkPolicy/{np['metadata']['name']}.spec.ingress[{i}].from[{j}].podSelector"
                        for i, r in enumerate(np["spec"]["ingress"])
                        if [p["port"] for p in r["ports"]] == [values.get("ports", {}).get("client", 7379)]
                        for j, peer in enumerate(r["from"]) if "podSelector" in peer]
        selecting = [where for where, sel in pod_selectors(objs) if selector_matches(sel, labels)]
        assert selecting and set(selecting) <= set(client_rules), \
            f"test pod {labels} selected by {selecting}; only a client-port rule of the policy may ({client_rules})"
        for k, v in extra.items():
            assert test["spec"].get(k) == v, f"test pod {k}: {test['spec'].get(k)} != {v}"


# The labels every target of the chart's monitors carries in Prometheus,
# release `raftkv` in `default`, for pod raftkv-0 (plus `instance`, the
# pod's IP and port): what the Prometheus Operator's generated scrape config
# sets, then the monitor's relabelings. check_monitors derives them from the
# render and compares; dashboards and alert rules key by these.
#   ServiceMonitor: job = the Service's name (or the value of the Service
#   label named by spec.jobLabel), namespace, service, pod, container,
#   endpoint = the port's name.
#   PodMonitor: job = <namespace>/<PodMonitor name> (or the pod label named
#   by spec.jobLabel), namespace, pod, container, endpoint.
#   Then the chart's relabelings: job = raftkv (the alert rules find raftkv's
#   `up` by it, whatever the objects are called) and the cluster label
#   (monitoring.clusterLabel, default `cluster`) = the release.
MONITOR_TARGET_LABELS = {
    "ServiceMonitor": {"job": "raftkv", "namespace": "default", "service": "raftkv-headless",
                       "pod": "raftkv-0", "container": "raftkv", "endpoint": "http", "cluster": "raftkv"},
    "PodMonitor": {"job": "raftkv", "namespace": "default",
                   "pod": "raftkv-0", "container": "raftkv", "endpoint": "http", "cluster": "raftkv"},
}


def _meta_name(label):
    """A Kubernetes label name as Prometheus's service discovery writes it
    into a meta label name (`raftkv.io/service` -> `raftkv_io_service`)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def _meta_labels(prefix, labels):
    out = {}
    for k, v in (labels or {}).items():
        out[f"{prefix}_label_{_meta_name(k)}"] = v
        out[f"{prefix}_labelpresent_{_meta_name(k)}"] = "true"
    return out


def pod_ips(objs):
    """Stand-in addresses of the StatefulSet's pods: {pod name: IP}."""
    sts = find(objs, "StatefulSet")
    return {f"{sts['metadata']['name']}-{i}": f"10.0.0.{i + 1}" for i in range(int(sts["spec"]["replicas"]))}


def discovered(role, objs, ips):
    """The targets Prometheus's Kubernetes service discovery reports for the
    rendered objects (role `endpoints` or `pod`), as label sets with the
    meta labels the relabel rules read: with role `endpoints`, one target
    per Service, per pod the Service selects and per Service port; with role
    `pod`, one per pod and container port. The pods are the StatefulSet's,
    running and ready, at the addresses `ips` ({pod: host}); a port is
    reached at host:port, where host may carry its own port
    (`127.0.0.1:9000`) for the container port named http, so that a real
    Prometheus can scrape a node that stands for the pod."""
    sts = find(objs, "StatefulSet")
    template = sts["spec"]["template"]
    ns = sts["metadata"]["namespace"]
    containers = template["spec"]["containers"]

    def address(pod, port_name, number):
        host = ips[pod]
        if ":" in host:  # a real node's HTTP address stands for the pod
            return host if port_name == "http" else f"{host.rsplit(':', 1)[0]}:{number}"
        return f"{host}:{number}"

    def pod_meta(pod, container, port):
        return {"__meta_kubernetes_namespace": ns,
                "__meta_kubernetes_pod_name": pod,
                "__meta_kubernetes_pod_phase": "Running",
                "__meta_kubernetes_pod_ready": "true",
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                **_meta_labels("__meta_kubernetes_pod", template["metadata"]["labels"])}

    out = []
    for pod in ips:
        if role == "pod":
            for c in containers:
                for p in c.get("ports", []):
                    out.append({"__address__": address(pod, p.get("name"), p["containerPort"]),
                                **pod_meta(pod, c, p)})
            continue
        for svc in objs:
            if svc["kind"] != "Service" or svc["metadata"].get("namespace") != ns:
                continue
            if not selector_matches({"matchLabels": svc["spec"].get("selector") or {}},
                                    template["metadata"]["labels"]):
                continue
            for sp in svc["spec"]["ports"]:
                target = sp.get("targetPort", sp["port"])
                c, p = next(((c, p) for c in containers for p in c.get("ports", [])
                             if target in (p.get("name"), p["containerPort"])), (None, None))
                if p is None:
                    continue  # the endpoints controller lists no address for it
                out.append({"__address__": address(pod, p.get("name"), p["containerPort"]),
                            "__meta_kubernetes_service_name": svc["metadata"]["name"],
                            **_meta_labels("__meta_kubernetes_service", svc["metadata"].get("labels")),
                            "__meta_kubernetes_endpoints_name": svc["metadata"]["name"],
                            "__meta_kubernetes_endpoint_port_name": sp.get("name", ""),
                            "__meta_kubernetes_endpoint_port_protocol": sp.get("protocol", "TCP"),
                            "__meta_kubernetes_endpoint_ready": "true",
                            "__meta_kubernetes_endpoint_address_target_kind": "Pod",
                            "__meta_kubernetes_endpoint_address_target_name": pod,
                            **pod_meta(pod, c, p)})
    return out


def _selector_keeps(selector, prefix):
    """The Operator's keep rules for a monitor's label selector."""
    rules = []
    for k, v in sorted((selector.get("matchLabels") or {}).items()):
        rules.append({"action": "keep",
                      "source_labels": [f"{prefix}_label_{_meta_name(k)}", f"{prefix}_labelpresent_{_meta_name(k)}"],
                      "regex": f"({v});true"})
    for e in selector.get("matchExpressions") or []:
        k, op = _meta_name(e["key"]), e["operator"]
        vals = "|".join(e.get("values") or [])
        if op in ("In", "NotIn"):
            rules.append({"action": "keep" if op == "In" else "drop",
                          "source_labels": [f"{prefix}_label_{k}", f"{prefix}_labelpresent_{k}"],
                          "regex": f"({vals});true"})
        else:
            rules.append({"action": "keep" if op == "Exists" else "drop",
                          "source_labels": [f"{prefix}_labelpresent_{k}"], "regex": "true"})
    return rules


def _user_relabelings(rules):
    """A monitor's relabelings (camelCase) as Prometheus relabel_configs."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{names.get(k, k): (v.lower() if k == "action" else v) for k, v in r.items()} for r in rules]


def operator_scrape_configs(mon):
    """The scrape configs the Prometheus Operator generates for a
    ServiceMonitor or PodMonitor, one per endpoint, as Prometheus reads them
    (the Operator's relabel rules in its order: keep what the selector and
    the port select; set namespace, service, pod, container, job and
    endpoint; then the monitor's own relabelings). Service discovery is left
    out (`discovered` stands in for it)."""
    spec, ns, name = mon["spec"], mon["metadata"]["namespace"], mon["metadata"]["name"]
    service = mon["kind"] == "ServiceMonitor"
    out = []
    for i, ep in enumerate(spec["endpoints"] if service else spec["podMetricsEndpoints"]):
        rules = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
        if service:
            rules += _selector_keeps(spec["selector"], "__meta_kubernetes_service")
            rules += [
                {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": ep["port"]},
                {"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                                   "__meta_kubernetes_endpoint_address_target_name"],
                 "separator": ";", "regex": "Node;(.*)", "replacement": "${1}", "target_label": "node"},
                {"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                                   "__meta_kubernetes_endpoint_address_target_name"],
                 "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
            ]
            if spec.get("jobLabel"):
                rules.append({"source_labels": [f"__meta_kubernetes_service_label_{_meta_name(spec['jobLabel'])}"],
                              "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
            job_name = f"serviceMonitor/{ns}/{name}/{i}"
        else:
            rules += [{"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
                       "regex": "(Failed|Succeeded)"}]
            rules += _selector_keeps(spec["selector"], "__meta_kubernetes_pod")
            rules += [
                {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                 "regex": ep["port"]},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"target_label": "job", "replacement": f"{ns}/{name}"},
            ]
            if spec.get("jobLabel"):
                rules.append({"source_labels": [f"__meta_kubernetes_pod_label_{_meta_name(spec['jobLabel'])}"],
                              "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
            job_name = f"podMonitor/{ns}/{name}/{i}"
        rules.append({"target_label": "endpoint", "replacement": ep["port"]})
        rules += _user_relabelings(ep.get("relabelings") or [])
        config = {"job_name": job_name, "honor_labels": bool(ep.get("honorLabels", False)),
                  "metrics_path": ep.get("path", "/metrics"), "scheme": ep.get("scheme", "http"),
                  "relabel_configs": rules}
        if ep.get("interval"):
            config["scrape_interval"] = ep["interval"]
        out.append(config)
    return out


def relabel(labels, rules):
    """Prometheus's relabelling (actions replace, keep, drop, labelmap) of a
    discovered target; None if dropped. Regexes are anchored, as in
    Prometheus."""
    labels = dict(labels)
    for r in rules:
        action = r.get("action", "replace")
        regex = re.compile(r.get("regex", "(.*)"))
        value = r.get("separator", ";").join(labels.get(x, "") for x in r.get("source_labels", []))
        if action in ("keep", "drop"):
            if (regex.fullmatch(value) is not None) != (action == "keep"):
                return None
        elif action == "replace":
            m = regex.fullmatch(value)
            if m:
                out = re.sub(r"\$\{?(\w+)\}?", lambda g: (m.group(int(g.group(1))) or "")
                             if g.group(1).isdigit() else "", r.get("replacement", "$1"))
                if out:
                    labels[r["target_label"]] = out
                else:
                    labels.pop(r["target_label"], None)
        elif action == "labelmap":
            for k, v in list(labels.items()):
                m = regex.fullmatch(k)
                if m:
                    labels[m.expand(r.get("replacement", "$1").replace("$", "\\"))] = v
        else:
            raise AssertionError(f"relabel action {action} not emulated")
    return labels


def scrape(config, targets):
    """What Prometheus makes of `targets` (discovered label sets) with a
    scrape config: the label sets of the targets it scrapes. It sets job,
    the address, path and scheme before relabelling, `instance` after, and
    drops the labels that begin with `__`."""
    out = []
    for t in targets:
        labels = relabel({"job": config["job_name"], "__metrics_path__": config["metrics_path"],
                          "__scheme__": config["scheme"], **t}, config["relabel_configs"])
        if labels is None:
            continue
        labels.setdefault("instance", labels["__address__"])
        out.append({k: v for k, v in labels.items() if not k.startswith("__")})
    # Targets with the same labels are one target.
    return [dict(t) for t in {tuple(sorted(t.items())) for t in out}]


def in_discovery_namespaces(mon, targets):
    """The targets in the namespaces the Operator has Prometheus discover
    for `mon`: its spec.namespaceSelector (any, or matchNames), else its own
    namespace."""
    nss = mon["spec"].get("namespaceSelector") or {}
    if nss.get("any"):
        return targets
    names = nss.get("matchNames") or [mon["metadata"]["namespace"]]
    return [t for t in targets if t["__meta_kubernetes_namespace"] in names]


def monitor_targets(mon, objs):
    """What the Prometheus Operator and Prometheus make of `mon` over the
    rendered objects: [(endpoint, Service or None, labels)] of each target
    of pod ordinal 0, `instance` left out."""
    sts = find(objs, "StatefulSet")
    pod = f"{sts['metadata']['name']}-0"
    role = "endpoints" if mon["kind"] == "ServiceMonitor" else "pod"
    targets = in_discovery_namespaces(mon, discovered(role, objs, pod_ips(objs)))
    out = []
    for config, ep in zip(operator_scrape_configs(mon),
                          mon["spec"].get("endpoints") or mon["spec"].get("podMetricsEndpoints")):
        for labels in scrape(config, targets):
            if labels.get("pod") != pod:
                continue
            svc = next((o for o in objs if o["kind"] == "Service"
                        and o["metadata"]["name"] == labels.get("service")), None) if role == "endpoints" else None
            labels.pop("instance")
            out.append((ep["port"], svc, labels))
    return out


def check_monitors():
    """Each pod is scraped once: a ServiceMonitor's endpoint matches
    exactly one Service (the headless one, which lists not-ready members
    too); a PodMonitor selects the members' pods and not the helm test pod;
    enabling both monitors is refused. The target labels are the ones
    written down in MONITOR_TARGET_LABELS. The scrape config handed to the
    real Prometheus of tests/observability.rs scrapes every member once and
    passes `promtool check config`."""
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PodMonitor", "podMonitor")):
        objs = render({"monitoring": {key: {"enabled": True}}})
        validate(objs, f"{kind} render")
        mon = find(objs, kind)
        targets = monitor_targets(mon, objs)
        assert len(targets) == 1, f"{kind} scrapes each pod {len(targets)} times: " \
            f"{[(ep, svc and svc['metadata']['name']) for ep, svc, _ in targets]}"
        ep, svc, labels = targets[0]
        if svc is not None:
            assert svc["spec"].get("clusterIP") == "None" and svc["spec"].get("publishNotReadyAddresses"), \
                f"{kind} selects {svc['metadata']['name']}, which does not list not-ready members"
        else:
            test = next(o for o in objs if is_hook(o) and o["kind"] == "Pod")
            assert not selector_matches(mon["spec"]["selector"], test["metadata"]["labels"]), \
                f"{kind} selects the helm test pod"
        assert labels == MONITOR_TARGET_LABELS[kind], \
            f"{kind} target labels {labels} != the documented {MONITOR_TARGET_LABELS[kind]}"
        # Every member once (5 of them), in the config `scrape-config`
        # gives a real Prometheus, which promtool accepts.
        values = {"replicas": 5, "cluster": {"initialMembers": 5}, "monitoring": {key: {"enabled": True}}}
        pods = pod_ips(render(values))
        configs = scrape_configs(values, RELEASE, pods)
        scraped = sorted(t["pod"] for c in configs
                         for t in scrape(c, [{"__address__": g["targets"][0], **g["labels"]}
                                             for g in c["static_configs"]]))
        assert scraped == sorted(pods), f"{kind}: 5 members scraped as {scraped}"
        if shutil.which("promtool"):
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                yaml.safe_dump({"scrape_configs": configs}, f)
                f.flush()
                run = subprocess.run(["promtool", "check", "config", f.name], capture_output=True, text=True)
                assert run.returncode == 0, f"promtool: the {kind}'s scrape config: {run.stdout}{run.stderr}"
    both = {"monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}
    err = render_error(both)
    assert err and "podMonitor" in err, f"both monitors on (every pod scraped twice): {err or 'rendered'}"


MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def series_selected(expr, metric, labels):
    """Whether every `metric{...}` selector in the PromQL `expr` matches a
    series with `labels` (Prometheus anchors the regexes). None: `expr`
    does not select `metric`."""
    found = None
    for m in re.finditer(r"(?<![\w:])" + metric + r"\{([^}]*)\}", expr):
        found = True
        for name, op, value in MATCHER.findall(m.group(1)):
            have = labels.get(name, "")
            hit = re.fullmatch(value, have) is not None if op in ("=~", "!~") else have == value
            if hit != (op in ("=", "=~")):
                return False
    return found


def grouping_labels(expr):
    """The label names of every by (...) / on (...) / without / ignoring
    clause of a PromQL expression."""
    names = set()
    for m in re.finditer(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in m.group(1).split(",") if n.strip()}
    return names


def rule_exprs(groups):
    return [(r.get("alert") or r.get("record"), r["expr"], r.get("annotations") or {})
            for g in groups for r in g["rules"]]


# Labels the rules group by that the node itself exports on its series
# (the histogram's buckets; the leader's per-follower lag and round trips;
# the gRPC status code of the client port's requests).
EXPORTED_LABELS = {"le", "peer", "code"}


def check_rules_see_targets():
    """The chart's PrometheusRule finds the targets of the chart's monitors
    whatever the release and its objects are called (here release `orders`,
    objects `orders-kv`, nothing named raftkv): every `up{...}` selector in the rules
    matches the targets' labels, and every label the rules group or join by
    is one the monitors set (or the node exports). The label naming the
    cluster is configurable (monitoring.clusterLabel): the monitors, the
    rules and the dashboards then use that name and no longer `cluster`,
    the label multi-cluster Prometheus setups reserve for the Kubernetes
    cluster."""
    for cluster_label in ("cluster", "raftkv_cluster"):
        for key in ("serviceMonitor", "podMonitor"):
            values = {"fullnameOverride": "orders-kv",
                      "monitoring": {"clusterLabel": cluster_label, key: {"enabled": True},
                                     "prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}}}
            objs = render(values, name="orders")
            validate(objs, f"release orders, {key}, cluster label {cluster_label}")
            mon = find(objs, "ServiceMonitor" if key == "serviceMonitor" else "PodMonitor")
            (_, _, labels), = monitor_targets(mon, objs)
            assert labels.get(cluster_label) == "orders", (key, labels)
            groups = find(objs, "PrometheusRule")["spec"]["groups"]
            for alert, expr, annotations in rule_exprs(groups):
                assert series_selected(expr, "up", labels) is not False, \
                    f"{alert} does not see the {mon['kind']} targets of release orders ({labels}): {expr}"
                missing = grouping_labels(expr) - set(labels) - EXPORTED_LABELS
                assert not missing, f"{alert} groups by {missing}, which the {mon['kind']} targets lack"
                if cluster_label != "cluster":
                    assert not re.search(r"(?<![\w$.])cluster(?!\w)", expr), f"{alert} still uses `cluster`: {expr}"
                    assert not any("$labels.cluster" in a for a in annotations.values()), alert
            if cluster_label != "cluster":
                for cm in (o for o in objs if o["kind"] == "ConfigMap" and "-dashboard-" in o["metadata"]["name"]):
                    for text in cm["data"].values():
                        queries = re.findall(r'"(?:expr|query|definition|legendFormat)": "((?:[^"\\]|\\.)*)"', text)
                        assert queries, cm["metadata"]["name"]
                        for q in queries:
                            assert not re.search(r"(?<![\w$.-])cluster(?![\w-])", q), \
                                f"{cm['metadata']['name']} still queries `cluster`: {q}"
            if cluster_label != "cluster" and key == "serviceMonitor" and shutil.which("promtool"):
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                    yaml.safe_dump({"groups": groups}, f)
                    f.flush()
                    run = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
                    assert run.returncode == 0, f"promtool: rules with {cluster_label}: {run.stdout}{run.stderr}"


def check_user_rules():
    """monitoring.prometheusRule.groups reach the PrometheusRule as given:
    Prometheus, not Helm, expands the templates in their annotations."""
    groups = [{"name": "mine", "rules": [{
        "alert": "MineDown",
        "expr": 'up{job="mine"} == 0',
        "labels": {"severity": "page"},
        "annotations": {"summary": "{{ $labels.pod }} is down ({{ $value }})",
                        "description": '{{ printf "%s" $labels.namespace }}'},
    }]}]
    values = {"monitoring": {"prometheusRule": {"enabled": True, "groups": groups}}}
    err = render_error(values)
    assert err is None, f"user alert rules with Prometheus templates refused: {err}"
    assert find(render(values), "PrometheusRule")["spec"]["groups"] == groups, "user rules changed"


# TLS (docs/kubernetes.md, "TLS"): where each source's Secrets are, by name.
TLS_SOURCES = {
    "generate": ({"source": "generate"}, "raftkv-tls", "raftkv-client-tls"),
    "certManager": ({"source": "certManager", "certManager": {"issuerRef": {"name": "raftkv-ca"}}},
                    "raftkv-tls", "raftkv-client-tls"),
    "existingSecret": ({"source": "existingSecret",
                        "existingSecret": {"name": "my-members", "clientName": "my-client"}},
                       "my-members", "my-client"),
}
TLS_DIR = "/etc/raftkv-tls"
NODE_TLS_ENV = {
    "RAFTKV_CERT_FILE": f"{TLS_DIR}/tls.crt", "RAFTKV_KEY_FILE": f"{TLS_DIR}/tls.key",
    "RAFTKV_TRUSTED_CA_FILE": f"{TLS_DIR}/ca.crt",
    "RAFTKV_PEER_CERT_FILE": f"{TLS_DIR}/tls.crt", "RAFTKV_PEER_KEY_FILE": f"{TLS_DIR}/tls.key",
    "RAFTKV_PEER_TRUSTED_CA_FILE": f"{TLS_DIR}/ca.crt",
}
CLIENT_TLS_ENV = {"RAFTKV_CACERT": f"{TLS_DIR}/ca.crt", "RAFTKV_CERT": f"{TLS_DIR}/tls.crt",
                  "RAFTKV_KEY": f"{TLS_DIR}/tls.key"}


def with_values(base, **more):
    values = json.loads(json.dumps(base))
    merge(values, more)
    return values


def member_hosts(n, sts="raftkv", headless="raftkv-headless", ns=NAMESPACE, domain="cluster.local"):
    """The peer host of each member: what its certificate must name."""
    return [f"{sts}-{i}.{headless}.{ns}.svc.{domain}" for i in range(n)]


def secret_mount(pod_spec, container, secret):
    """The mount path of Secret `secret` in `container`, read-only, or None."""
    vols = [v["name"] for v in pod_spec.get("volumes") or [] if (v.get("secret") or {}).get("secretName") == secret]
    for m in container.get("volumeMounts") or []:
        if m["name"] in vols:
            assert m.get("readOnly") and "subPath" not in m, \
                f"{container['name']}: the TLS Secret must be mounted read-only and whole (a subPath is never updated): {m}"
            return m["mountPath"]
    return None


def env_map(container):
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def check_tls_pods(objs, server_secret, client_secret, client_cert_auth=True):
    """The members mount the server Secret and point every TLS setting into
    it; both test containers mount the client Secret and give raftctl its
    files (client_secret None: there is no test pod); the HTTP probes are
    untouched."""
    sts = find(objs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    node = pod["containers"][0]
    assert secret_mount(pod, node, server_secret) == TLS_DIR, \
        f"Secret {server_secret} not mounted at {TLS_DIR}: {pod.get('volumes')} {node['volumeMounts']}"
    env = env_map(node)
    for k, v in NODE_TLS_ENV.items():
        assert env.get(k) == v, f"node env {k}={env.get(k)!r}, want {v!r}"
    assert env.get("RAFTKV_CLIENT_CERT_AUTH") == str(client_cert_auth).lower(), env
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert node[probe]["httpGet"]["port"] == "http" and "scheme" not in node[probe]["httpGet"], node[probe]
    if client_secret is None:
        assert not [o for o in objs if is_hook(o) and o["kind"] == "Pod"], "a test pod without its client Secret"
        return
    test = next(o for o in objs if is_hook(o) and o["kind"] == "Pod")
    tpod = test["spec"]
    containers = tpod["initContainers"] + tpod["containers"]
    assert len(containers) == 2
    for c in containers:
        assert secret_mount(tpod, c, client_secret) == TLS_DIR, f"test {c['name']}: no client Secret {client_secret}"
        tenv = env_map(c)
        for k, v in CLIENT_TLS_ENV.items():
            assert tenv.get(k) == v, f"test {c['name']} env {k}={tenv.get(k)!r}, want {v!r}"
        assert secret_mount(tpod, c, server_secret) is None, "the test pod must not hold a member's key"


def pem(secret, key):
    return base64.b64decode(secret["data"][key])


def check_generated_certs(objs, n):
    """The generated CA, member and client certificates parse, each key is
    its certificate's, and they chain as the node checks them: the member
    certificate verifies (cryptography's X.509 path validation, and openssl)
    as a server for every member's peer host and the client Service's
    names, and as a client; it names each member by the exact DNS name of
    its peer host, with no wildcard and no member URI; the client
    certificate is user root's, a client certificate only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from cryptography.x509.verification import PolicyBuilder, Store
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    assert set(secrets) == {"raftkv-ca", "raftkv-tls", "raftkv-client-tls"}, set(secrets)
    for s in secrets.values():
        assert s["type"] == "kubernetes.io/tls", s["metadata"]["name"]
    ca_pem = pem(secrets["raftkv-ca"], "tls.crt")
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "ca.crt" not in secrets["raftkv-ca"]["data"] and "ca.key" not in secrets["raftkv-tls"]["data"]
    leaves = {}
    for name in ("raftkv-tls", "raftkv-client-tls"):
        s = secrets[name]
        assert set(s["data"]) == {"ca.crt", "tls.crt", "tls.key"}, (name, set(s["data"]))
        assert pem(s, "ca.crt") == ca_pem, f"{name}: ca.crt is not the generated CA"
        cert = x509.load_pem_x509_certificate(pem(s, "tls.crt"))
        key = serialization.load_pem_private_key(pem(s, "tls.key"), None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers(), f"{name}: key is not the certificate's"
        cert.verify_directly_issued_by(ca)
        leaves[name] = cert
    server, client = leaves["raftkv-tls"], leaves["raftkv-client-tls"]
    policy = PolicyBuilder().store(Store([ca]))
    hosts = member_hosts(n)
    service = ["raftkv", "raftkv.default", "raftkv.default.svc", "raftkv.default.svc.cluster.local"]
    for host in hosts + service + [f"raftkv-{i}.raftkv-headless" for i in range(n)]:
        policy.build_server_verifier(x509.DNSName(host)).verify(server, [])
    # Not a member of this cluster: the verifier refuses it (the check bites).
    try:
        policy.build_server_verifier(x509.DNSName(f"raftkv-{n}.raftkv-headless.default.svc.cluster.local")).verify(server, [])
        raise AssertionError(f"the member certificate verified for member {n} of {n}")
    except x509.verification.VerificationError:
        pass
    policy.build_client_verifier().verify(server, [])  # members dial peers with it
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = sans.get_values_for_type(x509.DNSName)
    assert set(hosts) <= set(dns), f"member hosts missing from {dns}"
    assert not any("*" in d for d in dns), dns
    assert not [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith("urn:raftkv:member:")], "a shared certificate must not claim one member by URI"
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku, eku
    assert [a.value for a in client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["root"], client.subject
    if shutil.which("openssl"):
        with tempfile.TemporaryDirectory() as d:
            paths = {}
            for name, data in (("ca", ca_pem), ("server", pem(secrets["raftkv-tls"], "tls.crt")),
                               ("client", pem(secrets["raftkv-client-tls"], "tls.crt"))):
                paths[name] = os.path.join(d, f"{name}.pem")
                with open(paths[name], "wb") as f:
                    f.write(data)
            runs = [["-purpose", "sslserver", "-verify_hostname", hosts[-1], paths["server"]],
                    ["-purpose", "sslclient", paths["server"]],
                    ["-purpose", "sslclient", paths["client"]]]
            for args in runs:
                run = subprocess.run(["openssl", "verify", "-CAfile", paths["ca"], *args], capture_output=True, text=True)
                assert run.returncode == 0, f"openssl verify {args}: {run.stdout}{run.stderr}"
    return secrets


def generated_with(existing, values):
    """What raftkv.tls.generated makes when `lookup` finds the Secrets of
    `existing` ({"ca"|"server"|"client": Secret}): the chart's own helper,
    rendered in a copy of the chart with one template added that hands it
    those Secrets (the offline renderer's `lookup` finds nothing)."""
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "raftkv")
        shutil.copytree(CHART, copy)
        with open(os.path.join(copy, "existing.json"), "w") as f:
            json.dump(existing, f)
        with open(os.path.join(copy, "templates", "zz-generated.yaml"), "w") as f:
            f.write('{{- $e := .Files.Get "existing.json" | fromJson }}\n'
                    'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: generated\ndata:\n  secrets: |\n'
                    '    {{- include "raftkv.tls.generated" (dict "root" . "ca" $e.ca "server" $e.server'
                    ' "client" $e.client) | nindent 4 }}\n')
        out = helm.Chart.load(copy).render(values, name=RELEASE, namespace=NAMESPACE, revision=2,
                                           is_install=False, is_upgrade=True)
    cm = next(d for p, text in out.items() if p.endswith("zz-generated.yaml")
              for d in yaml.safe_load_all(text) if d)
    made = yaml.safe_load(cm["data"]["secrets"])
    return {k: {"metadata": {"name": v["name"], "annotations": v.get("annotations") or {}}, "data": v["data"]}
            for k, v in made.items()}


def check_generated_kept():
    """source generate across upgrades (`lookup` finding the Secrets of the
    install): everything is kept as is; going from 3 to 5 members reissues
    only the member certificate, signed by the same CA and naming the new
    members; a certificate near its expiry or from another CA is reissued."""
    from cryptography import x509
    values3 = {"tls": {"enabled": True}}
    values5 = {"tls": {"enabled": True}, "replicas": 5, "cluster": {"initialMembers": 5}}
    first = {o["metadata"]["name"]: o for o in render(values3) if o["kind"] == "Secret"}
    installed = {"ca": first["raftkv-ca"], "server": first["raftkv-tls"], "client": first["raftkv-client-tls"]}
    for k, s in installed.items():
        assert s["metadata"]["annotations"].get("raftkv.io/not-after"), (k, s["metadata"])
    same = generated_with(installed, values3)
    for k in installed:
        assert same[k]["data"] == installed[k]["data"], f"an upgrade with the same values replaced the {k} Secret"
    scaled = generated_with(installed, values5)
    assert scaled["ca"]["data"] == installed["ca"]["data"] and scaled["client"]["data"] == installed["client"]["data"]
    assert scaled["server"]["data"]["tls.crt"] != installed["server"]["data"]["tls.crt"], \
        "5 members, and the member certificate of 3 kept"
    objs5 = [{"kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": s["metadata"]["name"]},
              "data": s["data"]} for s in scaled.values()]
    check_generated_certs(objs5, 5)
    ca = x509.load_pem_x509_certificate(pem(installed["ca"], "tls.crt"))
    # Near expiry (less than a third of 365 days left): reissued, same CA.
    old = json.loads(json.dumps(installed))
    soon = int(datetime.datetime.now(datetime.timezone.utc).timestamp()) + 30 * 86400
    old["server"]["metadata"]["annotations"]["raftkv.io/not-after"] = str(soon)
    renewed = generated_with(old, values3)
    assert renewed["server"]["data"]["tls.crt"] != installed["server"]["data"]["tls.crt"], "expiring certificate kept"
    x509.load_pem_x509_certificate(pem(renewed["server"], "tls.crt")).verify_directly_issued_by(ca)
    assert renewed["client"]["data"] == installed["client"]["data"]
    # A client Secret of another CA: reissued by this one.
    other = {o["metadata"]["name"]: o for o in render(values3) if o["kind"] == "Secret"}
    mixed = dict(installed, client=other["raftkv-client-tls"])
    fixed = generated_with(mixed, values3)
    assert fixed["client"]["data"]["ca.crt"] == installed["ca"]["data"]["tls.crt"]
    x509.load_pem_x509_certificate(pem(fixed["client"], "tls.crt")).verify_directly_issued_by(ca)
    # Only the CA left (the others deleted): both issued from it.
    only_ca = generated_with({"ca": installed["ca"]}, values3)
    for k in ("server", "client"):
        x509.load_pem_x509_certificate(pem(only_ca[k], "tls.crt")).verify_directly_issued_by(ca)


def hook_with(live_replicas, values, name=RELEASE, without_hook_defaults=False, live_name=None):
    """The scale-down hook's objects on an upgrade to `values` when `lookup`
    finds the release's StatefulSet at `live_replicas` (None: not found):
    the chart's own helper, rendered in a copy of the chart with one template
    added that hands it that StatefulSet (the offline renderer's `lookup`
    finds nothing). The whole render comes back, the hook's objects among
    the others."""
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "raftkv")
        shutil.copytree(CHART, copy)
        if without_hook_defaults:
            # `helm upgrade --reuse-values` from a chart that had no
            # scaleDownHook renders with that chart's default values.
            path = os.path.join(copy, "values.yaml")
            with open(path) as f:
                defaults = yaml.safe_load(f)
            del defaults["scaleDownHook"]
            with open(path, "w") as f:
                yaml.safe_dump(defaults, f)
        live = {} if live_replicas is None else {
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": live_name or (name if name == RELEASE else f"{name}-raftkv"), "namespace": NAMESPACE},
            "spec": {"replicas": live_replicas}}
        with open(os.path.join(copy, "live.json"), "w") as f:
            json.dump(live, f)
        with open(os.path.join(copy, "templates", "scale-down-hook.yaml"), "w") as f:
            f.write('{{- $live := .Files.Get "live.json" | fromJson }}\n'
                    '{{- include "raftkv.scaleDownHook" (dict "root" . "live" $live) }}\n')
        out = helm.Chart.load(copy).render(values, name=name, namespace=NAMESPACE, revision=2,
                                           is_install=False, is_upgrade=True)
    return [doc for path in sorted(out) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(out[path]) if doc]


def check_scale_down_hook():
    """helm upgrade from 5 to 3 replicas: a pre-upgrade Job runs raftctl scale
    3 on this StatefulSet in this namespace, bound to a Role with exactly what
    raftctl's kube platform calls from inside the cluster; RBAC is created
    before the Job; a failed Job is kept until the next upgrade; nothing of
    the workload selects its pod except the client-port policy rule. No
    shrink (3 -> 3, 3 -> 5, nothing found, `helm template`) or the hook
    disabled: no hook. A release raftctl cannot find the pods of is refused
    with the way out."""
    base = {"replicas": 3, "cluster": {"initialMembers": 3}}
    hooked = lambda objs: [o for o in objs if is_hook(o) and
                           o["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"]
    for live, values in ((3, base), (3, dict(base, replicas=5)), (None, base), (1, base),
                         (5, with_values(base, scaleDownHook={"enabled": False}))):
        found = hooked(hook_with(live, values))
        assert not found, f"live {live} -> {values}: hook rendered: {[key(o) for o in found]}"
    assert not hooked(render(base, revision=2, is_upgrade=True)), "hook without a live StatefulSet (helm template)"

    extra = {"imagePullSecrets": [{"name": "regcred"}], "nodeSelector": {"pool": "db"},
             "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}
    for tls, delete in ((False, False), (True, True)):
        values = with_values(NON_DEFAULT, replicas=3, tls={"enabled": tls},
                             scaleDownHook={"deleteData": delete}, **extra)
        values["networkPolicy"]["clientNamespaceSelector"] = {"matchLabels": {"team": "apps"}}
        values["persistence"] = {"enabled": True}
        objs = hook_with(5, values)
        validate(objs, "scale-down hook render")
        hooks = hooked(objs)
        assert sorted(o["kind"] for o in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"], \
            [key(o) for o in hooks]
        by = {o["kind"]: o for o in hooks}
        for o in hooks:
            ann = o["metadata"]["annotations"]
            assert set(ann["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}, \
                f"{key(o)}: {ann}: a failed Job must stay, and be replaced by the next upgrade"
            assert o["metadata"]["namespace"] == NAMESPACE
        weight = {k: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for k, o in by.items()}
        assert max(weight["ServiceAccount"], weight["Role"]) < weight["RoleBinding"] < weight["Job"], weight
        job = by["Job"]
        spec = job["spec"]
        assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 300, spec
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        sa = by["ServiceAccount"]["metadata"]["name"]
        assert pod["serviceAccountName"] == sa and pod.get("automountServiceAccountToken") is not False
        (c,) = pod["containers"]
        sts = find(objs, "StatefulSet")
        assert c["image"] == sts["spec"]["template"]["spec"]["containers"][0]["image"]
        assert c["command"] == ["/usr/local/bin/raftctl"], c["command"]
        want = ["scale", "3", "--platform", "kube", "--namespace", NAMESPACE, "--name", sts["metadata"]["name"],
                "--selector", "app.kubernetes.io/instance=raftkv,app.kubernetes.io/name=raftkv", "--client-port", "7379"]
        assert c["args"] == want + (["--delete-data"] if delete else []), c["args"]
        for k, v in extra.items():
            assert pod.get(k) == v, f"hook pod {k}: {pod.get(k)} != {v}"
        if tls:
            # raftctl's client certificate, never a member's key.
            assert secret_mount(pod, c, "raftkv-client-tls") == TLS_DIR, pod.get("volumes")
            assert secret_mount(pod, c, "raftkv-tls") is None
            for k, v in CLIENT_TLS_ENV.items():
                assert env_map(c).get(k) == v, f"hook env {k}={env_map(c).get(k)!r}, want {v!r}"
        else:
            assert "volumes" not in pod and "env" not in c
        # RBAC: the Role is bound to the Job's ServiceAccount, and grants
        # exactly raftctl's calls: list pods (by the StatefulSet's labels),
        # patch the scale subresource, get (deleteData: and delete) the
        # removed ordinals' volume claims.
        rb = by["RoleBinding"]
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": by["Role"]["metadata"]["name"]}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        grants = sorted((g, r, v, tuple(rule.get("resourceNames") or ()))
                        for rule in by["Role"]["rules"] for g in rule["apiGroups"]
                        for r in rule["resources"] for v in rule["verbs"])
        claims = ("data-raftkv-3", "data-raftkv-4")
        assert grants == sorted([("", "pods", "list", ()), ("apps", "statefulsets/scale", "patch", ("raftkv",)),
                                 ("", "persistentvolumeclaims", "get", claims)]
                                + ([("", "persistentvolumeclaims", "delete", claims)] if delete else [])), grants
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        # raftctl finds the members by these labels: the pods must carry them.
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert selector_matches({"matchLabels": {"app.kubernetes.io/name": "raftkv",
                                                 "app.kubernetes.io/instance": sts["metadata"]["name"]}},
                                pod_labels), pod_labels
        # Nothing of the workload selects the hook's pod but the policy's
        # client-port rule (its raftctl talks to the members).
        labels = spec["template"]["metadata"]["labels"]
        np = find(objs, "NetworkPolicy")
        client_rules = [f"NetworkPolicy/{np['metadata']['name']}.spec.ingress[{i}].from[{j}].podSelector"
                        for i, r in enumerate(np["spec"]["ingress"]) if [p["port"] for p in r["ports"]] == [7379]
                        for j, peer in enumerate(r["from"]) if "podSelector" in peer]
        selecting = [w for w, sel in pod_selectors([o for o in objs if not is_hook(o)])
                     if selector_matches(sel, labels)]
        assert selecting and set(selecting) <= set(client_rules), f"hook pod {labels} selected by {selecting}"

    # 7 -> 3 (two hooks' worth of members): every removed ordinal's claim.
    role = next(o for o in hooked(hook_with(7, base)) if o["kind"] == "Role")
    names = [n for r in role["rules"] if r["resources"] == ["persistentvolumeclaims"] for n in r["resourceNames"]]
    assert names == [f"data-raftkv-{i}" for i in range(3, 7)], names
    timed = next(o for o in hooked(hook_with(5, with_values(base, scaleDownHook={"timeoutSeconds": 900})))
                 if o["kind"] == "Job")
    assert timed["spec"]["activeDeadlineSeconds"] == 900

    # Values of a chart version without the hook (--reuse-values): the
    # hook's defaults still hold.
    old = hook_with(5, dict(base, networkPolicy={"enabled": True, "clientNamespaceSelector": {"matchLabels": {"a": "b"}}}),
                    without_hook_defaults=True)
    job = next(o for o in hooked(old) if o["kind"] == "Job")
    assert job["spec"]["activeDeadlineSeconds"] == 300 and "--delete-data" not in \
        job["spec"]["template"]["spec"]["containers"][0]["args"], job
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"memory": "128Mi"}
    np = find(old, "NetworkPolicy")
    assert any(selector_matches(p["podSelector"], job["spec"]["template"]["metadata"]["labels"])
               for r in np["spec"]["ingress"] for p in r["from"] if "podSelector" in p), np

    # Any release name, nameOverride, fullnameOverride and client port: the
    # Job names the StatefulSet, passes its pod selector and client port.
    for name, more, sts_name in (("prod", {"ports": {"client": 8000}}, "prod-raftkv"),
                                 ("db", {"nameOverride": "kv", "ports": {"client": 9100}}, "db-kv"),
                                 ("prod", {"fullnameOverride": "store"}, "store")):
        objs = hook_with(5, with_values(base, networkPolicy={"enabled": True}, **more), name, live_name=sts_name)
        validate(objs, f"scale-down hook render of release {name} {more}")
        job = next(o for o in hooked(objs) if o["kind"] == "Job")
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        flag = lambda f: args[args.index(f) + 1]
        sts = find(objs, "StatefulSet")
        assert flag("--name") == sts["metadata"]["name"] == sts_name, args
        query = dict(kv.split("=", 1) for kv in flag("--selector").split(","))
        assert query == sts["spec"]["selector"]["matchLabels"], (query, sts["spec"]["selector"])
        assert selector_matches({"matchLabels": query}, sts["spec"]["template"]["metadata"]["labels"])
        ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert int(flag("--client-port")) == ports["client"] == more.get("ports", {}).get("client", 7379), args
        np = find(objs, "NetworkPolicy")
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert any(selector_matches(p["podSelector"], labels) and ports["client"] in [q["port"] for q in r["ports"]]
                   for r in np["spec"]["ingress"] for p in r["from"] if "podSelector" in p), np


def client_port_rules(objs, port):
    """The podSelector peers of the NetworkPolicy rules that open only the
    client port `port`, as pod_selectors names them."""
    np = find(objs, "NetworkPolicy")
    return [f"NetworkPolicy/{np['metadata']['name']}.spec.ingress[{i}].from[{j}].podSelector"
            for i, r in enumerate(np["spec"]["ingress"]) if [p["port"] for p in r["ports"]] == [port]
            for j, peer in enumerate(r["from"]) if "podSelector" in peer]


def check_backup():
    """backup.enabled: a CronJob (Forbid, the schedule) runs `raftctl
    snapshot save --dir /backup --keep N` of the StatefulSet's image against
    the client Service on the client port, with the workload's security
    settings and scheduling, the client certificate when tls.enabled, on the
    chart's claim (size, class) or the volume given. The NetworkPolicy
    admits its pod to the client port and nothing of the workload selects
    it. Off (the default): none of it, and the same policy as before."""
    assert not [o for o in render() if o["kind"] in ("CronJob", "PersistentVolumeClaim")]
    extra = {"imagePullSecrets": [{"name": "regcred"}], "nodeSelector": {"pool": "db"},
             "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}
    runs = 0
    for name, tls, policy, port in (("raftkv", False, {}, 7379),
                                    ("prod", False, {"clientNamespaceSelector": {"matchLabels": {"team": "apps"}}}, 8000),
                                    ("raftkv", True, {"clientNamespaceSelector": {"matchLabels": {"team": "apps"}}}, 7379)):
        values = with_values(NON_DEFAULT, ports={"client": port}, tls={"enabled": tls}, networkPolicy=policy,
                             backup={"enabled": True, "schedule": "15 3 * * *", "keep": 4,
                                     "persistence": {"size": "20Gi", "storageClass": "fast"}}, **extra)
        objs = render(values, name=name)
        validate(objs, f"backup render ({name}, tls {tls})")
        cron = find(objs, "CronJob")
        sts = find(objs, "StatefulSet")
        svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["labels"].get("raftkv.io/service") == "client")
        assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["schedule"] == "15 3 * * *", cron["spec"]
        job = cron["spec"]["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        (c,) = pod["containers"]
        node = sts["spec"]["template"]["spec"]
        assert c["image"] == node["containers"][0]["image"] and c["command"] == ["/usr/local/bin/raftctl"], c
        svc_port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "client")
        assert svc_port == port
        assert c["args"] == ["--endpoints", f"{svc['metadata']['name']}:{port}", "snapshot", "save",
                             "--dir", "/backup", "--keep", "4"], c["args"]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "backup")
        assert mount["mountPath"] == "/backup" and not mount.get("readOnly"), mount
        claim_name = next(v for v in pod["volumes"] if v["name"] == "backup")["persistentVolumeClaim"]["claimName"]
        claim = find(objs, "PersistentVolumeClaim", claim_name)
        assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
        assert claim["spec"]["storageClassName"] == "fast" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert c["securityContext"] == node["containers"][0]["securityContext"]
        assert pod["securityContext"] == node["securityContext"]
        assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
        assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
        for k, v in extra.items():
            assert pod.get(k) == v, f"backup pod {k}: {pod.get(k)} != {v}"
        if tls:
            client_secret = TLS_SOURCES["generate"][2]
            assert secret_mount(pod, c, client_secret) == TLS_DIR, pod.get("volumes")
            assert secret_mount(pod, c, TLS_SOURCES["generate"][1]) is None, "never a member's key"
            for k, v in CLIENT_TLS_ENV.items():
                assert env_map(c).get(k) == v, f"backup env {k}"
        else:
            assert "env" not in c and secret_mount(pod, c, f"{name}-raftkv-client-tls") is None
        # The policy admits the backup pod to the client port (explicitly
        # when clients are limited to selected namespaces), and nothing of
        # the workload selects it.
        labels = job["template"]["metadata"]["labels"]
        np = find(objs, "NetworkPolicy")
        rules = client_port_rules(objs, port)
        selecting = [w for w, sel in pod_selectors([o for o in objs if not is_hook(o) and o["kind"] != "CronJob"])
                     if selector_matches(sel, labels)]
        assert selecting and set(selecting) <= set(rules), f"backup pod {labels} selected by {selecting}; rules {rules}"
        if policy:
            assert any(p.get("podSelector", {}).get("matchLabels") == {k: labels[k] for k in
                       ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
                       for r in np["spec"]["ingress"] for p in r["from"]), np
        runs += 1
    # Without it, the policy does not name the backup pod.
    off = find(render(with_values(NON_DEFAULT, networkPolicy={"clientNamespaceSelector": {"matchLabels": {"a": "b"}}})),
               "NetworkPolicy")
    assert "backup" not in json.dumps(off), off
    # A volume of one's own: no claim, the volume used as is.
    nfs = {"nfs": {"server": "nfs.example", "path": "/exports/raftkv"}}
    objs = render({"backup": {"enabled": True, "volume": nfs}})
    validate(objs, "backup render with a volume")
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    vol = next(v for v in find(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
               if v["name"] == "backup")
    assert vol == dict(nfs, name="backup"), vol
    for values, needle in (({"backup": {"enabled": True, "keep": 0}}, "keep"),
                           ({"backup": {"enabled": True, "persistence": {"size": "lots"}}}, "backup.persistence.size"),
                           ({"backup": {"enabled": True, "schedule": ""}}, "schedule")):
        err = render_error(values)
        assert err is not None and needle in err, f"{values}: {err}"
    return runs


def check_restore():
    """restore.fromSnapshot: every pod gets an init container that runs
    `raftctl snapshot restore /restore/FILE` into the node's own data
    directory (the path of its data mount and of the ConfigMap's data_dir)
    as the member its pod name says, with the founders as voters (and
    cluster.id when set), skipping a directory that holds a node already
    and ordinals above the founders; the backup's volume read-only. Refused
    without a file or a volume, and on upgrades. Off: the same pod template
    as before."""
    plain = find(render(NON_DEFAULT), "StatefulSet")
    assert "initContainers" not in plain["spec"]["template"]["spec"]
    vol = {"persistentVolumeClaim": {"claimName": "raftkv-backup", "readOnly": True}}
    for founders, cluster_id in ((3, ""), (5, "raftkv-restored")):
        values = with_values(NON_DEFAULT, replicas=founders, cluster={"initialMembers": founders, "id": cluster_id},
                             persistence={"enabled": True},
                             restore={"fromSnapshot": {"enabled": True, "file": "raftkv-x-20261207T000000Z-9.snap",
                                                       "volume": vol}})
        objs = render(values)
        validate(objs, f"restore render ({founders} founders)")
        sts = find(objs, "StatefulSet")
        pod = sts["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        node = pod["containers"][0]
        data_dir = next(m["mountPath"] for m in node["volumeMounts"] if m["name"] == "data")
        config = yaml.safe_load(find(objs, "ConfigMap")["data"]["config.yaml"])
        assert config["data_dir"] == data_dir
        want = ["snapshot", "restore", "/restore/raftkv-x-20261207T000000Z-9.snap", "--data-dir", data_dir,
                "--member-from-pod-name", "$(RAFTKV_POD_NAME)", "--voters", ",".join(map(str, range(founders)))]
        want += ["--cluster-id", cluster_id] if cluster_id else []
        want += ["--skip-if-initialized", "--skip-non-voters"]
        assert init["args"] == want, init["args"]
        assert init["command"] == ["/usr/local/bin/raftctl"] and init["image"] == node["image"]
        assert init["env"] == [{"name": "RAFTKV_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        mounts = {m["name"]: m for m in init["volumeMounts"]}
        assert mounts["data"]["mountPath"] == data_dir and not mounts["data"].get("readOnly")
        assert mounts["restore"]["mountPath"] == "/restore" and mounts["restore"]["readOnly"] is True
        assert next(v for v in pod["volumes"] if v["name"] == "restore") == dict(vol, name="restore")
        assert init["securityContext"] == node["securityContext"]
        assert config.get("cluster_id", "") == cluster_id
    enabled = {"enabled": True, "file": "f.snap", "volume": vol}
    for values, needle, upgrade in (
            ({"restore": {"fromSnapshot": dict(enabled, file="")}}, "restore.fromSnapshot.file", False),
            ({"restore": {"fromSnapshot": dict(enabled, volume={})}}, "restore.fromSnapshot.volume", False),
            ({"restore": {"fromSnapshot": enabled}}, "install of a new cluster only", True)):
        err = render_error(values, is_upgrade=upgrade)
        assert err is not None and needle in err, f"{values}: {err}"


def check_tls():
    """tls.enabled from each source, with 3 and 5 members and the network
    policy on: valid objects; the pods, the test pod and the Certificates
    as check_tls_pods and check_generated_certs say; scaling keeps the pod
    template; the NetworkPolicy is the one of TLS off. TLS off renders
    exactly what it rendered before, whatever TLS settings are given."""
    base = render()
    assert render({"tls": {"enabled": False, "clientCertAuth": False}}) == base
    assert render(with_values(NON_DEFAULT, tls={"enabled": False})) == render(NON_DEFAULT)
    plain_np = find(render(NON_DEFAULT), "NetworkPolicy")
    for source, (tls, server_secret, client_secret) in TLS_SOURCES.items():
        templates = []
        for n in (3, 5):
            values = with_values(NON_DEFAULT, replicas=n, cluster={"initialMembers": 3},
                                 tls=dict(tls, enabled=True))
            objs = render(values)
            validate(objs, f"tls {source}, {n} members")
            check_tls_pods(objs, server_secret, client_secret)
            assert find(objs, "NetworkPolicy") == plain_np, f"tls {source}: the NetworkPolicy changed"
            templates.append(find(objs, "StatefulSet")["spec"]["template"])
            certs = [o for o in objs if o["kind"] == "Certificate"]
            secrets = [o for o in objs if o["kind"] == "Secret"]
            if source == "certManager":
                assert not secrets, secrets
                server = find(objs, "Certificate", "raftkv-server")["spec"]
                client = find(objs, "Certificate", "raftkv-client")["spec"]
                assert server["secretName"] == server_secret and client["secretName"] == client_secret
                for spec in (server, client):
                    assert spec["issuerRef"] == {"name": "raftkv-ca", "kind": "Issuer", "group": "cert-manager.io"}
                hosts = member_hosts(n)
                assert set(hosts) <= set(server["dnsNames"]), f"{n} members: {server['dnsNames']}"
                assert f"raftkv-{n}.raftkv-headless.default.svc.cluster.local" not in server["dnsNames"]
                assert {"raftkv", "raftkv.default.svc.cluster.local"} <= set(server["dnsNames"])
                assert not any("*" in d for d in server["dnsNames"])
                assert {"server auth", "client auth"} <= set(server["usages"])
                assert client["commonName"] == "root" and "client auth" in client["usages"]
                assert "server auth" not in client["usages"] and "dnsNames" not in client
            elif source == "generate":
                assert not certs
                check_generated_certs(objs, n)
            else:
                assert not certs and not secrets, "existingSecret: the chart makes no certificate"
        assert templates[0] == templates[1], f"tls {source}: scaling changed the pod template"
    # A ClusterIssuer, and client certificates not required.
    objs = render({"tls": {"enabled": True, "source": "certManager", "clientCertAuth": False,
                           "certManager": {"issuerRef": {"name": "corp", "kind": "ClusterIssuer"},
                                           "duration": "720h", "renewBefore": "240h"}}})
    validate(objs, "tls certManager ClusterIssuer")
    check_tls_pods(objs, "raftkv-tls", "raftkv-client-tls", client_cert_auth=False)
    server = find(objs, "Certificate", "raftkv-server")["spec"]
    assert server["issuerRef"]["kind"] == "ClusterIssuer" and server["duration"] == "720h", server
    # More names for the certificate than members, and extra DNS names.
    dns = find(render({"tls": {"enabled": True, "source": "certManager", "members": 7, "extraDnsNames": ["kv.example.com"],
                               "certManager": {"issuerRef": {"name": "x"}}}}), "Certificate", "raftkv-server")["spec"]["dnsNames"]
    assert set(member_hosts(7)) | {"kv.example.com"} <= set(dns), dns
    # No helm test: no client Secret needed.
    objs = render({"test": {"enabled": False}, "tls": {"enabled": True, "source": "existingSecret",
                                                       "existingSecret": {"name": "mine"}}})
    assert not [o for o in objs if is_hook(o)]
    check_generated_kept()
    text = notes({"tls": {"enabled": True}})
    assert "--cacert" in text and "raftkv-client-tls" in text and "helm template" in text, text
    assert "--cacert" not in notes()


def test_containers(objs):
    """The helm test pod's containers (write, then read-back)."""
    test = next(o for o in objs if is_hook(o) and o["kind"] == "Pod")
    return test["spec"]["initContainers"] + test["spec"]["containers"]


def secret_env(container):
    """{name: (Secret, key)} of the container's env taken from Secrets."""
    out = {}
    for e in container.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            out[e["name"]] = (ref["name"], ref["key"])
    return out


def check_test_user():
    """auth.testUser.existingSecret: both test containers get raftctl's
    user and password (RAFTKV_USER, RAFTKV_PASSWORD) from the Secret's keys,
    never as literals or arguments; TLS settings stay as they were; without
    it nothing of the sort is rendered."""
    for c in test_containers(render()):
        assert not c.get("env") and not secret_env(c), f"test {c['name']}: env without TLS or a test user: {c.get('env')}"
    user = {"testUser": {"existingSecret": "helm-test-user"}}
    want = {"RAFTKV_USER": ("helm-test-user", "username"), "RAFTKV_PASSWORD": ("helm-test-user", "password")}
    cases = [("plaintext", {"auth": user}, None)]
    for source, (tls, server_secret, client_secret) in TLS_SOURCES.items():
        cases.append((f"tls {source}", {"auth": user, "tls": dict(tls, enabled=True)}, (server_secret, client_secret)))
    for what, values, secrets in cases:
        lint(values)
        objs = render(values)
        validate(objs, f"test user, {what}")
        for c in test_containers(objs):
            assert secret_env(c) == want, f"{what}: test {c['name']} env {c.get('env')}"
            literal = {e["name"] for e in c["env"] if "value" in e}
            assert not literal & {"RAFTKV_USER", "RAFTKV_PASSWORD"}, f"{what}: {literal}"
            assert not [a for a in c["args"] if a.startswith("--user") or a.startswith("--password")], c["args"]
            if secrets is None:
                assert not c.get("volumeMounts") and not literal, f"{what}: TLS settings without TLS: {c}"
        if secrets is not None:
            check_tls_pods(objs, *secrets)
        # Only the test pod learns the password.
        others = [o for o in objs if not is_hook(o)]
        assert "helm-test-user" not in json.dumps(others), f"{what}: the test user's Secret is used outside helm test"
    objs = render({"auth": {"testUser": {"existingSecret": "u", "usernameKey": "name", "passwordKey": "secret"}}})
    for c in test_containers(objs):
        assert secret_env(c) == {"RAFTKV_USER": ("u", "name"), "RAFTKV_PASSWORD": ("u", "secret")}, c["env"]
    text = notes({"auth": user})
    assert "as the user named in Secret helm-test-user" in text, text
    assert "as the user named" not in notes()
    refused = {
        "test user without helm test": ({"test": {"enabled": False}, "auth": user}, "test.enabled is false"),
        "empty username key": ({"auth": {"testUser": {"existingSecret": "u", "usernameKey": ""}}}, "usernameKey"),
        "empty password key": ({"auth": {"testUser": {"existingSecret": "u", "passwordKey": ""}}}, "passwordKey"),
        "unknown auth setting": ({"auth": {"testUser": {"secret": "u"}}}, "secret"),
    }
    for what, (values, needle) in refused.items():
        err = render_error(values)
        assert err is not None, f"{what}: rendered, should have been refused"
        assert needle in err, f"{what}: refused, but the message does not say why: {err}"


def write_k8s():
    files = k8s_files(render())
    os.makedirs(K8S, exist_ok=True)
    for name in os.listdir(K8S):
        if name.endswith(".yaml"):
            os.remove(os.path.join(K8S, name))
    for name, text in files.items():
        with open(os.path.join(K8S, name), "w") as f:
            f.write(text)
    print(f"wrote {len(files)} files to k8s/")


# Objects only the chart has, and why (a new difference fails `compare`):
# the ConfigMap carries the node's settings where raftctl's pod template
# sets env vars (RAFTKV_REPLICAS & co.); the chart's own ServiceAccount
# (raftctl's pods use the namespace's default one, token not mounted); the
# `helm test` pod.
CHART_ONLY = {("ConfigMap", "raftkv"), ("ServiceAccount", "raftkv"), ("Pod", "raftkv-test")}


def _ports(ports):
    """Ports without the default protocol (TCP), as comparable tuples."""
    return sorted(tuple(sorted((k, v) for k, v in p.items() if (k, v) != ("protocol", "TCP")))
                  for p in ports or [])


def _claims(sts):
    out = []
    for t in sts["spec"].get("volumeClaimTemplates") or []:
        out.append((t["metadata"]["name"], t["spec"]["accessModes"],
                    t["spec"]["resources"]["requests"]["storage"],
                    t["spec"].get("storageClassName")))
    return out


def compare(path):
    """raftctl's objects against the chart's with the same values: same kinds
    and names (but CHART_ONLY), ports, probes, volume claims, security
    context; every raftctl object valid against the Kubernetes schemas."""
    with open(path) as f:
        ours = json.load(f)["items"]
    replicas = next(o for o in ours if o["kind"] == "StatefulSet")["spec"]["replicas"]
    image = next(o for o in ours if o["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["image"]
    repo, tag = image.rsplit(":", 1)
    values = {"replicas": replicas, "cluster": {"initialMembers": replicas},
              "image": {"repository": repo, "tag": tag}}
    chart_only = set(CHART_ONLY)
    # raftctl --tls-secret is the chart's tls.source=existingSecret (the
    # chart's helm test, which needs a client Secret, is left out).
    tls_secret = raftctl_tls_secret(ours)
    if tls_secret:
        node_env = env_map(next(o for o in ours if o["kind"] == "StatefulSet")["spec"]["template"]["spec"]["containers"][0])
        values["tls"] = {"enabled": True, "source": "existingSecret", "existingSecret": {"name": tls_secret},
                         "clientCertAuth": node_env.get("RAFTKV_CLIENT_CERT_AUTH") == "true"}
        values["test"] = {"enabled": False}
        chart_only.discard(("Pod", "raftkv-test"))
    chart = render(values)
    validate(ours, "raftctl manifests")
    names = lambda objs: {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert names(chart) - names(ours) == chart_only, \
        f"kinds/names differ: chart only {names(chart) - names(ours)}, expected {chart_only}"
    assert names(ours) <= names(chart), f"raftctl only: {names(ours) - names(chart)}"
    checks = 0
    for o in ours:
        c = find(chart, o["kind"], o["metadata"]["name"])
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "Service":
            for k in ("type", "clusterIP", "publishNotReadyAddresses", "selector"):
                assert o["spec"].get(k) == c["spec"].get(k), f"{where} {k}: {o['spec'].get(k)} != {c['spec'].get(k)}"
            assert _ports(o["spec"]["ports"]) == _ports(c["spec"]["ports"]), f"{where} ports"
        elif o["kind"] == "PodDisruptionBudget":
            # Both write the same percentage, which follows later scaling;
            # whatever either writes, at every count they must allow the
            # same evictions.
            assert o["spec"]["selector"] == c["spec"]["selector"], f"{where} selector"
            assert o["spec"].get("minAvailable") == c["spec"].get("minAvailable"), \
                f"{where} minAvailable: {o['spec']} != {c['spec']}"
            for healthy in range(replicas + 1):
                assert disruptions_allowed(o, replicas, healthy) == disruptions_allowed(c, replicas, healthy), \
                    f"{where}: {o['spec']} and {c['spec']} allow different evictions with {healthy}/{replicas} ready"
        elif o["kind"] == "StatefulSet":
            for k in ("replicas", "serviceName", "podManagementPolicy", "selector",
                      "updateStrategy", "persistentVolumeClaimRetentionPolicy"):
                assert o["spec"].get(k) == c["spec"].get(k), f"{where} {k}: {o['spec'].get(k)} != {c['spec'].get(k)}"
            assert _claims(o) == _claims(c), f"{where} claims: {_claims(o)} != {_claims(c)}"
            op, cp = o["spec"]["template"]["spec"], c["spec"]["template"]["spec"]
            for k in ("securityContext", "terminationGracePeriodSeconds", "automountServiceAccountToken"):
                assert op.get(k) == cp.get(k), f"{where} pod {k}: {op.get(k)} != {cp.get(k)}"
            oc, cc = op["containers"][0], cp["containers"][0]
            for k in ("name", "image", "imagePullPolicy", "securityContext", "resources",
                      "startupProbe", "livenessProbe", "readinessProbe"):
                assert oc.get(k) == cc.get(k), f"{where} container {k}: {oc.get(k)} != {cc.get(k)}"
            assert _ports(oc["ports"]) == _ports(cc["ports"]), f"{where} container ports"
            data = [m for m in cc["volumeMounts"] if m["name"] == "data"]
            assert [m for m in oc["volumeMounts"] if m["name"] == "data"] == data, f"{where} data mount"
            # TLS: the same Secret volume, mount and node settings (or none).
            tls = lambda spec, c: ([v for v in spec.get("volumes") or [] if v["name"] == "tls"],
                                   [m for m in c["volumeMounts"] if m["name"] == "tls"],
                                   {k: v for k, v in env_map(c).items() if k in NODE_TLS_ENV or k == "RAFTKV_CLIENT_CERT_AUTH"})
            assert tls(op, oc) == tls(cp, cc), f"{where} TLS: {tls(op, oc)} != {tls(cp, cc)}"
            if tls_secret:
                check_tls_pods(chart, tls_secret, None, client_cert_auth=values["tls"]["clientCertAuth"])
                check_tls_pods(ours, tls_secret, None, client_cert_auth=values["tls"]["clientCertAuth"])
        checks += 1
    tls_note = f"; TLS from Secret {tls_secret} as the chart's existingSecret" if tls_secret else ""
    print(f"compare: {len(ours)} raftctl objects valid and equal to the chart's in {checks} comparisons{tls_note}")


def raftctl_tls_secret(objs):
    """The Secret raftctl's StatefulSet mounts for TLS, or None."""
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    vols = [v for v in sts["spec"]["template"]["spec"].get("volumes") or [] if v["name"] == "tls"]
    return vols[0]["secret"]["secretName"] if vols else None


def scrape_configs(values, release, pods):
    """The scrape configs Prometheus would run for the chart's monitor
    (`values` must enable one) in release `release`, with the pods at the
    given addresses ({pod: host or host:http-port}): the Operator's
    generated configs, with static targets carrying the meta labels
    Kubernetes service discovery would report in place of the discovery."""
    objs = render(values, name=release)
    monitors = [o for o in objs if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    if len(monitors) != 1:
        raise SystemExit(f"scrape-config: the values enable {len(monitors)} monitors; enable one")
    mon = monitors[0]
    sts = find(objs, "StatefulSet")
    unknown = set(pods) - set(pod_ips(objs))
    if unknown:
        raise SystemExit(f"scrape-config: {sorted(unknown)} are not pods of StatefulSet {sts['metadata']['name']}")
    role = "endpoints" if mon["kind"] == "ServiceMonitor" else "pod"
    out = []
    for config in operator_scrape_configs(mon):
        config = dict(config)
        config["static_configs"] = [
            {"targets": [t["__address__"]], "labels": {k: v for k, v in t.items() if k != "__address__"}}
            for t in in_discovery_namespaces(mon, discovered(role, objs, pods))]
        out.append(config)
    return out


def parse_values(sets, set_jsons):
    values = {}
    for s in sets:
        merge(values, helm.parse_set_string(s))
    for s in set_jsons:
        merge(values, helm.parse_set_json(s))
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    s = sub.add_parser("scrape-config")
    for q in (r, s):
        q.add_argument("--set", action="append", default=[], help="Helm --set expression")
        q.add_argument("--set-json", action="append", default=[], help="Helm --set-json expression")
    r.add_argument("--json", action="store_true", help="one JSON array instead of YAML documents")
    r.add_argument("--upgrade-from", type=int, metavar="N",
                   help="render a helm upgrade whose `lookup` finds the release's StatefulSet at N replicas "
                        "(the scale-down hook renders when N is above replicas)")
    s.add_argument("--release", default=RELEASE, help="the Helm release name")
    s.add_argument("--pod", action="append", default=[], metavar="POD=HOST[:HTTP_PORT]",
                   help="a pod's address; HOST:PORT stands for its http port (a node outside Kubernetes)")
    sub.add_parser("check")
    sub.add_parser("write-k8s")
    c = sub.add_parser("compare")
    c.add_argument("file", help="the output of `raftctl manifests -o json`")
    args = p.parse_args()
    if args.cmd == "render":
        values = parse_values(args.set, args.set_json)
        objs = render(values) if args.upgrade_from is None else hook_with(args.upgrade_from, values)
        if args.json:
            json.dump(objs, sys.stdout)
        else:
            yaml.safe_dump_all(objs, sys.stdout, sort_keys=False)
    elif args.cmd == "scrape-config":
        pods = dict(a.split("=", 1) for a in args.pod)
        configs = scrape_configs(parse_values(args.set, args.set_json), args.release, pods)
        yaml.safe_dump({"scrape_configs": configs}, sys.stdout, sort_keys=False)
    elif args.cmd == "check":
        check()
    elif args.cmd == "compare":
        compare(args.file)
    else:
        write_k8s()


def merge(into, more):
    for k, v in more.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


if __name__ == "__main__":
    main()
