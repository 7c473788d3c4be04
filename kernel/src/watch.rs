//! `%%watch INTERVAL` + a query: the output refreshes in place while other cells run, and the catch-up display of
//! a new live table.
//!
//! A watch publishes one `display_data` with a display_id, then a background task re-runs the query and sends
//! `update_display_data` for that id. It stops when the same query is watched again (re-running the cell), on
//! interrupt, on `%%watch stop`, after its time limit (`for=`, default one hour), or when the query fails.

use crate::plot;
use crate::protocol::{MimeBundle, Publisher};
use crate::render;
use kestrel_engine::{group_thousands, Engine, Outcome, RunOptions};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rows a watched result shows.
const WATCH_ROWS: usize = 20;
const DEFAULT_LIMIT: Duration = Duration::from_secs(3600);
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// `2s`, `500ms`, `1 minute`, `0.5` (seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let i = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..i].parse().ok()?;
    let scale = match t[i..].trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(n * scale)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(7 * 86400))
}

/// What `%%watch` was asked.
#[derive(Debug, PartialEq)]
pub enum WatchArgs {
    Stop,
    Start { every: Duration, limit: Duration },
}

pub fn parse_args(args: &str) -> Result<WatchArgs, String> {
    let usage =
        "usage: %%watch INTERVAL [for=DURATION] then a query (e.g. %%watch 2s), or %%watch stop";
    let mut every = None;
    let mut limit = DEFAULT_LIMIT;
    for word in args.split_whitespace() {
        if word.eq_ignore_ascii_case("stop") {
            return Ok(WatchArgs::Stop);
        }
        if let Some(v) = word.strip_prefix("for=") {
            limit = parse_duration(v).ok_or(format!("for={v}: not a duration; {usage}"))?;
        } else if every.is_none() {
            every =
                Some(parse_duration(word).ok_or(format!("'{word}' is not an interval; {usage}"))?);
        } else {
            return Err(format!("unexpected '{word}'; {usage}"));
        }
    }
    let every = every.unwrap_or(Duration::from_secs(1)).max(MIN_INTERVAL);
    Ok(WatchArgs::Start { every, limit })
}

struct Running {
    query: String,
    task: tokio::task::JoinHandle<()>,
    /// Open while the watch may publish; closed by a stop (see [`through`]).
    gate: Arc<Mutex<bool>>,
}

impl Running {
    /// Closes the gate, then aborts the task: an update being sent finishes first, and none goes out after.
    fn stop(&self) {
        *self.gate.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.task.abort();
    }
}

/// Sends an update only while the watch's gate is open, holding it meanwhile (a stop waits for the send). Returns
/// whether it was open. Aborting the task alone is not enough: a task running on another worker thread reaches its
/// next await, and its next send, after the stop has returned.
fn through(gate: &Mutex<bool>, send: impl FnOnce()) -> bool {
    let open = gate.lock().unwrap_or_else(|p| p.into_inner());
    if *open {
        send();
    }
    *open
}

/// The kernel's running watches.
#[derive(Default, Clone)]
pub struct Watches {
    running: Arc<Mutex<Vec<Running>>>,
}

fn footer_bundle(mut bundle: MimeBundle, footer: &str) -> MimeBundle {
    if let Some(svg) = bundle.get("image/svg+xml").and_then(|v| v.as_str()) {
        let svg = plot::with_footer(svg, footer);
        bundle.insert("image/svg+xml".into(), json!(svg));
    }
    if let Some(html) = bundle.get("text/html").and_then(|v| v.as_str()) {
        let html = format!(
            "{html}<div class=\"kestrel-watch\" style=\"color:#888;font-size:0.85em\">{}</div>",
            render::escape_html(footer)
        );
        bundle.insert("text/html".into(), json!(html));
    }
    if let Some(text) = bundle.get("text/plain").and_then(|v| v.as_str()) {
        let text = format!("{text}\n{footer}");
        bundle.insert("text/plain".into(), json!(text));
    }
    bundle
}

fn text_bundle(text: &str) -> MimeBundle {
    let mut b = MimeBundle::new();
    b.insert(
        "text/html".into(),
        json!(format!("<pre>{}</pre>", render::escape_html(text))),
    );
    b.insert("text/plain".into(), json!(text));
    b
}

async fn run_once(engine: &Engine, query: &str) -> Result<MimeBundle, String> {
    // `%%watch 5s` over `%%plot ...` and its query: a plot that redraws itself.
    if let (Some(("plot", args)), body) = crate::sql_kernel::split_magic(query) {
        let args = plot::parse_args(args)?;
        let data = kestrel_plot::plot(engine, body, &args.request)
            .await
            .map_err(|e| render::error_parts(&e).1)?;
        return plot::bundle(&data, &args);
    }
    match engine
        .run_cell(query, &RunOptions::preview(WATCH_ROWS))
        .await
    {
        Ok(Some(Outcome::Rows(r))) => Ok(render::query_bundle(&r)),
        Ok(Some(Outcome::Done(d))) => Ok(render::confirmation_bundle(&d)),
        Ok(None) => Err("the watched cell has no query".into()),
        Err(e) => Err(render::error_parts(&e).1),
    }
}

fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

impl Watches {
    /// Stops every watch; returns how many ran.
    pub fn stop_all(&self) -> usize {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = r.iter().filter(|w| !w.task.is_finished()).count();
        for w in r.drain(..) {
            w.stop();
        }
        n
    }

