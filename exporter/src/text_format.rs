//! Pieces of the Prometheus text exposition format, version 0.0.4, written into a `String`.
//!
//! Numbers are written as the `prometheus` crate wrote them (Rust's `Display` of the value as
//! an `f64`: `1`, `0.25`, `NaN`, `inf`), so a scrape reads the same as before the exporter
//! stopped going through that crate.

use std::fmt::Write as _;

/// The `Content-Type` of a body in this format (without the charset).
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The three metric types the exporter serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Appends `# HELP` (the help escaped: backslash, newline) and `# TYPE` lines.
pub(crate) fn push_header(out: &mut String, name: &str, help: &str, kind: MetricType) {
    if !help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        push_escaped(out, help, false);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// Appends `name="value"`, preceded by a comma unless `labels` is empty: one label of a
/// series' label block (without braces). The value is escaped: backslash, double quote,
/// newline.
pub(crate) fn push_label(labels: &mut String, name: &str, value: &str) {
    if !labels.is_empty() {
        labels.push(',');
    }
    labels.push_str(name);
    labels.push_str("=\"");
    push_escaped(labels, value, true);
    labels.push('"');
}

/// Appends `name` + `suffix`, the label block `{labels,le="le"}` (omitted when both are
/// empty), a space; the caller writes the value and the newline.
pub(crate) fn push_series(out: &mut String, name: &str, suffix: &str, labels: &str, le: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || !le.is_empty() {
        out.push('{');
        out.push_str(labels);
        if !le.is_empty() {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

/// Appends a float value as `Display` writes it.
pub(crate) fn push_f64(out: &mut String, v: f64) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{v}");
}

/// Largest integer below which every integer is an exact `f64` whose `Display` is its
/// decimal digits.
const EXACT: u64 = 1 << 53;

/// Appends an unsigned count as its `f64` would read.
pub(crate) fn push_u64(out: &mut String, v: u64) {
    if v < EXACT {
        push_digits(out, v);
    } else {
        push_f64(out, v as f64);
    }
}

/// Appends a signed gauge as its `f64` would read.
pub(crate) fn push_i64(out: &mut String, v: i64) {
    if v.unsigned_abs() < EXACT {
        if v < 0 {
            out.push('-');
        }
        push_digits(out, v.unsigned_abs());
    } else {
        push_f64(out, v as f64);
    }
}

fn push_digits(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Appends `v`, escaping backslash and newline, and double quote when `quote`.
fn push_escaped(out: &mut String, v: &str, quote: bool) {
    // Without a short cut the scan vectorizes: most values (paths) need no escaping, and
    // every series' labels are scanned once per scrape.
    let q = if quote { b'"' } else { b'\\' };
    let needs = v
        .bytes()
        .fold(false, |acc, b| acc | (b == b'\\') | (b == b'\n') | (b == q));
    if !needs {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_as_their_f64() {
        for v in [
            0u64,
            1,
            9,
            10,
            12_345,
            1_000_000_000_000_000,
            (1 << 53) - 1,
            1 << 53,
            (1 << 53) + 1,
            i64::MAX as u64,
            u64::MAX,
        ] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, (v as f64).to_string(), "{v}");
        }
        for v in [
            0i64,
            -1,
            7,
            -12_345,
            -(1 << 53) + 1,
            -(1 << 53),
            i64::MIN,
            i64::MAX,
        ] {
            let mut s = String::new();
            push_i64(&mut s, v);
            assert_eq!(s, (v as f64).to_string(), "{v}");
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut labels = String::new();
        push_label(&mut labels, "lock", "a \"b\" \\ c\nd");
        push_label(&mut labels, "runtime", "web");
        assert_eq!(labels, r#"lock="a \"b\" \\ c\nd",runtime="web""#);

        let mut out = String::new();
        push_header(
            &mut out,
            "x_total",
            "a \"quoted\" \\ help\nline",
            MetricType::Counter,
        );
        assert_eq!(
            out,
            "# HELP x_total a \"quoted\" \\\\ help\\nline\n# TYPE x_total counter\n"
        );
    }

    #[test]
    fn series_without_labels_have_no_braces() {
        let mut out = String::new();
        push_series(&mut out, "up", "", "", "");
        push_f64(&mut out, 1.5);
        out.push('\n');
        push_series(&mut out, "h", "_bucket", "", "+Inf");
        push_u64(&mut out, 3);
        out.push('\n');
        push_series(&mut out, "h", "_bucket", r#"a="1""#, "0.5");
        push_f64(&mut out, f64::NAN);
        assert_eq!(
            out,
            "up 1.5\nh_bucket{le=\"+Inf\"} 3\nh_bucket{a=\"1\",le=\"0.5\"} NaN"
        );
    }
}
