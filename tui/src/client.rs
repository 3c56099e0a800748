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
    #[error("HTTP {status} from {url}{}{}", fmt_detail(detail), hint(*status, detail))]
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
    /// The connection closed before the whole body arrived (the target died or cut the
    /// answer off).
    #[error(
        "answer cut off after {received}{} bytes: {url} closed the connection",
        expected.map_or_else(String::new, |n| format!(" of {n}"))
    )]
    Truncated {
        /// URL that was requested.
        url: String,
        /// Bytes of the body received before the connection closed.
        received: usize,
        /// The body's declared length (`Content-Length`), when there was one.
        expected: Option<u64>,
    },
    /// The body was not JSON at all, or broken JSON.
    #[error("bad JSON from {url}: {detail}")]
    BadJson {
        /// URL that was requested.
        url: String,
        /// What is wrong: "not JSON: it starts with ..." or the decoder's message.
        detail: String,
    },
    /// The body was JSON, but not the document asked for (another service's JSON, or a
    /// snapshot where a diff was expected).
    #[error("not a taskscope {what} from {url}: {detail} (is this a taskscope exporter?)")]
    WrongShape {
        /// URL that was requested.
        url: String,
        /// The document expected: "snapshot", "task dump", "diff", "baseline answer".
        what: &'static str,
        /// What does not fit, e.g. "it has no schema_version".
        detail: String,
    },
    /// The target speaks a newer schema than this build understands.
    #[error(
        "version mismatch: {url} sends schema v{found}, this taskscope reads up to \
         v{supported} (upgrade taskscope)"
    )]
    UnsupportedSchema {
        /// URL that was requested.
        url: String,
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

/// A 404 usually means the URL is not a taskscope exporter; a 401 that a token is needed
/// (the exporter's own 401 says so already, a proxy's may not). A 429 from the dump
/// endpoint explains itself in its body: "another task dump is in progress; ...".
fn hint(status: u16, detail: &str) -> &'static str {
    match status {
        401 | 403 if detail.contains(TOKEN_ENV) => "",
        404 => " (is this a taskscope exporter? give its base URL, e.g. http://127.0.0.1:6060)",
        401 | 403 => " (set TASKSCOPE_TOKEN or TASKSCOPE_TOKEN_FILE to the exporter's token)",
        _ => "",
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

/// `url` asking for the runtime named `runtime` of an exporter serving several
/// (`?runtime=NAME`, or `&runtime=NAME` after a query); `url` itself for `None`.
pub fn with_runtime(url: String, runtime: Option<&str>) -> String {
    match runtime {
        None => url,
        Some(name) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}runtime={}", percent_encode(name))
        }
    }
}

/// Most tasks of one site the TUI lists in the site's detail view (oldest first).
pub const SITE_TASKS: usize = 1000;

