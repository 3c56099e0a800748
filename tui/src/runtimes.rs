//! Several runtimes behind one exporter. A process may run several tokio runtimes, each
//! with its own agent, served by one exporter (`?runtime=NAME` selects one; the snapshot
//! lists them all in `runtimes`). The TUI watches each runtime as a target of its own, so
//! their tasks, histories and findings are never mixed: when a target's first snapshot
//! lists more than one runtime, its link is pinned to the first runtime and one target per
//! other runtime is added to the picker (Tab, number keys), up to [`MAX_TARGETS`].

use std::time::Instant;

use crate::Link;
use crate::state::{App, MAX_TARGETS, Workbench};

/// Splits target `i` into one target per runtime of `runtimes` (its snapshot's list), once
/// per link; does nothing for a single runtime or a source that cannot select runtimes
/// (files, tokio-console). Returns how many targets were added.
pub(crate) fn expand(
    wb: &mut Workbench,
    links: &mut Vec<Option<Link>>,
    i: usize,
    runtimes: &[String],
    now: Instant,
) -> usize {
    let Some(link) = links.get_mut(i).and_then(Option::as_mut) else {
        return 0;
    };
    if link.runtimes_expanded || runtimes.len() < 2 {
        return 0;
    }
    link.runtimes_expanded = true;
    let names: Vec<String> = runtimes.iter().map(|n| shown_name(n)).collect();
    // The link as given asks for the exporter's default runtime, its first: asking for it by
    // name keeps it on that runtime. Requests in flight own their URLs and finish as they
    // are.
    let Some(first) = link.source.for_runtime(&names[0]) else {
        return 0;
    };
    if let Some(app) = wb.target_mut(i) {
        app.target = first.label();
    }
    link.source = first;
    let mut added = 0;
    for name in names.iter().skip(1) {
        if wb.targets().len() >= MAX_TARGETS {
            break;
        }
        let Some(source) = links[i].as_ref().and_then(|l| l.source.for_runtime(name)) else {
            break;
        };
        let template = &wb.targets()[i];
        let app = App::new(source.label(), now)
            .with_no_color(template.no_color)
            .with_refresh(template.refresh())
            .with_capabilities(source.capabilities());
        if !wb.add(app) {
            break;
        }
        let mut link = Link::new(source);
        link.runtimes_expanded = true;
        link.start_fetch();
        links.push(Some(link));
        added += 1;
    }
    added
}

/// A runtime name as sent by the target, safe to show: control characters dropped (the
/// URL percent-encodes the rest).
fn shown_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use taskscope::model::{SiteRow, Snapshot};

    use super::*;
    use crate::source::{Capabilities, Source, SourceFuture};

    /// A fake exporter serving runtimes `web` and `io`, each with a site of its own.
    struct Runtimes(Option<String>);

    impl Source for Runtimes {
        fn label(&self) -> String {
            crate::source::runtime_label("http://t", self.0.as_deref())
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::live_exporter()
        }
        fn fetch(&self) -> SourceFuture<Snapshot> {
            let runtime = self.0.clone().unwrap_or_else(|| "web".into());
            Box::pin(async move {
                Ok(Snapshot {
                    runtimes: vec!["web".into(), "io".into()],
                    sites: vec![SiteRow {
                        site: format!("{runtime}.rs:1:1"),
                        live: 1,
                        ..Default::default()
                    }],
                    ..Snapshot::default()
                })
            })
        }
        fn for_runtime(&self, name: &str) -> Option<Box<dyn Source>> {
            Some(Box::new(Runtimes(Some(name.to_string()))))
        }
    }

    /// A source that cannot select runtimes (as a file).
    struct Plain;

    impl Source for Plain {
        fn label(&self) -> String {
            "file".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::file()
        }
        fn fetch(&self) -> SourceFuture<Snapshot> {
            Box::pin(async { Ok(Snapshot::default()) })
        }
    }

    async fn next(links: &mut [Option<Link>]) -> (usize, crate::Done) {
        tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| crate::poll_links(links, cx)),
        )
        .await
        .expect("a source answers")
    }

    #[tokio::test]
    async fn each_runtime_becomes_a_target_of_its_own_once() {
        let t0 = Instant::now();
        let mut wb = Workbench::new(vec![
            App::new("http://t", t0).with_refresh(Duration::from_secs(3)),
        ]);
        let mut links = vec![Some(Link::new(Box::new(Runtimes(None))))];
        let runtimes = vec!["web".to_string(), "io\u{1b}".to_string()];

        assert_eq!(expand(&mut wb, &mut links, 0, &runtimes[..1], t0), 0);
        assert_eq!(expand(&mut wb, &mut links, 0, &runtimes, t0), 1);
        let labels: Vec<&str> = wb.targets().iter().map(|t| t.target.as_str()).collect();
        assert_eq!(labels, ["http://t runtime=web", "http://t runtime=io"]);
        assert_eq!(wb.targets()[1].refresh(), Duration::from_secs(3));
        // Once per link: a second snapshot listing the same runtimes adds nothing.
        assert_eq!(expand(&mut wb, &mut links, 0, &runtimes, t0), 0);
        assert_eq!(expand(&mut wb, &mut links, 1, &runtimes, t0), 0);
        assert_eq!(wb.targets().len(), 2);

        // The added target fetches its own runtime (its fetch was started), and the first
        // one asks for `web` by name.
        let (i, done) = next(&mut links).await;
        assert_eq!(i, 1);
        let app = wb.target_mut(1).unwrap();
        crate::apply_done(app, done, t0);
        assert_eq!(app.rows()[0].site, "io.rs:1:1");
        links[0].as_mut().unwrap().start_fetch();
        let (i, done) = next(&mut links).await;
        assert_eq!(i, 0);
        let app = wb.target_mut(0).unwrap();
        crate::apply_done(app, done, t0);
        assert_eq!(app.rows()[0].site, "web.rs:1:1");
    }

    #[test]
    fn sources_that_cannot_select_runtimes_and_full_pickers_stay_as_they_are() {
        let t0 = Instant::now();
        let runtimes = vec!["a".to_string(), "b".to_string()];
        let mut wb = Workbench::new(vec![App::new("file", t0)]);
        let mut links = vec![Some(Link::new(Box::new(Plain)))];
        assert_eq!(expand(&mut wb, &mut links, 0, &runtimes, t0), 0);
        assert_eq!(wb.targets()[0].target, "file");

        let full = (0..MAX_TARGETS).map(|_| App::new("http://t", t0)).collect();
        let mut wb = Workbench::new(full);
        let mut links: Vec<Option<Link>> = (0..MAX_TARGETS)
            .map(|_| Some(Link::new(Box::new(Runtimes(None)) as Box<dyn Source>)))
            .collect();
        assert_eq!(expand(&mut wb, &mut links, 0, &runtimes, t0), 0);
        assert_eq!(wb.targets().len(), MAX_TARGETS);
        assert_eq!(links.len(), MAX_TARGETS);
        assert_eq!(wb.targets()[0].target, "http://t runtime=a");
    }
}
