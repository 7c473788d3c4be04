//! The SQL interpreter: cells go to the engine, outcomes come back as rendered tables or error messages.
//!
//! A cell may start with a magic line (`%%sql`, the default). Magics of later capabilities plug in here.

use crate::plot;
use crate::protocol::{
    CompleteOutcome, ExecuteOutcome, Interpreter, IsComplete, KernelInfo, MimeBundle, Publisher,
};
use crate::render;
use crate::rust::RustCells;
use crate::watch::{self, WatchArgs, Watches};
use kestrel_engine::{count_rows, input_state, Engine, InputState, Outcome, Progress, RunOptions};
use serde_json::{json, Map};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cell running longer than this shows a progress line, updated in place until the result replaces it.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Rows of a result shown in a notebook; the rest are counted, not kept or sent.
pub const DISPLAY_ROWS: usize = 50;

pub struct SqlKernel {
    engine: Engine,
    watches: Watches,
    rust: RustCells,
}

impl SqlKernel {
    /// A kernel on `engine`; with `warm_rust`, evcxr starts in the background now rather than at the first
    /// `%%rust` cell.
    pub fn new(engine: Engine, warm_rust: bool) -> Self {
        Self {
            rust: RustCells::new(engine.clone(), warm_rust),
            engine,
            watches: Watches::default(),
        }
    }

    /// `%%plot KIND ...` then a query: the engine reduces the result, plotters draws it as SVG.
    async fn plot(&self, args: &str, body: &str, out: Publisher) -> ExecuteOutcome {
        let args = match plot::parse_args(args) {
            Ok(a) => a,
            Err(e) => return error("UsageError", e),
        };
        if body.trim().is_empty() {
            return error(
                "UsageError",
                "%%plot needs a query on the lines after it".into(),
            );
        }
        let progress = Arc::new(Progress::default());
        let display = ProgressDisplay::start(out, progress);
        let data = kestrel_plot::plot(&self.engine, body, &args.request).await;
        drop(display);
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                let (ename, evalue, traceback) = render::error_parts(&e);
                return ExecuteOutcome::Error {
                    ename,
                    evalue,
                    traceback,
                };
            }
        };
        match plot::bundle(&data, &args) {
            Ok(bundle) => ExecuteOutcome::Ok(Some(bundle)),
            Err(e) => error("PlotError", e),
        }
    }

    fn live_tables(&self) -> Vec<String> {
        self.engine
            .sources()
            .all()
            .iter()
            .map(|t| format!("{:p}", Arc::as_ptr(t)))
            .collect()
    }
}

/// The "running…" line of a long cell. Dropping it (the cell finished or was interrupted) stops the updates and
/// clears the line as soon as the cell's result or error arrives.
struct ProgressDisplay {
    ticker: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<ProgressState>>,
    out: Publisher,
}

/// Shared by the ticker and the cell: the ticker publishes only while holding it and not `finished`, so no
/// progress line can arrive after the cell has cleared it.
#[derive(Default)]
struct ProgressState {
    shown: bool,
    finished: bool,
}

impl ProgressDisplay {
    fn start(out: Publisher, progress: Arc<Progress>) -> Self {
        let state = Arc::new(Mutex::new(ProgressState::default()));
        let ticker = tokio::spawn({
            let (out, state) = (out.clone(), state.clone());
            async move {
                let started = Instant::now();
                tokio::time::sleep(PROGRESS_AFTER).await;
                let display_id = uuid::Uuid::new_v4().to_string();
                loop {
                    let bundle = progress_bundle(&progress, started.elapsed());
                    {
                        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                        if state.finished {
                            return;
                        }
                        if state.shown {
                            out.update_display(bundle, &display_id);
                        } else {
                            out.display(bundle, Some(&display_id));
                            state.shown = true;
                        }
                    }
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
            }
        });
        Self { ticker, state, out }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.ticker.abort();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.finished = true;
        if state.shown {
            self.out.clear_output(true);
        }
    }
}

fn progress_bundle(progress: &Progress, elapsed: Duration) -> MimeBundle {
    let (statement, statements) = progress.statement();
    let mut text = format!("running… {}", render::format_elapsed(elapsed));
    if statements > 1 {
        text = format!("statement {statement} of {statements}: {text}");
    }
    if let Some(detail) = progress.detail() {
        text.push_str(&format!(" · {detail}"));
    } else if progress.rows() > 0 {
        text.push_str(&format!(" · {} so far", count_rows(progress.rows())));
    }
    let mut bundle = Map::new();
    bundle.insert(
        "text/html".into(),
        json!(format!(
            "<div class=\"kestrel-progress\" style=\"color:#888\">{}</div>",
            render::escape_html(&text)
        )),
    );
    bundle.insert("text/plain".into(), json!(text));
    bundle
}

/// Splits a leading `%%magic args` line off a cell.
pub(crate) fn split_magic(code: &str) -> (Option<(&str, &str)>, &str) {
    let trimmed = code.trim_start();
    let Some(rest) = trimmed.strip_prefix("%%") else {
        return (None, code);
    };
    // The body keeps the magic line's newline, so that error positions ("Line: 2") match the cell.
    let (line, body) = match rest.find('\n') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (name, args) = line
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((line.trim(), ""));
    (Some((name, args.trim())), body)
}

fn text_bundle(text: &str) -> MimeBundle {
    let mut bundle = Map::new();
    bundle.insert("text/plain".into(), json!(text));
    bundle
}

fn error(ename: &str, evalue: String) -> ExecuteOutcome {
    ExecuteOutcome::Error {
        ename: ename.to_string(),
        evalue,
        traceback: vec![],
    }
}

impl Interpreter for SqlKernel {
    fn kernel_info(&self) -> KernelInfo {
        KernelInfo {
            implementation: "kestrel".into(),
            implementation_version: env!("CARGO_PKG_VERSION").into(),
            language_info: json!({
                "name": "sql",
                "version": datafusion::DATAFUSION_VERSION,
                "mimetype": "text/x-sql",
                "file_extension": ".sql",
                "pygments_lexer": "sql",
                "codemirror_mode": "sql",
                "nbconvert_exporter": "script",
            }),
            banner: format!(
                "Kestrel {} — SQL on Apache DataFusion {}",
                env!("CARGO_PKG_VERSION"),
                datafusion::DATAFUSION_VERSION
            ),
            help_links: json!([
                { "text": "DataFusion SQL reference", "url": "https://datafusion.apache.org/user-guide/sql/index.html" }
            ]),
        }
    }