/// The snapshot URL listing the [`SITE_TASKS`] oldest live tasks of `site` (ids, states,
/// ages, idle times, polls) for a base URL such as `http://127.0.0.1:6060`.
pub fn site_tasks_url(base_url: &str, site: &str) -> String {
    format!(
        "{}?tasks={SITE_TASKS}&site={}",
        snapshot_url(base_url),
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
    let body = fetch_body(client, &url, timeout, max_body).await?;
    decode_snapshot(&url, &body)
}

/// GETs `url` and returns its body: the request, the answer and the whole body within
/// `timeout`, the body at most `max_body` bytes. Every failure is a [`FetchError`] naming
/// `url` and the cause.
pub async fn fetch_body(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Vec<u8>, FetchError> {
    // reqwest's own timeout covers connect + body; the outer one is a belt for anything
    // it might not cover (e.g. a stalled DNS resolver).
    with_timeout(url, timeout, fetch_inner(client, url, timeout, max_body)).await
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
    let body = fetch_body(client, &url, timeout, max_body).await?;
    decode_dump(&url, &body)
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
    let expected = resp.content_length();
    let mut body = Vec::new();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // A body that stops early (the target closed the connection, or died) is not a
            // network problem to retry blindly: say how much arrived.
            Err(e) if !e.is_timeout() && (e.is_body() || e.is_decode()) => {
                return Err(FetchError::Truncated {
                    url: url.to_string(),
                    received: body.len(),
                    expected,
                });
            }
            Err(e) => return Err(map(e)),
        };
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
    mark_baseline_at(client, &baseline_url(base_url)).await
}

/// The baseline URL for a base URL such as `http://127.0.0.1:6060`.
pub fn baseline_url(base_url: &str) -> String {
    format!("{}{BASELINE_PATH}", base_url.trim_end_matches('/'))
}

/// [`mark_baseline`] at a full baseline URL (see [`baseline_url`], [`with_runtime`]).
pub async fn mark_baseline_at(client: &reqwest::Client, url: &str) -> Result<u64, FetchError> {
    #[derive(serde::Deserialize)]
    struct Marked {
        marked_at_unix_ms: u64,
    }
    let body = with_timeout(
        url,
        FETCH_TIMEOUT,
        request_inner(client.post(url), url, FETCH_TIMEOUT, 4096),
    )
    .await?;
    let marked: Marked = decode_small(url, "baseline answer", &body, "marked_at_unix_ms")?;
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
    let body = fetch_body(client, &url, FETCH_TIMEOUT, MAX_BODY_BYTES).await?;
    decode_small(&url, "diff", &body, "marked_at_unix_ms")
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

/// Decodes a snapshot: JSON, of a snapshot's shape, with a schema version this build
/// reads. A newer version is reported as such even when the newer document no longer
/// fits this build's types.
pub fn decode_snapshot(url: &str, body: &[u8]) -> Result<Snapshot, FetchError> {
    let snapshot: Snapshot = decode_typed(url, "snapshot", body)?;
    check_schema(url, "snapshot", Some(snapshot.schema_version))?;
    Ok(snapshot)
}

/// Decodes a task dump like [`decode_snapshot`] does a snapshot; a dump has a `groups` list (a
/// snapshot sent by mistake would otherwise read as an empty dump).
pub fn decode_dump(url: &str, body: &[u8]) -> Result<Dump, FetchError> {
    #[derive(serde::Deserialize)]
    struct Shape {
        groups: Option<serde::de::IgnoredAny>,
    }
    let dump: Dump = decode_typed(url, "task dump", body)?;
    check_schema(url, "task dump", Some(dump.schema_version))?;
    if !serde_json::from_slice::<Shape>(body).is_ok_and(|s| s.groups.is_some()) {
        return Err(wrong_shape(url, "task dump", "it has no \"groups\" list"));
    }
    Ok(dump)
}

/// The `schema_version` of a JSON object, if it has a numeric one.
#[derive(serde::Deserialize)]
struct Versioned {
    schema_version: Option<u32>,
}

/// Decodes `body` as `T`, telling apart "not JSON", "broken JSON", "JSON from a newer
/// taskscope" and "JSON of another shape".
fn decode_typed<T: serde::de::DeserializeOwned>(
    url: &str,
    what: &'static str,
    body: &[u8],
) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|e| {
        // A newer schema may have changed what fails to decode: say so first.
        if let Ok(Versioned {
            schema_version: Some(found),
        }) = serde_json::from_slice(body)
            && let Err(newer) = check_schema(url, what, Some(found))
        {
            return newer;
        }
        json_error(url, what, body, &e)
    })
}

/// Decodes a small answer (a diff, a baseline mark) that carries no schema version of its
/// own but must have `required` (a field that has a default in `T` would otherwise let any
/// JSON object through); checks a `schema_version` when there is one.
fn decode_small<T: serde::de::DeserializeOwned>(
    url: &str,
    what: &'static str,
    body: &[u8],
    required: &str,
) -> Result<T, FetchError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| json_error(url, what, body, &e))?;
    let Some(object) = value.as_object() else {
        return Err(wrong_shape(url, what, "it is not a JSON object"));
    };
    if let Some(found) = object.get("schema_version").and_then(|v| v.as_u64()) {
        check_schema(url, what, Some(u32::try_from(found).unwrap_or(u32::MAX)))?;
    }
    if !object.contains_key(required) {
        return Err(wrong_shape(url, what, &format!("it has no {required:?}")));
    }
    serde_json::from_value(value).map_err(|e| wrong_shape(url, what, &e.to_string()))
}

fn json_error(url: &str, what: &'static str, body: &[u8], e: &serde_json::Error) -> FetchError {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let detail = match first {
        None => "not JSON: the answer is empty".to_string(),
        Some(b'{' | b'[') => match e.classify() {
            serde_json::error::Category::Data => return wrong_shape(url, what, &e.to_string()),
            _ => format!("broken JSON: {e}"),
        },
        Some(_) => format!("not JSON: it starts with {:?}", short_text(body)),
    };
    FetchError::BadJson {
        url: url.to_string(),
        detail,
    }
}

