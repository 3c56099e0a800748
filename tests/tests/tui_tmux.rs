//! End to end in a real terminal: the demo with fault S2 (a reply map whose upstream ignores
//! every third request), and `taskscope <exporter>` in a detached tmux session of a fixed
//! size. Keys are sent as a user would type them; what the screen shows is read back with
//! `tmux capture-pane`.
//!
//! tmux is required (CI installs it in .ci/run); without it the test fails, unless
//! `TASKSCOPE_SKIP_TMUX=1` says skipping is fine on this machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Demo, ROOT, TempDir, first_user_frame, site_of};

const FILE: &str = "demo-service/src/faults/s2_reply_map.rs";
/// Requests S2 ignores (every third of 30): the live count at its request site.
const IGNORED: u64 = 10;
const REQUESTS: u64 = 30;
/// Set to 1 to let the test pass without tmux (with a message saying it was skipped).
const SKIP_ENV: &str = "TASKSCOPE_SKIP_TMUX";
/// How long the screen may take to show what is waited for.
const SCREEN_WAIT: Duration = Duration::from_secs(30);

/// Builds the `taskscope` binary of this workspace (a no-op when it is fresh) and returns
/// its path: the binary of another package is not handed to this one's tests.
fn taskscope_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "taskscope-tui",
            "--bin",
            "taskscope",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(ROOT)
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "cargo build -p taskscope-tui failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "taskscope")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the taskscope executable")
}

/// Whether tmux is there; when it is not, whether skipping is allowed (else panics).
fn have_tmux() -> bool {
    if Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var(SKIP_ENV).as_deref() == Ok("1"),
        "tmux is not installed: install it (apt-get install tmux) or set {SKIP_ENV}=1 to skip \
         this test"
    );
    eprintln!("SKIPPED: tmux is not installed and {SKIP_ENV}=1");
    false
}

/// One `taskscope` run in its own tmux server (a private socket, no user config), killed
/// when dropped. Its exit status and stderr go to files, read once it has exited.
struct TmuxTui {
    socket: String,
    dir: TempDir,
}

