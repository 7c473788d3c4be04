//! `%%rust` cells: evcxr embedded as a library, on one thread that owns its context.
//!
//! - The context starts in the background when the kernel starts (unless `KESTREL_RUST_WARMUP=0`, then on the
//!   first `%%rust` cell) and loads the `kestrel` crate and `arrow`, so the first cell does not pay evcxr's cold
//!   start. evcxr's build cache (`:cache`, in the user's cache directory) keeps compiled dependencies between
//!   kernel starts.
//! - User code runs in evcxr's child process (this binary again, see `evcxr::runtime_hook` in `main`); its
//!   stdout/stderr lines stream to the running cell as they arrive.
//! - Interrupt kills the child process: evcxr starts a new one, Rust variables are lost, SQL tables are not.
//! - `kestrel::sql` / `kestrel::register` reach the kernel's engine through [`bridge`].

pub mod bridge;

use crate::protocol::{CompleteOutcome, ExecuteOutcome, MimeBundle, Publisher};
use evcxr::{CommandContext, Error as EvcxrError, EvalContext};
use kestrel_engine::Engine;
use serde_json::{json, Map};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The `kestrel` crate's sources, written next to evcxr's builds so that the binary needs no source tree.
const CELL_MANIFEST: &str = include_str!("../../cell/Cargo.toml");
const CELL_LIB: &str = include_str!("../../cell/src/lib.rs");
/// The arrow that `kestrel` uses, also available to cells as `arrow::...`.
const ARROW_DEP: &str =
    r#"{ version = "=59.3.2", default-features = false, features = ["ipc", "prettyprint"] }"#;
/// evcxr's build cache, in MiB.
const CACHE_MIB: u64 = 4096;

/// This kernel's private directory for Rust cells: the bridge's socket and evcxr's build directory (which holds a
/// copy of every compiled dependency, hundreds of MB). Named by the process id, so that a later kernel can remove
/// the directory of one that was killed.
pub fn session_dir() -> PathBuf {
    std::env::temp_dir().join(format!("kestrel-{}", std::process::id()))
}

/// Before the kernel starts threads: evcxr builds in [`session_dir`] (unless the user set `EVCXR_TMPDIR`),
/// instead of a temporary directory it would remove only when its context is dropped, which a kernel shutting
/// down never does.
pub fn prepare_environment() {
    if std::env::var_os("EVCXR_TMPDIR").is_none() {
        // Safety of set_var: called from main before any other thread exists.
        std::env::set_var("EVCXR_TMPDIR", session_dir().join("evcxr"));
    }
}