    fn stop_query(&self, query: &str) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|w| {
            if w.query == query {
                w.stop();
                false
            } else {
                !w.task.is_finished()
            }
        });
    }

    /// Runs the query once (an error fails the cell and starts nothing), displays it, and keeps it fresh.
    pub async fn start(
        &self,
        engine: Engine,
        query: String,
        every: Duration,
        limit: Duration,
        out: Publisher,
    ) -> Result<(), String> {
        self.stop_query(query.trim());
        let first = run_once(&engine, &query).await?;
        let display_id = uuid::Uuid::new_v4().to_string();
        let every_text = render::format_elapsed(every).replace(".00 s", " s");
        let footer = move |n: u64, note: &str| {
            format!(
                "⟳ every {every_text} · updated {} · {n} update{} · {note}",
                clock(),
                if n == 1 { "" } else { "s" }
            )
        };
        let stop_hint = "stop: re-run this cell, interrupt the kernel, or run %%watch stop";
        out.display(
            footer_bundle(first, &footer(0, stop_hint)),
            Some(&display_id),
        );
        let key = query.trim().to_string();
        let gate = Arc::new(Mutex::new(true));
        let open = gate.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut n = 0u64;
            let mut last: Option<MimeBundle> = None;
            loop {
                tokio::time::sleep(every).await;
                if started.elapsed() >= limit {
                    let note = format!(
                        "stopped after {} (for= limit); re-run the cell to watch again",
                        render::format_elapsed(limit)
                    );
                    let b = last.clone().unwrap_or_else(|| text_bundle(""));
                    through(&open, || {
                        out.update_display(footer_bundle(b, &footer(n, &note)), &display_id)
                    });
                    return;
                }
                match run_once(&engine, &query).await {
                    Ok(b) => {
                        n += 1;
                        last = Some(b.clone());
                        let sent = through(&open, || {
                            out.update_display(footer_bundle(b, &footer(n, stop_hint)), &display_id)
                        });
                        if !sent {
                            return;
                        }
                    }
                    Err(e) => {
                        let b = text_bundle(&format!("watch stopped: {e}"));
                        through(&open, || {
                            out.update_display(
                                footer_bundle(b, &footer(n, "re-run the cell to watch again")),
                                &display_id,
                            )
                        });
                        return;
                    }
                }
            }
        });
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|w| !w.task.is_finished());
        r.push(Running {
            query: key,
            task,
            gate,
        });
        Ok(())
    }

    /// Shows how a new live table catches up with its topic's backlog, updated in place until it has (or ten
    /// minutes pass).
    pub fn catch_up(&self, engine: &Engine, table: &str, out: Publisher) {
        let Some(live) = engine.sources().get(table) else {
            return;
        };
        let display_id = uuid::Uuid::new_v4().to_string();
        let status = move |live: &kestrel_engine::stream::LiveTable| {
            use std::sync::atomic::Ordering::Relaxed;
            let consumed = live.counters.consumed.load(Relaxed);
            let lag = live.counters.lag.load(Relaxed).max(0) as u64;
            let errors = live.counters.errors.load(Relaxed);
            let (state, _) = live.state();
            let total = consumed + lag;
            let pct = (consumed * 100).checked_div(total).unwrap_or(100);
            let text = format!(
                "{}: {} of {} messages ({pct}%) · {} dead letters · {:.0} rows/s · {}",
                live.name,
                group_thousands(consumed),
                group_thousands(total),
                group_thousands(errors),
                live.counters.rate(),
                state.name()
            );
            let html = format!(
                "<div style=\"font-family:monospace\"><progress value=\"{consumed}\" max=\"{}\" style=\"width:16em\"></progress> {}</div>",
                total.max(1),
                render::escape_html(&text)
            );
            let mut b = MimeBundle::new();
            b.insert("text/html".into(), json!(html));
            b.insert("text/plain".into(), json!(text));
            (b, lag == 0 && state == kestrel_engine::SourceState::Live)
        };
        let (first, done) = status(&live);
        let nothing_to_read = done
            && live
                .counters
                .consumed
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0;
        if nothing_to_read {
            return; // the confirmation already says "caught up"
        }
        out.display(first, Some(&display_id));
        if done {
            return;
        }
        let gate = Arc::new(Mutex::new(true));
        let open = gate.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (b, done) = status(&live);
                if !through(&open, || out.update_display(b, &display_id)) {
                    return;
                }
                if done || live.stopped() || started.elapsed() > Duration::from_secs(600) {
                    return;
                }
            }
        });
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        r.push(Running {
            query: format!("catch-up {table}"),
            task,
            gate,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse() {
        assert_eq!(
            parse_args("2s").unwrap(),
            WatchArgs::Start {
                every: Duration::from_secs(2),
                limit: DEFAULT_LIMIT
            }
        );
        assert_eq!(
            parse_args("500ms for=1m").unwrap(),
            WatchArgs::Start {
                every: Duration::from_millis(500),
                limit: Duration::from_secs(60)
            }
        );
        assert_eq!(parse_args("stop").unwrap(), WatchArgs::Stop);
        assert!(parse_args("soon").unwrap_err().contains("not an interval"));
        assert_eq!(
            parse_args("").unwrap(),
            WatchArgs::Start {
                every: Duration::from_secs(1),
                limit: DEFAULT_LIMIT
            }
        );
    }
}
