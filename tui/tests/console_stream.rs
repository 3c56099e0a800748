//! The console gRPC client against a fake console-subscriber (console-api's own server
//! code, fed hand-built updates): the first state is read and mapped, a stream that ends
//! turns into "disconnected" and is reconnected, and wrong peers give clear errors within
//! the time limits instead of hanging.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use console_api as api;
use console_api::instrument::instrument_server::{Instrument, InstrumentServer};
use console_api::instrument::{
    InstrumentRequest, PauseRequest, PauseResponse, ResumeRequest, ResumeResponse, State,
    StateRequest, TaskDetailsRequest, Update,
};
use futures::Stream;
use taskscope::LeakSettings;
use taskscope_tui::client::FetchError;
use taskscope_tui::console::stream::{self, Shared, StreamStatus};
use taskscope_tui::console::{ConsoleSource, once};
use taskscope_tui::source::Source;
use tonic::{Request, Response, Status};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Sends `updates` on every `watch_updates`, then ends the stream (`end`) or stays silent.
struct Fake {
    updates: Vec<Update>,
    end: bool,
    watches: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl Instrument for Fake {
    type WatchUpdatesStream = Boxed<Update>;
    async fn watch_updates(
        &self,
        _: Request<InstrumentRequest>,
    ) -> Result<Response<Self::WatchUpdatesStream>, Status> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        let sent = futures::stream::iter(self.updates.clone().into_iter().map(Ok));
        if self.end {
            Ok(Response::new(Box::pin(sent)))
        } else {
            use futures::StreamExt as _;
            Ok(Response::new(Box::pin(
                sent.chain(futures::stream::pending()),
            )))
        }
    }
    type WatchTaskDetailsStream = Boxed<api::tasks::TaskDetails>;
    async fn watch_task_details(
        &self,
        _: Request<TaskDetailsRequest>,
    ) -> Result<Response<Self::WatchTaskDetailsStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    type WatchStateStream = Boxed<State>;
    async fn watch_state(
        &self,
        _: Request<StateRequest>,
    ) -> Result<Response<Self::WatchStateStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn pause(&self, _: Request<PauseRequest>) -> Result<Response<PauseResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
    async fn resume(&self, _: Request<ResumeRequest>) -> Result<Response<ResumeResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// One update with `n` idle tasks at `src/conn.rs:40:9`, at the service's time 100 s.
fn state(n: u64) -> Update {
    let at = |s: i64| prost_types::Timestamp {
        seconds: 1_700_000_000 + s,
        nanos: 0,
    };
    let tasks = (1..=n)
        .map(|i| api::tasks::Task {
            id: Some(api::Id { id: i }),
            fields: vec![api::Field {
                name: Some(api::field::Name::StrName("task.id".into())),
                value: Some(api::field::Value::U64Val(1000 + i)),
                metadata_id: None,
            }],
            location: Some(api::Location {
                file: Some("src/conn.rs".into()),
                line: Some(40),
                column: Some(9),
                module_path: None,
            }),
            ..Default::default()
        })
        .collect();
    let stats = (1..=n)
        .map(|i| {
            (
                i,
                api::tasks::Stats {
                    created_at: Some(at(50)),
                    waker_clones: 1,
                    poll_stats: Some(api::PollStats {
                        polls: 1,
                        first_poll: Some(at(50)),
                        last_poll_started: Some(at(50)),
                        last_poll_ended: Some(at(50)),
                        busy_time: None,
                    }),
                    ..Default::default()
                },
            )
        })
        .collect();
    Update {
        now: Some(at(100)),
        task_update: Some(api::tasks::TaskUpdate {
            new_tasks: tasks,
            stats_update: stats,
            dropped_events: 0,
        }),
        ..Default::default()
    }
}

/// Serves `fake` on a free port; its URL and the count of watches.
async fn serve(updates: Vec<Update>, end: bool) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let watches = Arc::new(AtomicU64::new(0));
    let fake = Fake {
        updates,
        end,
        watches: Arc::clone(&watches),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InstrumentServer::new(fake))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (url, watches)
}