/// Removes this kernel's directory, and those of kernels that died without removing theirs.
pub fn clean_up(including_own: bool) {
    let own = session_dir();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("kestrel-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let dead = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if (path == own && including_own) || (path != own && dead) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

enum Job {
    Eval {
        code: String,
        reply: oneshot::Sender<ExecuteOutcome>,
    },
    Complete {
        code: String,
        cursor: usize,
        reply: oneshot::Sender<CompleteOutcome>,
    },
}

/// State shared by the kernel, the evcxr thread and the output threads.
#[derive(Default)]
struct Shared {
    /// Where the child's output goes: the running (or last) Rust cell.
    out: Mutex<Option<Publisher>>,
    /// Held while output lines are being published, so a cell's reply waits for its last lines.
    publishing: Mutex<()>,
    child: Mutex<Option<Arc<Mutex<std::process::Child>>>>,
    /// True while user code may be running.
    running: AtomicBool,
    interrupted: AtomicBool,
    /// The message of a panic in the running cell (evcxr reports such a cell as a success).
    panic: Mutex<Option<String>>,
    /// Why the context could not start (shown by every later cell).
    failed: Mutex<Option<String>>,
    ready: AtomicBool,
}

pub struct RustCells {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    shared: Arc<Shared>,
    engine: Engine,
    bridge: Mutex<Option<bridge::Bridge>>,
}

impl RustCells {
    /// Rust cells for `engine`; with `warm`, evcxr starts now in the background.
    pub fn new(engine: Engine, warm: bool) -> Self {
        let cells = Self {
            jobs: Mutex::new(None),
            shared: Arc::new(Shared::default()),
            engine,
            bridge: Mutex::new(None),
        };
        if warm {
            if let Err(e) = cells.start() {
                eprintln!("kestrel: Rust cells cannot start: {e}");
            }
        }
        cells
    }

    /// Whether the evcxr context has started and loaded `kestrel`.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    /// Starts the evcxr thread (once).
    fn start(&self) -> Result<mpsc::Sender<Job>, String> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = jobs.as_ref() {
            return Ok(tx.clone());
        }
        let bridge = bridge::Bridge::start(self.engine.clone(), &session_dir())
            .map_err(|e| format!("cannot open the socket for kestrel::sql: {e}"))?;
        let socket = bridge.path().to_path_buf();
        *self.bridge.lock().unwrap_or_else(|p| p.into_inner()) = Some(bridge);
        let (tx, rx) = mpsc::channel();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("kestrel-rust".into())
            .spawn(move || worker(rx, shared, socket))
            .map_err(|e| format!("cannot start the Rust thread: {e}"))?;
        *jobs = Some(tx.clone());
        Ok(tx)
    }

    pub async fn execute(&self, code: &str, out: Publisher) -> ExecuteOutcome {
        let tx = match self.start() {
            Ok(tx) => tx,
            Err(e) => return error("RustError", e, vec![]),
        };
        if !self.is_ready()
            && self
                .shared
                .failed
                .lock()
                .map(|f| f.is_none())
                .unwrap_or(true)
        {
            out.stream(
                "stderr",
                "waiting for the Rust context to start (evcxr; the first start on a machine also compiles \
                 arrow into evcxr's build cache, which takes a few minutes)…\n",
            );
        }
        *self.shared.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
        let (reply, answer) = oneshot::channel();
        if tx
            .send(Job::Eval {
                code: code.to_string(),
                reply,
            })
            .is_err()
        {
            return self.gone();
        }
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) => self.gone(),
        }
    }

    fn gone(&self) -> ExecuteOutcome {
        let why = self
            .shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the Rust thread stopped".into());
        error("RustError", why, vec![])
    }

    /// evcxr's completions; nothing while a cell runs (the context is busy) or before it has started.
    pub async fn complete(&self, code: &str, cursor: usize) -> CompleteOutcome {
        let tx = {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            match jobs.as_ref() {
                Some(tx) if self.is_ready() && !self.shared.running.load(Ordering::Relaxed) => {
                    tx.clone()
                }
                _ => return CompleteOutcome::default(),
            }
        };
        let (reply, answer) = oneshot::channel();
        let job = Job::Complete {
            code: code.to_string(),
            cursor,
            reply,
        };
        if tx.send(job).is_err() {
            return CompleteOutcome::default();
        }
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default()
    }

    /// Stops running user code by killing evcxr's child process.
    pub fn interrupt(&self) {
        if !self.shared.running.load(Ordering::Relaxed) {
            return;
        }
        self.shared.interrupted.store(true, Ordering::Relaxed);
        let child = self
            .shared
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(child) = child {
            let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
        }
    }
}

fn error(ename: &str, evalue: String, traceback: Vec<String>) -> ExecuteOutcome {
    ExecuteOutcome::Error {
        ename: ename.into(),
        evalue,
        traceback,
    }
}

