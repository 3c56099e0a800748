//! Fetching a [`Snapshot`] or a task [`Dump`] from a service's taskscope exporter.
//!
//! The target is not trusted: the response is size-capped, decoded without panicking and
//! its schema version checked. Every failure becomes a [`FetchError`] whose message is fit
//! to show a user as is.

use std::time::Duration;

use taskscope::model::{BaselineDiff, Dump, SCHEMA_VERSION, Snapshot};

/// Path of the snapshot endpoint, appended to the target's base URL.
pub const SNAPSHOT_PATH: &str = "/debug/taskscope/snapshot";

/// Path of the task-dump endpoint, appended to the target's base URL.
pub const DUMP_PATH: &str = "/debug/taskscope/dump";

/// How long one fetch may take, from connecting until the whole body has arrived.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one dump fetch may take: longer than the exporter's own dump timeout (5 s by
/// default), so that a slow dump comes back as the exporter's registry-only answer rather
/// than as a timeout here.
pub const DUMP_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest response body accepted (64 MiB); larger bodies are rejected with
/// [`FetchError::TooLarge`].
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Why a snapshot could not be fetched. The `Display` text is meant for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// Nothing listens at the target's address.
    #[error("connection refused by {url}")]
    ConnectionRefused {
        /// URL that was requested.
        url: String,
    },
    /// The target did not answer in time.
    #[error("timed out after {seconds:.1}s waiting for {url}")]
    Timeout {
        /// URL that was requested.
        url: String,
        /// The time limit, in seconds.
        seconds: f64,
    },
    /// Connecting failed for another reason (DNS, unreachable network, ...).
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// URL that was requested.
        url: String,
        /// Underlying error, flattened to text.
        detail: String,
    },
    /// The target answered with a non-success HTTP status.
    #[error("HTTP {status} from {url}{}{}", fmt_detail(detail), hint(*status))]
    Status {
        /// The HTTP status code, e.g. 500.
        status: u16,
        /// URL that was requested.
        url: String,
        /// Start of the response body, if it was short text (may be empty).
        detail: String,
    },
    /// The body was larger than the cap.
    #[error("response from {url} is too large (over {limit} bytes)")]
    TooLarge {
        /// URL that was requested.
        url: String,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The body was not a snapshot (or dump) in JSON.
    #[error("bad JSON from {url}: {detail}")]
    BadJson {
        /// URL that was requested.
        url: String,
        /// The decoder's message.
        detail: String,
    },
    /// The target speaks a newer schema than this build understands.
    #[error("target speaks schema v{found}, this taskscope understands up to v{supported}")]
    UnsupportedSchema {
        /// The target's `schema_version`.
        found: u32,
        /// [`SCHEMA_VERSION`] of this build.
        supported: u32,
    },
    /// Any other request failure (invalid URL, broken connection, ...).
    #[error("request to {url} failed: {detail}")]
    Request {
        /// URL that was requested.
        url: String,
        /// Underlying error, flattened to text.
        detail: String,
    },
}

/// A 404 usually means the URL is not a taskscope exporter. (A 429 from the dump endpoint
/// explains itself in its body: "another task dump is in progress; ...".)
fn hint(status: u16) -> &'static str {
    if status == 404 {
        " (is this a taskscope exporter? give its base URL, e.g. http://127.0.0.1:6060)"
    } else {
        ""
    }
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// The full snapshot URL for a base URL such as `http://127.0.0.1:6060`.
pub fn snapshot_url(base_url: &str) -> String {
    format!("{}{SNAPSHOT_PATH}", base_url.trim_end_matches('/'))
}

