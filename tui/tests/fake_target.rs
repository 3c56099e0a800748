//! The TUI and every CLI subcommand against a fake target that misbehaves: dead (nothing
//! listens), slow (answers after 30 s), cut off mid-body, garbage (text, HTML, JSON of
//! another shape, a snapshot from a newer taskscope) and HTTP errors with a body.
//!
//! For each, the TUI's state after `App::apply` of the real fetch shows DISCONNECTED with
//! the last good data and the cause on screen (and the detail view the dump's failure),
//! and `taskscope dump|top|diff|baseline` exits 1 with one line on stderr that names the
//! URL and the cause, within a bound (a hang fails the test, it does not stall it).

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{SCHEMA_VERSION, SiteRow, Snapshot};
use taskscope_tui::client::{DUMP_FETCH_TIMEOUT, FETCH_TIMEOUT, fetch_dump, fetch_snapshot};
use taskscope_tui::state::{App, View};
use taskscope_tui::view;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The binary under test.
const TASKSCOPE: &str = env!("CARGO_BIN_EXE_taskscope");

/// How long the slow target waits before it answers.
const SLOW: Duration = Duration::from_secs(30);

/// What a CLI run may take at most before the test calls it a hang: the longest client
/// timeout (the dump's) plus room for a loaded machine.
const CLI_BOUND: Duration = Duration::from_secs(25);

/// The site of the good snapshot the TUI sees before the target goes bad.
const SITE: &str = "demo-service/src/faults/s2_reply_map.rs:60:13";

/// How the fake target answers every request, whatever its path.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Reads the request, waits [`SLOW`], then answers a good snapshot.
    Slow,
    /// Sends the head with the full `Content-Length` of `body`, half of it, and closes.
    CutOff { body: String },
    /// Sends the head of a chunked answer and one whole chunk holding `body`, then closes
    /// without the last chunk.
    CutOffChunked { body: String },
    /// A complete answer.
    Answer {
        status: &'static str,
        content_type: &'static str,
        body: String,
    },
}

/// A fake target on a local port; stops serving when dropped.
struct FakeTarget {
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTarget {
    async fn start(behaviour: Behaviour) -> FakeTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                connections.spawn(serve(sock, behaviour.clone()));
            }
        });
        FakeTarget { url, server }
    }
}

/// A port nobody listens on.
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

async fn serve(mut sock: TcpStream, behaviour: Behaviour) {
    // The request head (bodies are empty: GETs, and the baseline's POST).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let response = match behaviour {
        Behaviour::Slow => {
            tokio::time::sleep(SLOW).await;
            http("200 OK", "application/json", &good_snapshot_json())
        }
        Behaviour::CutOff { body } => {
            let mut bytes = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(&body.as_bytes()[..body.len() / 2]);
            bytes
        }
        Behaviour::CutOffChunked { body } => format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
             {:x}\r\n{body}\r\n",
            body.len()
        )
        .into_bytes(),
        Behaviour::Answer {
            status,
            content_type,
            body,
        } => http(status, content_type, &body),
    };
    let _ = sock.write_all(&response).await;
    let _ = sock.flush().await;
    // Dropping the socket closes the connection, mid-body for `CutOff`.
}

fn http(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn good_snapshot() -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        sites: vec![SiteRow {
            site: SITE.into(),
            live: 10,
            spawned: 30,
            completed: 20,
            ..SiteRow::default()
        }],
        ..Snapshot::default()
    }
}

fn good_snapshot_json() -> String {
    serde_json::to_string(&good_snapshot()).unwrap()
}

/// The URL each subcommand requests from the exporter at `base`.
fn endpoint(command: &str, base: &str) -> String {
    match command {
        "top" => format!("{base}/debug/taskscope/snapshot"),
        "diff" => format!("{base}/debug/taskscope/diff"),
        "baseline" => format!("{base}/debug/taskscope/baseline"),
        "dump" => format!("{base}/debug/taskscope/dump?debug=1&format=json"),
        other => unreachable!("no subcommand {other}"),
    }
}

/// The screen as lines of text.
fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render(f, app)).unwrap();
    let buf = terminal.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// The screen's text without borders and whitespace, so that a message wrapped over
/// several lines (at spaces or inside a long URL) reads as one.
fn unwrapped(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect()
}