/// Writes the `kestrel` crate under the user's cache directory (only when it changed, so evcxr's cache of it
/// stays valid) and returns its directory.
fn write_cell_crate() -> std::io::Result<PathBuf> {
    let base = dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("kestrel")
        .join("cell");
    std::fs::create_dir_all(base.join("src"))?;
    for (file, text) in [("Cargo.toml", CELL_MANIFEST), ("src/lib.rs", CELL_LIB)] {
        let path = base.join(file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            // Other kernels may read it meanwhile: write a new file and rename it into place.
            let tmp = base.join(format!("{file}.{}", std::process::id()));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(base)
}

/// Forwards the child's output lines to the running cell, several lines to a message when they come fast.
fn pass_through(
    name: &'static str,
    lines: crossbeam_channel::Receiver<String>,
    shared: Arc<Shared>,
) {
    std::thread::Builder::new()
        .name(format!("kestrel-rust-{name}"))
        .spawn(move || {
            while let Ok(first) = lines.recv() {
                let _publishing = shared.publishing.lock().unwrap_or_else(|p| p.into_inner());
                let mut text = String::new();
                let mut next = Some(first);
                while let Some(line) = next.take() {
                    if let Some(message) = line.strip_prefix(kestrel::PANIC_MARKER) {
                        let message = message.replace("\\n", "\n").replace("\\\\", "\\");
                        *shared.panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                    } else {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    if text.len() < 64 * 1024 {
                        next = lines.try_recv().ok();
                    }
                }
                if text.is_empty() {
                    continue;
                }
                let out = shared.out.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match out {
                    Some(out) => out.stream(name, &text),
                    None => eprint!("{text}"),
                }
            }
        })
        .ok();
}

/// Starts evcxr with the bridge's socket in the child's environment and loads `kestrel` and `arrow`.
fn start_context(shared: &Arc<Shared>, socket: &std::path::Path) -> Result<CommandContext, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the kestrel binary: {e}"))?;
    let mut child = std::process::Command::new(exe);
    child.env(kestrel::BRIDGE_ENV, socket);
    let (context, outputs) = EvalContext::with_subprocess_command(child)
        .map_err(|e| format!("evcxr cannot start: {e}"))?;
    pass_through("stdout", outputs.stdout, shared.clone());
    pass_through("stderr", outputs.stderr, shared.clone());
    *shared.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(context.process_handle());
    let mut context = CommandContext::with_eval_context(context);
    let cell = write_cell_crate().map_err(|e| format!("cannot write the kestrel crate: {e}"))?;
    let setup = format!(
        ":cache {CACHE_MIB}\n:dep kestrel = {{ path = {path:?} }}\n:dep arrow = {ARROW_DEP}\n\
         kestrel::__cell_start();",
        path = cell.display().to_string()
    );
    context
        .execute(&setup)
        .map_err(|e| format!("cannot load the kestrel crate into evcxr: {}", plain(&e)))?;
    // A cell that defines a variable takes evcxr a few more seconds the first time (type inference starts up):
    // pay that here too.
    context
        .execute("let kestrel_ready = true;")
        .map_err(|e| format!("evcxr cannot run a first cell: {}", plain(&e)))?;
    Ok(context)
}

fn worker(jobs: mpsc::Receiver<Job>, shared: Arc<Shared>, socket: PathBuf) {
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        start_context(&shared, &socket)
    }));
    let mut context = match started {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(&shared, jobs, e),
        Err(_) => return fail(&shared, jobs, "evcxr panicked while starting".into()),
    };
    shared.ready.store(true, Ordering::Relaxed);
    let pid = |shared: &Shared| {
        shared
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).id())
    };
    let mut hooked = pid(&shared);
    for job in jobs {
        match job {
            Job::Eval { code, reply } => {
                // evcxr starts a new child process after an interrupt or a crash: panics must be reported there too.
                if pid(&shared) != hooked {
                    let _ = context.execute("kestrel::__cell_start();");
                    hooked = pid(&shared);
                }
                shared.interrupted.store(false, Ordering::Relaxed);
                *shared.panic.lock().unwrap_or_else(|p| p.into_inner()) = None;
                shared.running.store(true, Ordering::Relaxed);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    context.execute(&code)
                }));
                shared.running.store(false, Ordering::Relaxed);
                // The last output lines are published before the reply.
                drop(shared.publishing.lock().unwrap_or_else(|p| p.into_inner()));
                let panic = shared
                    .panic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let outcome = match result {
                    Ok(Ok(_)) if panic.is_some() => {
                        let message = panic.unwrap_or_default();
                        error(
                            "RustPanic",
                            message.clone(),
                            vec![
                                format!("\x1b[31mthe cell panicked\x1b[0m: {message}"),
                                "variables defined in this cell were not kept; earlier ones and every SQL table \
                                 are"
                                    .into(),
                            ],
                        )
                    }
                    Ok(Ok(outputs)) => ExecuteOutcome::Ok(bundle(outputs.content_by_mime_type)),
                    Ok(Err(e)) => failure(&e, shared.interrupted.load(Ordering::Relaxed)),
                    Err(_) => error(
                        "RustError",
                        "evcxr panicked while running the cell; the Rust context may have lost its variables".into(),
                        vec![],
                    ),
                };
                let _ = reply.send(outcome);
            }
            Job::Complete {
                code,
                cursor,
                reply,
            } => {
                let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    context.completions(&code, cursor)
                }));
                let outcome = match found {
                    Ok(Ok(c)) => CompleteOutcome {
                        matches: c.completions.iter().map(|c| c.code.clone()).collect(),
                        start: c.start_offset,
                        end: c.end_offset,
                        types: c
                            .completions
                            .iter()
                            .map(|c| (c.code.clone(), c.kind.to_string(), c.label.clone()))
                            .collect(),
                    },
                    _ => CompleteOutcome::default(),
                };
                let _ = reply.send(outcome);
            }
        }
    }
}