/// The dump URL for one spawn site: JSON groups of that site's tasks.
pub fn dump_url(base_url: &str, site: &str) -> String {
    format!(
        "{}{DUMP_PATH}?format=json&site={}",
        base_url.trim_end_matches('/'),
        percent_encode(site)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fetches and decodes one snapshot from the exporter at `base_url`
/// (e.g. `http://127.0.0.1:6060`), with a [`FETCH_TIMEOUT`] limit and a [`MAX_BODY_BYTES`]
/// cap.
pub async fn fetch_snapshot(
    client: &reqwest::Client,
    base_url: &str,
) -> Result<Snapshot, FetchError> {
    fetch_snapshot_with(client, base_url, FETCH_TIMEOUT, MAX_BODY_BYTES).await
}

/// [`fetch_snapshot`] with an explicit time limit and body cap.
pub async fn fetch_snapshot_with(
    client: &reqwest::Client,
    base_url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Snapshot, FetchError> {
    let url = snapshot_url(base_url);
    let timeout_error = || FetchError::Timeout {
        url: url.clone(),
        seconds: timeout.as_secs_f64(),
    };
    // reqwest's own timeout covers connect + body; the outer one is a belt for anything
    // it might not cover (e.g. a stalled DNS resolver).
    match tokio::time::timeout(timeout, fetch_inner(client, &url, timeout, max_body)).await {
        Ok(Ok(body)) => decode(&url, &body),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timeout_error()),
    }
}

/// Takes a task dump of one spawn site (`site` as in [`taskscope::model::SiteRow::site`])
/// from the exporter at `base_url`, with a [`DUMP_FETCH_TIMEOUT`] limit and a
/// [`MAX_BODY_BYTES`] cap.
///
/// The exporter answers 429 while another dump runs: that comes back as
/// [`FetchError::Status`] carrying the exporter's message. Dumps pause the target's
/// runtime for a moment, so call this on request, not on a timer.
pub async fn fetch_dump(
    client: &reqwest::Client,
    base_url: &str,
    site: &str,
) -> Result<Dump, FetchError> {
    fetch_dump_with(client, base_url, site, DUMP_FETCH_TIMEOUT, MAX_BODY_BYTES).await
}

/// [`fetch_dump`] with an explicit time limit and body cap.
pub async fn fetch_dump_with(
    client: &reqwest::Client,
    base_url: &str,
    site: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Dump, FetchError> {
    let url = dump_url(base_url, site);
    match tokio::time::timeout(timeout, fetch_inner(client, &url, timeout, max_body)).await {
        Ok(Ok(body)) => decode_dump(&url, &body),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(FetchError::Timeout {
            url: url.clone(),
            seconds: timeout.as_secs_f64(),
        }),
    }
}

async fn fetch_inner(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Vec<u8>, FetchError> {
    request_inner(client.get(url), url, timeout, max_body).await
}

async fn request_inner(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Vec<u8>, FetchError> {
    let map = |e: reqwest::Error| classify(url, timeout, e);
    let mut resp = request
        .timeout(timeout)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(map)?;

    let status = resp.status();
    if !status.is_success() {
        // A little of the body helps ("target has no taskscope agent"), but not much.
        let detail = match resp.chunk().await {
            Ok(Some(bytes)) => short_text(&bytes),
            _ => String::new(),
        };
        return Err(FetchError::Status {
            status: status.as_u16(),
            url: url.to_string(),
            detail,
        });
    }

    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max_body,
    };
    if let Some(len) = resp.content_length()
        && len > max_body as u64
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(map)? {
        if body.len() + chunk.len() > max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Path of the baseline endpoint (POST marks one).
pub const BASELINE_PATH: &str = "/debug/taskscope/baseline";

/// Path of the diff endpoint.
pub const DIFF_PATH: &str = "/debug/taskscope/diff";

/// Marks a baseline on the target now; returns its time (milliseconds since the Unix
/// epoch) as the target reports it.
pub async fn mark_baseline(client: &reqwest::Client, base_url: &str) -> Result<u64, FetchError> {
    #[derive(serde::Deserialize)]
    struct Marked {
        marked_at_unix_ms: u64,
    }
    let url = format!("{}{BASELINE_PATH}", base_url.trim_end_matches('/'));
    let body = with_timeout(
        &url,
        FETCH_TIMEOUT,
        request_inner(client.post(&url), &url, FETCH_TIMEOUT, 4096),
    )
    .await?;
    let marked: Marked = serde_json::from_slice(&body).map_err(|e| bad_json(&url, e))?;
    Ok(marked.marked_at_unix_ms)
}

/// What changed per site on the target: since its baseline, or over the last `since`.
pub async fn fetch_diff(
    client: &reqwest::Client,
    base_url: &str,
    since: Option<Duration>,
) -> Result<BaselineDiff, FetchError> {
    let mut url = format!("{}{DIFF_PATH}", base_url.trim_end_matches('/'));
    if let Some(since) = since {
        url.push_str(&format!("?since={}", since.as_secs_f64()));
    }
    let body = with_timeout(
        &url,
        FETCH_TIMEOUT,
        fetch_inner(client, &url, FETCH_TIMEOUT, MAX_BODY_BYTES),
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| bad_json(&url, e))
}

async fn with_timeout(
    url: &str,
    timeout: Duration,
    fetch: impl std::future::Future<Output = Result<Vec<u8>, FetchError>>,
) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(timeout, fetch).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            url: url.to_string(),
            seconds: timeout.as_secs_f64(),
        }),
    }
}

fn decode(url: &str, body: &[u8]) -> Result<Snapshot, FetchError> {
    let snapshot: Snapshot = serde_json::from_slice(body).map_err(|e| bad_json(url, e))?;
    check_schema(snapshot.schema_version)?;
    Ok(snapshot)
}

fn decode_dump(url: &str, body: &[u8]) -> Result<Dump, FetchError> {
    let dump: Dump = serde_json::from_slice(body).map_err(|e| bad_json(url, e))?;
    check_schema(dump.schema_version)?;
    Ok(dump)
}

fn bad_json(url: &str, e: serde_json::Error) -> FetchError {
    FetchError::BadJson {
        url: url.to_string(),
        detail: e.to_string(),
    }
}

fn check_schema(found: u32) -> Result<(), FetchError> {
    if found > SCHEMA_VERSION {
        return Err(FetchError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// First line of a body, if it looks like text, cut to 120 characters.
fn short_text(bytes: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(&bytes[..bytes.len().min(512)]) else {
        return String::new();
    };
    let line = text.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().filter(|c| !c.is_control()).take(120).collect();
    if line.chars().count() > 120 {
        out.push('…');
    }
    out
}

fn classify(url: &str, timeout: Duration, e: reqwest::Error) -> FetchError {
    let url = url.to_string();
    if e.is_timeout() {
        return FetchError::Timeout {
            url,
            seconds: timeout.as_secs_f64(),
        };
    }
    if e.is_connect() {
        if io_kind(&e) == Some(std::io::ErrorKind::ConnectionRefused) {
            return FetchError::ConnectionRefused { url };
        }
        return FetchError::Connect {
            url,
            detail: flatten(&e),
        };
    }
    FetchError::Request {
        url,
        detail: flatten(&e),
    }
}

/// The kind of the innermost `io::Error` in an error's source chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut kind = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
        }
        cur = err.source();
    }
    kind
}

/// An error and its sources on one line, without repeating the URL reqwest includes.
fn flatten(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        without_url_string(e)
    } else {
        parts.join(": ")
    }
}

/// reqwest's message without the " (url)" suffix it appends.
fn without_url_string(e: &reqwest::Error) -> String {
    let s = e.to_string();
    match e.url() {
        Some(url) => s.replace(&format!(" ({url})"), ""),
        None => s,
    }
}

/// Environment variable with the exporter's bearer token (as the exporter reads it).
pub const TOKEN_ENV: &str = "TASKSCOPE_TOKEN";
/// Environment variable naming a file that holds the token.
pub const TOKEN_FILE_ENV: &str = "TASKSCOPE_TOKEN_FILE";

/// An HTTP client builder with taskscope's user agent and, when `TASKSCOPE_TOKEN` (or the
/// file named by `TASKSCOPE_TOKEN_FILE`) is set, `Authorization: Bearer <token>` on every
/// request. The token never comes from a flag, so it does not show in `ps`.
pub fn client_builder() -> anyhow::Result<reqwest::ClientBuilder> {
    let token = match (std::env::var(TOKEN_ENV), std::env::var(TOKEN_FILE_ENV)) {
        (Ok(t), _) => Some(t),
        (Err(_), Ok(path)) => Some(std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!("cannot read the token file {path} ({TOKEN_FILE_ENV}): {e}")
        })?),
        _ => None,
    };
    let mut builder =
        reqwest::Client::builder().user_agent(concat!("taskscope/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the token in {TOKEN_ENV} is not a valid header value"))?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_newer_schema() {
        let err = decode("u", br#"{"schema_version":999}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "target speaks schema v999, this taskscope understands up to v{SCHEMA_VERSION}"
            )
        );
    }

    #[test]
    fn decode_accepts_missing_fields_and_rejects_garbage() {
        let snap = decode(
            "u",
            br#"{"schema_version":1,"sites":[{"site":"a","live":3}]}"#,
        )
        .expect("valid");
        assert_eq!(snap.sites[0].live, 3);
        assert!(matches!(
            decode("u", b"<html>").unwrap_err(),
            FetchError::BadJson { .. }
        ));
        assert!(matches!(
            decode_dump("u", b"").unwrap_err(),
            FetchError::BadJson { .. }
        ));
        assert!(matches!(
            decode_dump("u", br#"{"schema_version":7}"#).unwrap_err(),
            FetchError::UnsupportedSchema { found: 7, .. }
        ));
    }

    #[test]
    fn snapshot_url_joins() {
        assert_eq!(
            snapshot_url("http://h:1/"),
            "http://h:1/debug/taskscope/snapshot"
        );
    }

    #[test]
    fn dump_url_encodes_the_site() {
        assert_eq!(
            dump_url("http://h:1/", "demo-service/src/a b.rs:89:13"),
            "http://h:1/debug/taskscope/dump?format=json&site=demo-service%2Fsrc%2Fa%20b.rs%3A89%3A13"
        );
        assert_eq!(percent_encode("é&=+"), "%C3%A9%26%3D%2B");
    }

    #[test]
    fn short_text_is_bounded() {
        assert_eq!(short_text(b"oops\nmore"), "oops");
        assert_eq!(short_text(&[0xff, 0xfe]), "");
        assert_eq!(short_text(&[b'x'; 300]).chars().count(), 121);
    }
}