/// The TUI: a good snapshot, then a failing fetch from `base`. The sites view keeps the
/// last good row and says DISCONNECTED, since when, and the cause (`message(url)` of the
/// snapshot URL); the detail view says the dump failed and why (`message` of the dump
/// URL).
async fn check_tui(base: &str, message: impl Fn(&str) -> String) {
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let mut app = App::new(base, t0).with_no_color(true);
    app.apply(Ok(good_snapshot()), t0);

    let result = fetch_snapshot(&client, base).await;
    let error = result.as_ref().err().map(ToString::to_string);
    app.apply(result, t0 + Duration::from_secs(5));
    app.tick(t0 + Duration::from_secs(8));
    let expected = message(&format!("{base}/debug/taskscope/snapshot"));
    assert_eq!(error.as_deref(), Some(expected.as_str()));

    let lines = screen(&app, 220, 30);
    let text = lines.join("\n");
    assert!(
        text.contains("Status: DISCONNECTED every 1.0s — showing data from 8s ago"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Error (for 3s): {expected}")),
        "{text}"
    );
    let row = lines
        .iter()
        .find(|l| l.contains(SITE))
        .unwrap_or_else(|| panic!("the last good row is gone: {text}"));
    assert_eq!(
        row.trim_matches(|c: char| c == '│' || c.is_whitespace())
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        [SITE, "10"],
        "{text}"
    );
    // 80x24 draws without panicking and still says so up front.
    let small = screen(&app, 80, 24).join("\n");
    assert!(small.contains("Status: DISCONNECTED"), "{small}");

    // Enter on the site: its task dump fails the same way, and the view says so.
    assert!(app.open_detail());
    assert_eq!(app.view(), View::Detail);
    let request = app.take_dump_request().expect("a dump on opening");
    let result = fetch_dump(&client, base, &request.site).await;
    app.apply_dump(request.id, result, t0 + Duration::from_secs(9));
    let dump_url = format!(
        "{base}/debug/taskscope/dump?format=json&site=demo-service%2Fsrc%2Ffaults%2Fs2_reply_map.rs%3A60%3A13"
    );
    let expected = message(&dump_url);
    assert_eq!(
        app.detail().and_then(|d| d.error()),
        Some(expected.as_str())
    );
    let text = screen(&app, 200, 30).concat();
    assert!(
        unwrapped(&text).contains(&unwrapped(&format!("dump failed: {expected}"))),
        "{text}"
    );
    screen(&app, 80, 24);
}

/// What a CLI run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run_cli(command: &str, base: &str) -> Run {
    let child = tokio::process::Command::new(TASKSCOPE)
        .args([command, base])
        .env_remove("TASKSCOPE_TOKEN")
        .env_remove("TASKSCOPE_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start taskscope");
    let out = tokio::time::timeout(CLI_BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`taskscope {command} {base}` hung for {CLI_BOUND:?}"))
        .expect("taskscope ran");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every subcommand against `base` at once: each exits 1, prints nothing on stdout and
/// exactly `taskscope <command>: error: <message(url)>` on stderr, `url` being what that
/// subcommand requested.
async fn check_cli(base: &str, message: impl Fn(&str, &str) -> String) {
    let commands = ["dump", "top", "diff", "baseline"];
    let runs = futures::future::join_all(commands.map(|c| run_cli(c, base))).await;
    for (command, run) in commands.iter().zip(runs) {
        let want = format!(
            "taskscope {command}: error: {}\n",
            message(command, &endpoint(command, base))
        );
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(1), "", want.as_str()),
            "taskscope {command} {base}"
        );
    }
}

fn answer(status: &'static str, content_type: &'static str, body: &str) -> Behaviour {
    Behaviour::Answer {
        status,
        content_type,
        body: body.to_string(),
    }
}