/// The context could not start: every cell (queued or later) gets the reason.
fn fail(shared: &Shared, jobs: mpsc::Receiver<Job>, why: String) {
    *shared.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
    for job in jobs {
        if let Job::Eval { reply, .. } = job {
            let _ = reply.send(error("RustError", why.clone(), vec![]));
        }
    }
}

fn bundle(content: std::collections::HashMap<String, String>) -> Option<MimeBundle> {
    if content.is_empty() {
        return None;
    }
    let mut b = Map::new();
    for (mime, text) in content {
        let value = if mime.contains("json") {
            serde_json::from_str(&text).unwrap_or(json!(text))
        } else {
            json!(text)
        };
        b.insert(mime, value);
    }
    Some(b)
}

/// An evcxr error in one line.
fn plain(e: &EvcxrError) -> String {
    match e {
        EvcxrError::CompilationErrors(errors) => errors
            .iter()
            .map(|e| e.message())
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// An evcxr error as a Jupyter error: rustc's messages with the cell's lines and a caret under each span.
fn failure(e: &EvcxrError, interrupted: bool) -> ExecuteOutcome {
    match e {
        EvcxrError::CompilationErrors(errors) => {
            let mut traceback = Vec::new();
            for err in errors {
                let code_tag = err.code().map(|c| format!("[{c}]")).unwrap_or_default();
                traceback.push(format!("\x1b[31merror{code_tag}\x1b[0m: {}", err.message()));
                for m in err.spanned_messages() {
                    if let Some(span) = &m.span {
                        traceback.push(format!("  --> cell line {}:{}", span.start_line, span.start_column));
                        for (i, line) in m.lines.iter().enumerate() {
                            traceback.push(format!("   | {line}"));
                            if i == 0 {
                                let width = if span.end_line == span.start_line {
                                    span.end_column.saturating_sub(span.start_column).max(1)
                                } else {
                                    line.chars().count().saturating_sub(span.start_column - 1).max(1)
                                };
                                traceback.push(format!(
                                    "   | {}\x1b[31m{}\x1b[0m {}",
                                    " ".repeat(span.start_column.saturating_sub(1)),
                                    "^".repeat(width),
                                    m.label
                                ));
                            }
                        }
                    } else if !m.label.is_empty() {
                        traceback.push(format!("   = {}", m.label));
                    }
                }
                for help in err.help() {
                    traceback.push(format!("   = help: {help}"));
                }
            }
            let evalue = errors
                .first()
                .map(|e| e.message())
                .unwrap_or_else(|| "compilation failed".into());
            error("CompileError", evalue, traceback)
        }
        EvcxrError::SubprocessTerminated(msg) if interrupted => error(
            "KeyboardInterrupt",
            "the Rust cell was interrupted; evcxr restarted its process, so Rust variables are gone (SQL tables \
             are untouched)"
                .into(),
            vec![msg.clone()],
        ),
        EvcxrError::SubprocessTerminated(msg) => error(
            "RustPanic",
            format!("{}; evcxr restarted its process, so Rust variables are gone", msg.trim()),
            vec![],
        ),
        EvcxrError::TypeRedefinedVariablesLost(vars) => error(
            "RustError",
            format!(
                "variables lost because their types were redefined: {}",
                vars.join(", ")
            ),
            vec![],
        ),
        EvcxrError::Message(m) => error("RustError", m.clone(), vec![]),
    }
}
