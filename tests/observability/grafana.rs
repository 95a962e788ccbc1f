//! raftkv's Grafana dashboards as the tests see them: loaded from the chart,
//! checked for what Grafana needs to import them, and their queries with the
//! template variables replaced as Grafana would replace them.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/raftkv/dashboards")
}

/// Every dashboard file (name, JSON), sorted by name.
pub fn load() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p.file_name().unwrap().to_string_lossy().into(), v)
        })
        .collect()
}

/// How a query runs: over the time range (a graph) or at its end (a stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Range,
    Instant,
}

/// One query of a dashboard: a panel target, or the annotation.
#[derive(Debug, Clone)]
pub struct Query {
    pub panel: String,
    pub panel_type: String,
    pub legend: String,
    pub expr: String,
    pub kind: Kind,
}

/// Every panel target and annotation query of `dashboard`.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let instant = t["instant"].as_bool().unwrap_or(false);
            out.push(Query {
                panel: p["title"].as_str().unwrap().into(),
                panel_type: p["type"].as_str().unwrap().into(),
                legend: t["legendFormat"].as_str().unwrap_or("").into(),
                expr: t["expr"].as_str().unwrap().into(),
                kind: if instant { Kind::Instant } else { Kind::Range },
            });
        }
    }
    for a in annotations(dashboard) {
        out.push(Query {
            panel: format!("annotation: {}", a["name"].as_str().unwrap()),
            panel_type: "annotation".into(),
            legend: a["textFormat"].as_str().unwrap_or("").into(),
            expr: a["expr"].as_str().unwrap().into(),
            kind: Kind::Range,
        });
    }
    out
}

/// Panels, including those nested in collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The Prometheus annotation queries (not Grafana's built-in one).
fn annotations(dashboard: &Value) -> Vec<&Value> {
    dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a.get("expr").is_some())
        .collect()
}

/// The `label_values(selector, label)` queries of the query variables.
pub fn variable_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    variables(dashboard)
        .into_iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("not label_values(): {q}"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            (
                v["name"].as_str().unwrap().into(),
                selector.trim().into(),
                label.trim().into(),
            )
        })
        .collect()
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

/// Replaces `$name` and `${name}` by `values[name]`, longest names first so
/// `$__range_s` is not read as `$__range` followed by `_s`.
/// Panics if a variable is left.
pub fn substitute(expr: &str, values: &BTreeMap<&str, String>) -> String {
    let mut names: Vec<_> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_string();
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &values[n])
            .replace(&format!("${n}"), &values[n]);
    }
    // `$1` is label_replace's capture group: no variable name starts with
    // a digit, and Grafana leaves it alone.
    let variable = out
        .match_indices('$')
        .any(|(i, _)| !out[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
    assert!(!variable, "unsubstituted variable in {out}");
    out
}

/// What Grafana needs to import a dashboard and what raftkv promises of
/// every query; a list of problems (empty when valid).
pub fn problems(name: &str, d: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut say = |s: String| bad.push(format!("{name}: {s}"));
    if d["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        say("schemaVersion missing or older than 36".into());
    }
    for key in ["uid", "title"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            say(format!("no {key}"));
        }
    }
    let vars: Vec<_> = variables(d);
    let ds = vars.iter().find(|v| v["name"] == "datasource");
    if !ds.is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus") {
        say("no `datasource` variable of type datasource for prometheus".into());
    }
    for want in ["namespace", "cluster", "pod"] {
        if !vars.iter().any(|v| v["name"] == want) {
            say(format!("no `{want}` variable"));
        }
    }
    let mut ids = HashSet::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or("?");
        if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            say(format!("panel `{title}`: missing or duplicate id"));
        }
        let g = &p["gridPos"];
        let fits = g["x"]
            .as_u64()
            .zip(g["w"].as_u64())
            .is_some_and(|(x, w)| x + w <= 24);
        if !fits || g["h"].as_u64().is_none() || g["y"].as_u64().is_none() {
            say(format!("panel `{title}`: gridPos outside 24 columns"));
        }
        if p["type"] == "row" {
            continue;
        }
        let mut refs = HashSet::new();
        for t in p["targets"].as_array().into_iter().flatten() {
            if t["datasource"]["uid"] != "${datasource}"
                || p["datasource"]["uid"] != "${datasource}"
            {
                say(format!(
                    "panel `{title}`: datasource is not ${{datasource}}"
                ));
            }
            if !t["refId"]
                .as_str()
                .is_some_and(|r| refs.insert(r.to_string()))
            {
                say(format!("panel `{title}`: missing or duplicate refId"));
            }
        }
        if refs.is_empty() {
            say(format!("panel `{title}`: no query"));
        }
    }
    for q in queries(d) {
        for var in ["$namespace", "$cluster"] {
            if !q.expr.contains(var) {
                say(format!(
                    "`{}`: query not keyed by {var}: {}",
                    q.panel, q.expr
                ));
            }
        }
    }
    for a in annotations(d) {
        if a["datasource"]["uid"] != "${datasource}" {
            say("annotation datasource is not ${datasource}".into());
        }
    }
    bad
}

/// The metric names `expr` selects: every name written right before a
/// `{...}` selector (every query of the dashboards selects by labels).
pub fn selected_metrics(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    for (i, _) in expr.match_indices('{') {
        let start = expr[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        let name = &expr[start..i];
        // `{{pod}}` in a legend or `${x}` are not selectors.
        let templated = start > 0 && bytes[start - 1] == b'$';
        if !name.is_empty() && !templated && !name.as_bytes()[0].is_ascii_digit() {
            out.push(name.to_string());
        }
    }
    out
}