#[test]
fn the_timeouts_are_sane() {
    // Long enough for a large snapshot on a loaded machine, short enough that a refresh
    // every second notices a hung target at once; the dump's covers the exporter's own
    // 5 s trace timeout and still ends well before the slow target answers.
    assert_eq!(FETCH_TIMEOUT, Duration::from_secs(2));
    assert_eq!(DUMP_FETCH_TIMEOUT, Duration::from_secs(15));
    assert!(DUMP_FETCH_TIMEOUT * 2 <= SLOW && DUMP_FETCH_TIMEOUT < CLI_BOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_target() {
    let base = dead_url().await;
    let message = |url: &str| format!("connection refused by {url}");
    tokio::join!(
        check_tui(&base, message),
        check_cli(&base, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_target_times_out() {
    let target = FakeTarget::start(Behaviour::Slow).await;
    let tui_message = |url: &str| {
        let limit = if url.contains("/dump") {
            DUMP_FETCH_TIMEOUT
        } else {
            FETCH_TIMEOUT
        };
        format!(
            "timed out after {:.1}s waiting for {url}",
            limit.as_secs_f64()
        )
    };
    tokio::join!(
        check_tui(&target.url, tui_message),
        check_cli(&target.url, |_, u| tui_message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_closes_mid_body() {
    let body = good_snapshot_json();
    let (half, len) = (body.len() / 2, body.len());
    let target = FakeTarget::start(Behaviour::CutOff { body }).await;
    let message = |url: &str| {
        format!("answer cut off after {half} of {len} bytes: {url} closed the connection")
    };
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_closes_mid_chunked_body() {
    // A body of unknown length: what arrived is all the message can say.
    let body = good_snapshot_json();
    let half = body[..body.len() / 2].to_string();
    let target = FakeTarget::start(Behaviour::CutOffChunked { body: half.clone() }).await;
    let message = |url: &str| {
        format!(
            "answer cut off after {} bytes: {url} closed the connection",
            half.len()
        )
    };
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_is_not_json() {
    let target =
        FakeTarget::start(answer("200 OK", "text/plain", "hello from a web server\n")).await;
    let message = |url: &str| {
        format!(r#"bad JSON from {url}: not JSON: it starts with "hello from a web server""#)
    };
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_is_not_json() {
    let target = FakeTarget::start(answer(
        "200 OK",
        "text/html",
        "<!DOCTYPE html>\n<html><body><h1>It works!</h1></body></html>\n",
    ))
    .await;
    let message =
        |url: &str| format!(r#"bad JSON from {url}: not JSON: it starts with "<!DOCTYPE html>""#);
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_of_another_service() {
    let target = FakeTarget::start(answer(
        "200 OK",
        "application/json",
        r#"{"status":"ok","items":[1,2]}"#,
    ))
    .await;
    let shape = |what: &str, url: &str, missing: &str| {
        format!(
            "not a taskscope {what} from {url}: it has no {missing} (is this a taskscope exporter?)"
        )
    };
    tokio::join!(
        check_tui(&target.url, |url| {
            let what = if url.contains("/dump") {
                "task dump"
            } else {
                "snapshot"
            };
            shape(what, url, "schema_version")
        }),
        check_cli(&target.url, |command, url| match command {
            "dump" => shape("task dump", url, "schema_version"),
            "top" => shape("snapshot", url, "schema_version"),
            "diff" => shape("diff", url, r#""marked_at_unix_ms""#),
            _ => shape("baseline answer", url, r#""marked_at_unix_ms""#),
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taskscope_json_of_the_wrong_types() {
    // Every document's fields, with the wrong types.
    let body = r#"{"schema_version":1,"sites":"many","groups":"many","marked_at_unix_ms":"soon"}"#;
    let target = FakeTarget::start(answer("200 OK", "application/json", body)).await;
    tokio::join!(
        check_tui(&target.url, |url| {
            if url.contains("/dump") {
                format!(
                    "not a taskscope task dump from {url}: invalid type: string \"many\", expected \
                     a sequence at line 1 column 50 (is this a taskscope exporter?)"
                )
            } else {
                format!(
                    "not a taskscope snapshot from {url}: invalid type: string \"many\", expected \
                     a sequence at line 1 column 34 (is this a taskscope exporter?)"
                )
            }
        }),
        check_cli(&target.url, |command, url| match command {
            "dump" => format!(
                "not a taskscope task dump from {url}: invalid type: string \"many\", expected a \
                 sequence at line 1 column 50 (is this a taskscope exporter?)"
            ),
            "top" => format!(
                "not a taskscope snapshot from {url}: invalid type: string \"many\", expected a \
                 sequence at line 1 column 34 (is this a taskscope exporter?)"
            ),
            "diff" => format!(
                "not a taskscope diff from {url}: invalid type: string \"soon\", expected u64 (is \
                 this a taskscope exporter?)"
            ),
            _ => format!(
                "not a taskscope baseline answer from {url}: invalid type: string \"soon\", \
                 expected u64 (is this a taskscope exporter?)"
            ),
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_a_version_mismatch() {
    // What a future taskscope might send: a newer version, and every document's fields
    // (some with new types), so that only the version can tell.
    let body =
        r#"{"schema_version":999,"sites":{"new":"layout"},"groups":[],"marked_at_unix_ms":1}"#;
    let target = FakeTarget::start(answer("200 OK", "application/json", body)).await;
    let message = |url: &str| {
        format!(
            "version mismatch: {url} sends schema v999, this taskscope reads up to \
             v{SCHEMA_VERSION} (upgrade taskscope)"
        )
    };
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_says_how_to_send_a_token() {
    let target =
        FakeTarget::start(answer("401 Unauthorized", "text/plain", "Unauthorized\n")).await;
    let message = |url: &str| {
        format!(
            "HTTP 401 from {url}: Unauthorized (set TASKSCOPE_TOKEN or TASKSCOPE_TOKEN_FILE to \
             the exporter's token)"
        )
    };
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_asks_for_the_exporter() {
    let target = FakeTarget::start(answer(
        "404 Not Found",
        "text/html",
        "<h1>404 page not found</h1>\n<p>nothing here</p>\n",
    ))
    .await;
    let message = |url: &str| {
        format!(
            "HTTP 404 from {url}: <h1>404 page not found</h1> (is this a taskscope exporter? give \
             its base URL, e.g. http://127.0.0.1:6060)"
        )
    };
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_carries_its_first_line() {
    let target = FakeTarget::start(answer(
        "500 Internal Server Error",
        "text/plain",
        "agent exploded\n\tat frame 1\n\tat frame 2\n",
    ))
    .await;
    let message = |url: &str| format!("HTTP 500 from {url}: agent exploded");
    tokio::join!(
        check_tui(&target.url, message),
        check_cli(&target.url, |_, u| message(u))
    );
}