#[tokio::test]
async fn once_reads_the_first_state_and_maps_it() {
    let (url, watches) = serve(vec![state(3)], false).await;
    let report = once(&url, &LeakSettings::default(), Duration::ZERO)
        .await
        .unwrap();
    let s = &report.snapshot;
    assert_eq!(s.sites.len(), 1);
    assert_eq!(
        (
            s.sites[0].site.as_str(),
            s.sites[0].live,
            s.sites[0].spawned
        ),
        ("src/conn.rs:40:9", 3, 3)
    );
    assert_eq!(s.sites[0].oldest_idle_seconds, 50.0);
    let ids: Vec<u64> = s.tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids, [1001, 1002, 1003]);
    assert_eq!(report.console.updates, 1);
    assert_eq!(watches.load(Ordering::SeqCst), 1);
    // Scheme-less URLs work too.
    let bare = url.trim_start_matches("http://");
    assert!(
        once(bare, &LeakSettings::default(), Duration::ZERO)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_stream_that_ends_is_disconnected_then_reconnected() {
    // Every stream sends the state, then ends.
    let (url, watches) = serve(vec![state(2)], true).await;
    let shared = Arc::new(std::sync::Mutex::new(Shared::new()));
    let task = tokio::spawn(stream::follow(url.clone(), Arc::clone(&shared)));
    let settings = LeakSettings::default();
    let mut saw_disconnected = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while watches.load(Ordering::SeqCst) < 3 || !saw_disconnected {
        assert!(tokio::time::Instant::now() < deadline, "no reconnection");
        if let Err(e) = stream::current(&shared, &settings, &url)
            && matches!(shared.lock().unwrap().status, StreamStatus::Disconnected(_))
        {
            assert!(e.to_string().contains("ended the stream"), "{e}");
            saw_disconnected = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tracker is rebuilt from each new stream: never double counted.
    let t = &shared.lock().unwrap().tracker;
    assert_eq!(t.sites[0].spawned, 2);
    task.abort();
}

#[tokio::test]
async fn the_tui_source_answers_with_the_mapped_state_and_says_what_is_unavailable() {
    let (url, _) = serve(vec![state(4)], false).await;
    let source = ConsoleSource::new(&url, LeakSettings::default()).unwrap();
    assert!(source.label().contains("console-subscriber"));
    let caps = source.capabilities();
    assert!(caps.live);
    assert!(caps.dumps.why_not().unwrap().contains("no task dumps"));
    assert!(caps.baseline.why_not().is_some());
    assert!(source.dump("src/conn.rs:40:9").is_err());
    assert!(source.mark_baseline().is_err());
    let snap = source.fetch().await.unwrap();
    assert_eq!(snap.sites[0].live, 4);
}

#[tokio::test]
async fn nothing_listening_is_a_refused_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = once(&url, &LeakSettings::default(), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::ConnectionRefused { url });
}

#[tokio::test]
async fn a_peer_that_is_not_console_gives_a_clear_error_not_a_hang() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // An HTTP/1 server (like taskscope's own exporter): answers garbage to HTTP/2.
    let http1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", http1.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http1.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let started = std::time::Instant::now();
    let err = once(&url, &LeakSettings::default(), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.to_string().contains("not console's gRPC"), "{err}");

    // A peer that accepts and never says anything: the connect limit ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let started = std::time::Instant::now();
    let err = once(&url, &LeakSettings::default(), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        started.elapsed()
            < stream::CONNECT_TIMEOUT + stream::FIRST_UPDATE_TIMEOUT + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    hold.abort();

    // Bad URLs are refused before any connection.
    assert!(
        once("https://h:1", &LeakSettings::default(), Duration::ZERO)
            .await
            .is_err()
    );
    assert!(
        once("", &LeakSettings::default(), Duration::ZERO)
            .await
            .is_err()
    );
}