    async fn execute(&self, code: String, out: Publisher) -> ExecuteOutcome {
        let (magic, body) = split_magic(&code);
        match magic {
            None | Some(("sql", _)) => {}
            Some(("watch", args)) => {
                return match watch::parse_args(args) {
                    Ok(WatchArgs::Stop) => {
                        let n = self.watches.stop_all();
                        ExecuteOutcome::Ok(Some(text_bundle(&format!(
                            "stopped {n} watch{}",
                            if n == 1 { "" } else { "es" }
                        ))))
                    }
                    Ok(WatchArgs::Start { every, limit }) => {
                        if body.trim().is_empty() {
                            return error(
                                "UsageError",
                                "%%watch needs a query on the lines after it".into(),
                            );
                        }
                        match self
                            .watches
                            .start(self.engine.clone(), body.to_string(), every, limit, out)
                            .await
                        {
                            Ok(()) => ExecuteOutcome::Ok(None),
                            Err(e) => error("WatchError", e),
                        }
                    }
                    Err(e) => error("UsageError", e),
                };
            }
            Some(("plot", args)) => return self.plot(args, body, out).await,
            Some(("rust", _)) => return self.rust.execute(body, out).await,
            Some((name, _)) => {
                return error(
                    "UsageError",
                    format!(
                        "unknown cell magic %%{name}; available: %%sql, %%rust, %%plot, %%watch"
                    ),
                );
            }
        }
        let before = self.live_tables();
        let progress = Arc::new(Progress::default());
        let opts = RunOptions::preview(DISPLAY_ROWS).with_progress(progress.clone());
        let display = ProgressDisplay::start(out.clone(), progress);
        let result = self.engine.run_cell(body, &opts).await;
        drop(display);
        // A new live table shows how it catches up with its topic, in place, while later cells run.
        for t in self.engine.sources().all() {
            if !before.contains(&format!("{:p}", Arc::as_ptr(&t))) {
                self.watches.catch_up(&self.engine, &t.name, out.clone());
            }
        }
        match result {
            Ok(None) => ExecuteOutcome::Ok(None),
            Ok(Some(Outcome::Rows(result))) => {
                ExecuteOutcome::Ok(Some(render::query_bundle(&result)))
            }
            Ok(Some(Outcome::Done(done))) => {
                ExecuteOutcome::Ok(Some(render::confirmation_bundle(&done)))
            }
            Err(e) => {
                let (ename, evalue, traceback) = render::error_parts(&e);
                ExecuteOutcome::Error {
                    ename,
                    evalue,
                    traceback,
                }
            }
        }
    }

    async fn complete(&self, code: String, cursor: usize) -> CompleteOutcome {
        if let (Some(("rust", _)), body) = split_magic(&code) {
            // evcxr completes the cell's body; offsets move by the magic line.
            let offset = code.len() - body.len();
            if cursor < offset {
                return CompleteOutcome::default();
            }
            let mut c = self.rust.complete(body, cursor - offset).await;
            c.start += offset;
            c.end += offset;
            return c;
        }
        let c = self.engine.complete(&code, cursor).await;
        CompleteOutcome {
            matches: c.matches(),
            start: c.start,
            end: c.end,
            types: c
                .candidates
                .iter()
                .map(|c| {
                    (
                        c.text.clone(),
                        c.kind.name().to_string(),
                        c.detail.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    async fn inspect(&self, code: String, cursor: usize) -> Option<MimeBundle> {
        let found = self.engine.inspect(&code, cursor).await?;
        let mut bundle = Map::new();
        bundle.insert("text/plain".into(), json!(found.plain));
        bundle.insert("text/markdown".into(), json!(found.markdown));
        Some(bundle)
    }

    fn interrupt(&self) {
        self.engine.interrupt();
        self.watches.stop_all();
        self.rust.interrupt();
    }

    fn is_complete(&self, code: &str) -> IsComplete {
        let (magic, body) = split_magic(code);
        if matches!(magic, Some(("rust", _))) {
            return IsComplete::Complete;
        }
        match input_state(body) {
            InputState::Complete => IsComplete::Complete,
            InputState::Incomplete => IsComplete::Incomplete,
            InputState::Invalid => IsComplete::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_lines_are_split_off() {
        assert_eq!(split_magic("SELECT 1"), (None, "SELECT 1"));
        assert_eq!(
            split_magic("%%sql\nSELECT 1"),
            (Some(("sql", "")), "\nSELECT 1")
        );
        assert_eq!(
            split_magic("  %%plot line x=a\nSELECT a"),
            (Some(("plot", "line x=a")), "\nSELECT a")
        );
        assert_eq!(split_magic("%%sql"), (Some(("sql", "")), ""));
    }
}
