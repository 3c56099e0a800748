//! The Prometheus alert rules in `deploy/prometheus/`: `promtool check rules` on the rules,
//! `promtool test rules` on their unit tests, and every alert covered by a case that fires
//! and one that does not. promtool comes from Debian's `prometheus` package (`.ci/run`
//! installs it); without it these tests fail, they do not skip.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const RULES: &str = "taskscope-alerts.yml";
const TESTS: &str = "taskscope-alerts.test.yml";

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn read(name: &str) -> String {
    let path = deploy_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `promtool ARGS` in `deploy/prometheus/` and asserts it succeeds; returns its output.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `promtool` ({e}): these tests need promtool on PATH; install \
                 Debian's Prometheus with `apt-get install -y prometheus` (.ci/run does)"
            )
        });
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n{output}",
        args.join(" "),
        out.status
    );
    output
}

/// Names after `key` in lines `key NAME` (e.g. `- alert: X`), in order.
fn names_after(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(
        out.contains("SUCCESS"),
        "unexpected promtool output:\n{out}"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let out = promtool(&["test", "rules", TESTS]);
    assert!(
        out.contains("SUCCESS"),
        "unexpected promtool output:\n{out}"
    );
}

/// Each alert has a case where it fires (`exp_labels`) and one where it must not
/// (`exp_alerts: []`); each recording rule is evaluated by a test.
#[test]
fn every_rule_is_tested() {
    let rules = read(RULES);
    let tests = read(TESTS);
    let alerts = names_after(&rules, "- alert:");
    assert!(alerts.len() >= 5, "alerts in {RULES}: {alerts:?}");

    // alert -> (fires somewhere, silent somewhere)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alertname:") {
            current = Some(name.trim().to_string());
        } else if let Some(name) = &current {
            let entry = seen.entry(name.clone()).or_default();
            if line.starts_with("- exp_labels:") {
                entry.0 = true;
            } else if line == "exp_alerts: []" {
                entry.1 = true;
            }
        }
    }
    for alert in &alerts {
        let (fires, silent) = seen.get(alert).copied().unwrap_or_default();
        assert!(fires, "{TESTS} has no case where {alert} fires");
        assert!(silent, "{TESTS} has no case where {alert} must not fire");
    }
    for name in seen.keys() {
        assert!(
            alerts.contains(name),
            "{TESTS} tests {name}, not in {RULES}"
        );
    }

    let exprs = names_after(&tests, "- expr:");
    for record in names_after(&rules, "- record:") {
        assert!(
            exprs.contains(&record),
            "{TESTS} has no promql_expr_test for the recording rule {record}"
        );
    }
}