fn wrong_shape(url: &str, what: &'static str, detail: &str) -> FetchError {
    FetchError::WrongShape {
        url: url.to_string(),
        what,
        detail: detail.to_string(),
    }
}

/// A missing (0) version means the JSON is not a taskscope document; a newer one, that
/// this build is too old to read it.
fn check_schema(url: &str, what: &'static str, found: Option<u32>) -> Result<(), FetchError> {
    match found {
        Some(0) => Err(wrong_shape(url, what, "it has no schema_version")),
        Some(found) if found > SCHEMA_VERSION => Err(FetchError::UnsupportedSchema {
            url: url.to_string(),
            found,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
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
        let err = decode_snapshot("u", br#"{"schema_version":999}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "version mismatch: u sends schema v999, this taskscope reads up to \
                 v{SCHEMA_VERSION} (upgrade taskscope)"
            )
        );
        // Even when the newer document no longer fits this build's types.
        assert!(matches!(
            decode_snapshot("u", br#"{"schema_version":2,"sites":"renamed"}"#).unwrap_err(),
            FetchError::UnsupportedSchema { found: 2, .. }
        ));
    }

    #[test]
    fn decode_accepts_missing_fields_and_rejects_garbage() {
        let snap = decode_snapshot(
            "u",
            br#"{"schema_version":1,"sites":[{"site":"a","live":3}]}"#,
        )
        .expect("valid");
        assert_eq!(snap.sites[0].live, 3);
        assert_eq!(
            decode_snapshot("u", b"<html>").unwrap_err().to_string(),
            r#"bad JSON from u: not JSON: it starts with "<html>""#
        );
        assert_eq!(
            decode_snapshot("u", b" \n").unwrap_err().to_string(),
            "bad JSON from u: not JSON: the answer is empty"
        );
        assert!(
            decode_snapshot("u", br#"{"schema_version":1,"#)
                .unwrap_err()
                .to_string()
                .starts_with("bad JSON from u: broken JSON: EOF while parsing")
        );
        assert_eq!(
            decode_snapshot("u", br#"{"hello":"world"}"#)
                .unwrap_err()
                .to_string(),
            "not a taskscope snapshot from u: it has no schema_version (is this a taskscope \
             exporter?)"
        );
        assert!(matches!(
            decode_snapshot("u", br#"{"schema_version":1,"sites":"many"}"#).unwrap_err(),
            FetchError::WrongShape {
                what: "snapshot",
                ..
            }
        ));
        assert!(matches!(
            decode_dump("u", b"").unwrap_err(),
            FetchError::BadJson { .. }
        ));
        assert!(matches!(
            decode_dump("u", br#"{"schema_version":7}"#).unwrap_err(),
            FetchError::UnsupportedSchema { found: 7, .. }
        ));
        // A snapshot is not an (empty) dump.
        assert_eq!(
            decode_dump("u", br#"{"schema_version":1,"sites":[]}"#)
                .unwrap_err()
                .to_string(),
            "not a taskscope task dump from u: it has no \"groups\" list (is this a taskscope \
             exporter?)"
        );
        assert!(decode_dump("u", br#"{"schema_version":1,"groups":[]}"#).is_ok());
    }

    #[test]
    fn small_answers_need_their_field() {
        let diff: Result<BaselineDiff, _> = decode_small(
            "u",
            "diff",
            br#"{"schema_version":1,"sites":[]}"#,
            "marked_at_unix_ms",
        );
        assert_eq!(
            diff.unwrap_err().to_string(),
            "not a taskscope diff from u: it has no \"marked_at_unix_ms\" (is this a taskscope \
             exporter?)"
        );
        let diff: Result<BaselineDiff, _> =
            decode_small("u", "diff", br#"{"schema_version":5,"sites":[]}"#, "sites");
        assert!(matches!(
            diff.unwrap_err(),
            FetchError::UnsupportedSchema { found: 5, .. }
        ));
        let diff: Result<BaselineDiff, _> = decode_small("u", "diff", b"[1]", "sites");
        assert!(matches!(diff.unwrap_err(), FetchError::WrongShape { .. }));
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