impl TmuxTui {
    fn start(bin: &Path, url: &str, width: u16, height: u16) -> TmuxTui {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "taskscope-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = TempDir::new("tmux");
        // The shell records how taskscope ended; the session ends with it.
        let script = format!(
            "'{}' '{url}' 2>'{}'; echo $? >'{}'",
            bin.display(),
            dir.0.join("stderr").display(),
            dir.0.join("status").display()
        );
        let tui = TmuxTui { socket, dir };
        let out = tui.tmux(&[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &script,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tui
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// The screen as text, one string per row.
    fn screen(&self) -> Vec<String> {
        let out = self.tmux(&["capture-pane", "-p", "-t", "tui"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Sends keys by tmux's names (`j`, `Enter`, `q`).
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let out = self.tmux(&["send-keys", "-t", "tui", key]);
            assert!(out.status.success(), "send-keys {key}: {out:?}");
        }
    }

    /// Polls the screen until `done` accepts it; panics with the last screen and what
    /// taskscope wrote to stderr after [`SCREEN_WAIT`].
    fn wait_for<T>(&self, what: &str, done: impl Fn(&[String]) -> Option<T>) -> T {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen();
            if let Some(found) = done(&screen) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{}\nstderr: {}",
                screen.join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default()
    }

    /// taskscope's exit status once it has exited (bounded wait).
    fn exit_status(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(status) = std::fs::read_to_string(self.dir.0.join("status")) {
                return status.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "taskscope did not exit:\n{}\nstderr: {}",
                self.screen().join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TmuxTui {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The sites table's body rows, top to bottom, split into words (the table's borders
/// dropped): the rows between the column header and the table's bottom border.
fn table_rows(screen: &[String]) -> Vec<Vec<String>> {
    let Some(header) = screen
        .iter()
        .position(|l| l.contains("Site") && l.contains("Live") && l.contains("Spawned"))
    else {
        return Vec::new();
    };
    screen[header + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('└'))
        .map(|l| {
            l.trim_matches(|c: char| c == '│' || c.is_whitespace())
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

/// Index of `site`'s row (the table may shorten the path from the left; its
/// `file:line:col` end stays) when it shows `live` live tasks, `spawned` and `completed`.
fn row_of(screen: &[String], site: &str, counts: [u64; 3]) -> Option<usize> {
    let tail = site.rsplit('/').next().unwrap();
    table_rows(screen).iter().position(|words| {
        let at = |i: usize, n: u64| words.get(i).is_some_and(|w| *w == n.to_string());
        words.first().is_some_and(|w| w.ends_with(tail))
            && at(1, counts[0])
            // Then Δ, spawned, completed; from 100 columns on, Δ, idle, spawned, completed.
            && ((at(3, counts[1]) && at(4, counts[2])) || (at(4, counts[1]) && at(5, counts[2])))
    })
}

fn has_line(screen: &[String], text: &str) -> bool {
    screen.iter().any(|l| l.contains(text))
}

/// The demo with S2 on, once its request site has exactly [`IGNORED`] live tasks; the
/// site, and the await point (`file:line`) the ignored requests wait at, from the
/// exporter's own dump and the source line it names.
async fn demo_with_s2() -> (Demo, String, String) {
    let demo = Demo::start(&[]);
    let site = site_of(FILE, "// fault site: S2 request");
    demo.fault_on("S2").await;
    demo.wait_live(&site, IGNORED).await;
    let dump = demo
        .check_traced_dump(&site, IGNORED, FILE, "a oneshot receive", |f| {
            f.contains("oneshot")
        })
        .await;
    let group = dump.groups.iter().find(|g| g.site == site).unwrap();
    let frame = group
        .stacks
        .iter()
        .find_map(|s| first_user_frame(s))
        .unwrap();
    let source = std::fs::read_to_string(format!("{ROOT}/{FILE}")).unwrap();
    let line = source.lines().nth(frame.line as usize - 1).unwrap_or("");
    assert!(
        line.contains("rx.await"),
        "the await point {FILE}:{} is not the reply's .await: {line}",
        frame.line
    );
    let await_point = format!("{FILE}:{}", frame.line);
    // The exporter serves one traced dump per second: leave the TUI's its own.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    (demo, site, await_point)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_finds_the_s2_site_and_its_await_point() {
    if !have_tmux() {
        return;
    }
    let bin = tokio::task::spawn_blocking(taskscope_binary).await.unwrap();
    let (demo, site, await_point) = demo_with_s2().await;
    let counts = [IGNORED, REQUESTS, REQUESTS - IGNORED];
    let exporter = demo.exporter.clone();

    tokio::task::spawn_blocking(move || {
        let tui = TmuxTui::start(&bin, &exporter, 100, 30);
        let row = tui.wait_for(&format!("{site} with {IGNORED} live tasks"), |s| {
            row_of(s, &site, counts)
        });
        // Down to the site's row (the first is selected), then its detail.
        for _ in 0..row {
            tui.keys(&["j"]);
        }
        tui.keys(&["Enter"]);

        let group = format!("{IGNORED} tasks @ {site}");
        tui.wait_for("the site's detail with its traced dump", |s| {
            (has_line(s, &format!("Site: {site}"))
                && has_line(
                    s,
                    &format!(
                        "Live: {IGNORED}   Spawned: {REQUESTS}   Completed: {}",
                        REQUESTS - IGNORED
                    ),
                )
                && has_line(s, "Source: traced (await points)")
                && has_line(s, &group)
                && has_line(s, &format!("  {await_point}")))
            .then_some(())
        });

        // q back to the sites, q again quits.
        tui.keys(&["q"]);
        tui.wait_for("the sites table again", |s| row_of(s, &site, counts));
        tui.keys(&["q"]);
        assert_eq!(tui.exit_status(), "0", "stderr: {}", tui.stderr());
        assert_eq!(tui.stderr(), "");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_fits_80x24_and_survives_resizing() {
    if !have_tmux() {
        return;
    }
    let bin = tokio::task::spawn_blocking(taskscope_binary).await.unwrap();
    let demo = Demo::start(&[]);
    let site = site_of(FILE, "// fault site: S2 request");
    demo.fault_on("S2").await;
    demo.wait_live(&site, IGNORED).await;
    let exporter = demo.exporter.clone();

    tokio::task::spawn_blocking(move || {
        let tui = TmuxTui::start(&bin, &exporter, 80, 24);
        let counts = [IGNORED, REQUESTS, REQUESTS - IGNORED];
        let screen = tui.wait_for("the S2 row at 80x24", |s| {
            row_of(s, &site, counts).map(|_| s.to_vec())
        });
        // The header: status, refresh, target, process and the live total readable in
        // the first lines; the total is the table's live column summed (every site fits).
        let text = screen.join("\n");
        assert!(
            screen[1].contains(&format!(
                "Status: CONNECTED every 1.0s   Target: {exporter}"
            )),
            "{text}"
        );
        assert!(
            screen[2].contains("Process: taskscope-demo-e2e (pid "),
            "{text}"
        );
        let rows = table_rows(&screen);
        let live: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
        assert!(
            screen[..7]
                .iter()
                .any(|l| l.contains(&format!("│Live tasks: {live} "))),
            "{text}"
        );
        assert!(
            screen[23].starts_with("q quit") && screen[23].contains("? all keys"),
            "{text}"
        );

        // Smaller, tiny, then back: it redraws each time and keeps running.
        for (w, h) in [(60, 20), (20, 6), (80, 24)] {
            let out = tui.tmux(&[
                "resize-window",
                "-t",
                "tui",
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
            ]);
            assert!(out.status.success(), "resize-window: {out:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
        tui.wait_for("the S2 row after resizing back to 80x24", |s| {
            row_of(s, &site, counts)
        });
        // The help overlay fits too; ? closes it, q quits.
        tui.keys(&["?"]);
        tui.wait_for("the help overlay", |s| has_line(s, "quit").then_some(()));
        tui.keys(&["?", "q"]);
        assert_eq!(tui.exit_status(), "0", "stderr: {}", tui.stderr());
        assert_eq!(tui.stderr(), "");
    })
    .await
    .unwrap();
}

/// A target that accepts connections and never answers; holds them until dropped.
struct SilentTarget {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SilentTarget {
    fn start() -> SilentTarget {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => held.push(sock),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                // Bounded: a TUI fetches once a second at most.
                held.truncate(64);
            }
        });
        SilentTarget { url, stop }
    }
}

impl Drop for SilentTarget {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_dead_target_is_shown_and_keys_still_work() {
    if !have_tmux() {
        return;
    }
    let bin = tokio::task::spawn_blocking(taskscope_binary).await.unwrap();
    tokio::task::spawn_blocking(move || {
        // Silent: the fetch times out (FETCH_TIMEOUT, 2 s) and says so; meanwhile and after,
        // keys are handled at once (q quits while the next fetch hangs).
        let silent = SilentTarget::start();
        let tui = TmuxTui::start(&bin, &silent.url, 100, 30);
        let snapshot_url = format!("{}/debug/taskscope/snapshot", silent.url);
        tui.wait_for("the timeout", |s| {
            (has_line(s, "Status: DISCONNECTED every 1.0s — no data yet")
                && has_line(
                    s,
                    &format!("timed out after 2.0s waiting for {snapshot_url}"),
                ))
            .then_some(())
        });
        tui.keys(&["?"]);
        tui.wait_for("the help overlay", |s| has_line(s, "quit").then_some(()));
        tui.keys(&["?", "q"]);
        assert_eq!(tui.exit_status(), "0", "stderr: {}", tui.stderr());
        assert_eq!(tui.stderr(), "");
        drop(silent);

        // Dead: connection refused, on screen, and q quits.
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        let tui = TmuxTui::start(&bin, &dead, 100, 30);
        tui.wait_for("connection refused", |s| {
            has_line(
                s,
                &format!("connection refused by {dead}/debug/taskscope/snapshot"),
            )
            .then_some(())
        });
        tui.keys(&["q"]);
        assert_eq!(tui.exit_status(), "0", "stderr: {}", tui.stderr());
    })
    .await
    .unwrap();
}
