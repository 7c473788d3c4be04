//! The kernel's sockets and message loops.
//!
//! Tasks: a reader per ROUTER socket (shell, control) that verifies and decodes frames into a channel; the IOPub
//! writer ([`super::publisher`]); the heartbeat echo; the control loop (kernel_info, interrupt, shutdown), which
//! keeps answering while a cell runs; and the shell loop, which handles requests in order. A cell runs in its own
//! task so that an interrupt can cancel it and a panic in it becomes an error reply, not a dead kernel.

use super::history::History;
use super::publisher::{IopubCommand, Publisher};
use super::wire::{self, Decoder, Message, Signer, PROTOCOL_VERSION};
use super::{byte_to_char, char_to_byte, ExecuteOutcome, Interpreter, IsComplete};
use anyhow::Context;
use futures::FutureExt;
use jupyter_protocol::ConnectionInfo;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

fn log(msg: impl std::fmt::Display) {
    eprintln!("[kestrel] {msg}");
}

/// State shared by the shell and control loops.
struct Shared<I> {
    interpreter: I,
    session: String,
    signer: Signer,
    iopub: mpsc::UnboundedSender<IopubCommand>,
    /// The running cell, for interrupt.
    running: Mutex<Option<AbortHandle>>,
    shutdown: watch::Sender<bool>,
}

impl<I: Interpreter> Shared<I> {
    fn publisher(&self, parent: &Message) -> Publisher {
        Publisher::new(
            self.iopub.clone(),
            self.session.clone(),
            parent.header.clone(),
        )
    }

    fn interrupt(&self) -> bool {
        self.interpreter.interrupt();
        let guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }
}

type RouterSend = zeromq::RouterSendHalf;

async fn send(sock: &mut RouterSend, signer: &Signer, msg: &Message) {
    let frames = wire::encode(signer, msg);
    match ZmqMessage::try_from(frames) {
        Ok(zmsg) => {
            if let Err(e) = sock.send(zmsg).await {
                log(format!("cannot send {}: {e}", msg.header["msg_type"]));
            }
        }
        Err(e) => log(format!("cannot frame {}: {e}", msg.header["msg_type"])),
    }
}

/// Reads a ROUTER socket, dropping (and logging) anything that is not a correctly signed message.
fn spawn_reader(
    name: &'static str,
    mut sock: zeromq::RouterRecvHalf,
    decoder: Arc<Decoder>,
) -> mpsc::UnboundedReceiver<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match sock.recv().await {
                Ok(zmsg) => match decoder.decode(zmsg.into_vec()) {
                    Ok(msg) => {
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    Err(e) => log(format!("dropped a message on {name}: {e}")),
                },
                Err(e) => {
                    log(format!("{name} socket closed: {e}"));
                    break;
                }
            }
        }
    });
    rx
}

/// Runs the kernel described by `connection_file` until a shutdown request.
pub async fn serve<I: Interpreter>(
    connection_file: PathBuf,
    interpreter: I,
    history: Option<PathBuf>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&connection_file)
        .with_context(|| format!("cannot read connection file {}", connection_file.display()))?;
    let info: ConnectionInfo = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a Jupyter connection file",
            connection_file.display()
        )
    })?;
    let signer = Signer::new(&info.signature_scheme, &info.key).map_err(anyhow::Error::msg)?;
    let decoder = Arc::new(Decoder::new(signer.clone()));

    let mut shell = zeromq::RouterSocket::new();
    shell
        .bind(&info.shell_url())
        .await
        .context("binding the shell socket")?;
    let mut control = zeromq::RouterSocket::new();
    control
        .bind(&info.control_url())
        .await
        .context("binding the control socket")?;
    let mut stdin = zeromq::RouterSocket::new();
    stdin
        .bind(&info.stdin_url())
        .await
        .context("binding the stdin socket")?;
    let mut iopub = zeromq::PubSocket::new();
    iopub
        .bind(&info.iopub_url())
        .await
        .context("binding the iopub socket")?;
    let mut heartbeat = zeromq::RepSocket::new();
    heartbeat
        .bind(&info.hb_url())
        .await
        .context("binding the heartbeat socket")?;

    // IOPub writer.
    let (iopub_tx, mut iopub_rx) = mpsc::unbounded_channel::<IopubCommand>();
    let iopub_signer = signer.clone();
    tokio::spawn(async move {
        while let Some(cmd) = iopub_rx.recv().await {
            match cmd {
                IopubCommand::Send(msg) => {
                    if let Ok(zmsg) = ZmqMessage::try_from(wire::encode(&iopub_signer, &msg)) {
                        if let Err(e) = iopub.send(zmsg).await {
                            log(format!("iopub send failed: {e}"));
                        }
                    }
                }
                IopubCommand::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    });

    // Heartbeat: echo whatever arrives.
    tokio::spawn(async move {
        while let Ok(ping) = heartbeat.recv().await {
            if heartbeat.send(ping).await.is_err() {
                break;
            }
        }
    });
    // Nothing is ever asked on stdin (SQL cells do not prompt), but clients connect to it.
    let _stdin = stdin;

    let (shell_send, shell_recv) = shell.split();
    let (control_send, control_recv) = control.split();
    let shell_rx = spawn_reader("shell", shell_recv, decoder.clone());
    let control_rx = spawn_reader("control", control_recv, decoder);

    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        interpreter,
        session: uuid::Uuid::new_v4().to_string(),
        signer,
        iopub: iopub_tx,
        running: Mutex::new(None),
        shutdown: shutdown_tx,
    });
    Publisher::new(shared.iopub.clone(), shared.session.clone(), json!({})).status("starting");

    tokio::spawn(control_loop(shared.clone(), control_send, control_rx));
    // A SIGINT (interrupt_mode "signal", or Ctrl-C in a terminal) interrupts the running cell; it never kills.
    let sigint_shared = shared.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            sigint_shared.interrupt();
        }
    });

    let history = History::open(history);
    tokio::select! {
        _ = shell_loop(shared.clone(), shell_send, shell_rx, history) => {}
        _ = shutdown_rx.wait_for(|&stop| stop) => {}
    }
    shared.interrupt();
    Publisher::new(shared.iopub.clone(), shared.session.clone(), json!({}))
        .flush()
        .await;
    Ok(())
}

fn kernel_info_content<I: Interpreter>(shared: &Shared<I>) -> Value {
    let info = shared.interpreter.kernel_info();
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": info.implementation,
        "implementation_version": info.implementation_version,
        "language_info": info.language_info,
        "banner": info.banner,
        "help_links": info.help_links,
        "debugger": false,
    })
}

async fn control_loop<I: Interpreter>(
    shared: Arc<Shared<I>>,
    mut sock: RouterSend,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(msg) = rx.recv().await {
        let out = shared.publisher(&msg);
        out.status("busy");
        let session = &shared.session;
        match msg.msg_type() {
            "kernel_info_request" => {
                send(
                    &mut sock,
                    &shared.signer,
                    &msg.reply(session, "kernel_info_reply", kernel_info_content(&shared)),
                )
                .await;
            }
            "interrupt_request" => {
                let interrupted = shared.interrupt();
                log(if interrupted {
                    "interrupt: cancelling the running cell"
                } else {
                    "interrupt: nothing running"
                });
                send(
                    &mut sock,
                    &shared.signer,
                    &msg.reply(session, "interrupt_reply", json!({ "status": "ok" })),
                )
                .await;
            }
            "shutdown_request" => {
                let restart = msg
                    .content
                    .get("restart")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let content = json!({ "status": "ok", "restart": restart });
                send(
                    &mut sock,
                    &shared.signer,
                    &msg.reply(session, "shutdown_reply", content.clone()),
                )
                .await;
                out.send("shutdown_reply", content);
                out.status("idle");
                out.flush().await;
                let _ = shared.shutdown.send(true);
                return;
            }
            other => {
                log(format!("unsupported control request '{other}'"));
                let reply_type = other.replace("_request", "_reply");
                let content = json!({ "status": "error", "ename": "NotSupported", "evalue": format!("{other} is not supported by this kernel"), "traceback": [] });
                send(
                    &mut sock,
                    &shared.signer,
                    &msg.reply(session, &reply_type, content),
                )
                .await;
            }
        }
        out.status("idle");
    }
}

struct ShellState {
    execution_count: i64,
    history: History,
}

async fn shell_loop<I: Interpreter>(
    shared: Arc<Shared<I>>,
    mut sock: RouterSend,
    mut rx: mpsc::UnboundedReceiver<Message>,
    history: History,
) {
    let mut state = ShellState {
        execution_count: 0,
        history,
    };
    // Requests that were already queued when a cell failed: their execute requests are aborted, not run.
    let mut aborting: VecDeque<Message> = VecDeque::new();
    loop {
        let (msg, abort) = match aborting.pop_front() {
            Some(msg) => (msg, true),
            None => match rx.recv().await {
                Some(msg) => (msg, false),
                None => return,
            },
        };
        if abort && msg.msg_type() == "execute_request" {
            let out = shared.publisher(&msg);
            out.status("busy");
            let content = json!({ "status": "aborted", "execution_count": state.execution_count, "user_expressions": {}, "payload": [] });
            send(
                &mut sock,
                &shared.signer,
                &msg.reply(&shared.session, "execute_reply", content),
            )
            .await;
            out.status("idle");
            continue;
        }
        aborting.extend(handle_shell(&shared, &mut sock, &msg, &mut state, &mut rx).await);
    }
}

/// Everything already received: the requests a client sent before it could know that a cell failed.
fn queued_now(rx: &mut mpsc::UnboundedReceiver<Message>) -> Vec<Message> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// Handles one shell request. When it is a cell that failed with stop_on_error, returns the requests queued
/// behind it (taken before the failure is replied, so that none sent after the client learnt of it is included).
async fn handle_shell<I: Interpreter>(
    shared: &Arc<Shared<I>>,
    sock: &mut RouterSend,
    msg: &Message,
    state: &mut ShellState,
    rx: &mut mpsc::UnboundedReceiver<Message>,
) -> Vec<Message> {
    let out = shared.publisher(msg);
    out.status("busy");
    let session = shared.session.as_str();
    let mut queued = Vec::new();
    let reply = match msg.msg_type() {
        "kernel_info_request" => {
            Some(("kernel_info_reply".to_string(), kernel_info_content(shared)))
        }
        "execute_request" => {
            let (content, stop) = execute(shared, msg, &out, state).await;
            if stop {
                tokio::task::yield_now().await;
                queued = queued_now(rx);
            }
            Some(("execute_reply".to_string(), content))
        }
        "complete_request" => {
            let code = msg.str_field("code").to_string();
            let cursor = cursor_of(msg, &code);
            let content = match guarded(
                "completion",
                shared.interpreter.complete(code.clone(), cursor),
            )
            .await
            {
                Ok(c) => {
                    let (start, end) = (byte_to_char(&code, c.start), byte_to_char(&code, c.end));
                    let types: Vec<Value> = c
                        .types
                        .iter()
                        .map(|(text, kind, signature)| {
                            json!({ "start": start, "end": end, "text": text, "type": kind, "signature": signature })
                        })
                        .collect();
                    json!({
                        "status": "ok",
                        "matches": c.matches,
                        "cursor_start": start,
                        "cursor_end": end,
                        "metadata": { "_jupyter_types_experimental": types },
                    })
                }
                Err(error) => error,
            };
            Some(("complete_reply".to_string(), content))
        }
        "inspect_request" => {
            let code = msg.str_field("code").to_string();
            let cursor = cursor_of(msg, &code);
            let content = match guarded("inspection", shared.interpreter.inspect(code, cursor))
                .await
            {
                Ok(found) => {
                    json!({ "status": "ok", "found": found.is_some(), "data": found.unwrap_or_default(), "metadata": {} })
                }
                Err(error) => error,
            };
            Some(("inspect_reply".to_string(), content))
        }
        "is_complete_request" => {
            let status = match guarded("is_complete", async {
                shared.interpreter.is_complete(msg.str_field("code"))
            })
            .await
            {
                Ok(IsComplete::Complete) => json!({ "status": "complete" }),
                Ok(IsComplete::Incomplete) => json!({ "status": "incomplete", "indent": "" }),
                Ok(IsComplete::Invalid) => json!({ "status": "invalid" }),
                Err(_) => json!({ "status": "unknown" }),
            };
            Some(("is_complete_reply".to_string(), status))
        }
        "history_request" => Some((
            "history_reply".to_string(),
            history_reply(&state.history, &msg.content),
        )),
        "comm_info_request" => Some((
            "comm_info_reply".to_string(),
            json!({ "status": "ok", "comms": {} }),
        )),
        "comm_open" => {
            // No comm targets are registered: tell the frontend the comm is closed.
            if let Some(id) = msg.content.get("comm_id") {
                out.send("comm_close", json!({ "comm_id": id, "data": {} }));
            }
            None
        }
        "comm_msg" | "comm_close" => None,
        other => {
            log(format!("unsupported shell request '{other}'"));
            other.strip_suffix("_request").map(|base| {
                let content = json!({ "status": "error", "ename": "NotSupported", "evalue": format!("{other} is not supported by this kernel"), "traceback": [] });
                (format!("{base}_reply"), content)
            })
        }
    };
    if let Some((reply_type, content)) = reply {
        send(
            sock,
            &shared.signer,
            &msg.reply(session, &reply_type, content),
        )
        .await;
    }
    out.status("idle");
    queued
}

/// Runs an interpreter call; a panic in it becomes an error reply instead of taking the kernel down.
async fn guarded<T>(what: &str, call: impl std::future::Future<Output = T>) -> Result<T, Value> {
    match std::panic::AssertUnwindSafe(call).catch_unwind().await {
        Ok(value) => Ok(value),
        Err(payload) => {
            let evalue = format!(
                "{what} panicked: {} (the kernel is still running)",
                panic_message(payload.as_ref())
            );
            log(&evalue);
            Err(
                json!({ "status": "error", "ename": "InternalError", "evalue": evalue, "traceback": [] }),
            )
        }
    }
}

fn cursor_of(msg: &Message, code: &str) -> usize {
    let chars = msg
        .content
        .get("cursor_pos")
        .and_then(Value::as_u64)
        .map_or(code.chars().count(), |c| c as usize);
    char_to_byte(code, chars)
}

/// Runs a cell; returns the execute_reply content and whether queued cells should be aborted.
async fn execute<I: Interpreter>(
    shared: &Arc<Shared<I>>,
    msg: &Message,
    out: &Publisher,
    state: &mut ShellState,
) -> (Value, bool) {
    let code = msg.str_field("code").to_string();
    let flag = |k: &str, default: bool| {
        msg.content
            .get(k)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    };
    let silent = flag("silent", false);
    let store_history = flag("store_history", true) && !silent;
    let stop_on_error = flag("stop_on_error", true);
    if store_history {
        state.execution_count += 1;
        state.history.record(state.execution_count, &code);
    }
    let count = state.execution_count;
    if !silent {
        out.send(
            "execute_input",
            json!({ "code": code, "execution_count": count }),
        );
    }

    // The cell runs in its own task: abortable by interrupt, and a panic in it is caught by the runtime.
    let task = {
        let shared = shared.clone();
        let out = if silent {
            Publisher::new(mpsc::unbounded_channel().0, String::new(), json!({}))
        } else {
            out.clone()
        };
        tokio::spawn(async move { shared.interpreter.execute(code, out).await })
    };
    *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    let started = std::time::Instant::now();
    let outcome = match task.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_cancelled() => ExecuteOutcome::Error {
            ename: "Interrupted".into(),
            evalue: format!(
                "the cell was interrupted after {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            traceback: vec![],
        },
        Err(e) => {
            let what = match e.try_into_panic() {
                Ok(payload) => panic_message(payload.as_ref()),
                Err(e) => e.to_string(),
            };
            ExecuteOutcome::Error {
                ename: "InternalError".into(),
                evalue: format!("the cell panicked: {what} (the kernel is still running)"),
                traceback: vec![],
            }
        }
    };
    *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = None;

    match outcome {
        ExecuteOutcome::Ok(result) => {
            if let (Some(data), false) = (result, silent) {
                out.send(
                    "execute_result",
                    json!({ "execution_count": count, "data": data, "metadata": {} }),
                );
            }
            (
                json!({ "status": "ok", "execution_count": count, "user_expressions": {}, "payload": [] }),
                false,
            )
        }
        ExecuteOutcome::Error {
            ename,
            evalue,
            traceback,
        } => {
            let traceback = if traceback.is_empty() {
                vec![format!("\u{1b}[0;31m{ename}\u{1b}[0m: {evalue}")]
            } else {
                traceback
            };
            if !silent {
                out.send(
                    "error",
                    json!({ "ename": ename, "evalue": evalue, "traceback": traceback }),
                );
            }
            (
                json!({ "status": "error", "execution_count": count, "ename": ename, "evalue": evalue, "traceback": traceback, "user_expressions": {}, "payload": [] }),
                // A silent request (a frontend's probe) never aborts the user's queued cells.
                stop_on_error && !silent,
            )
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

fn history_reply(history: &History, content: &Value) -> Value {
    let output = content
        .get("output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let int = |k: &str| content.get(k).and_then(Value::as_i64);
    let entries = match content
        .get("hist_access_type")
        .and_then(Value::as_str)
        .unwrap_or("tail")
    {
        "range" => history.range(
            int("session").unwrap_or(0),
            int("start").unwrap_or(1),
            int("stop"),
        ),
        "search" => history.search(
            content
                .get("pattern")
                .and_then(Value::as_str)
                .unwrap_or("*"),
            int("n").and_then(|n| usize::try_from(n).ok()),
            content
                .get("unique")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        _ => history.tail(int("n").and_then(|n| usize::try_from(n).ok()).unwrap_or(10)),
    };
    let history: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            if output {
                json!([e.session, e.line, [e.input, null]])
            } else {
                json!([e.session, e.line, e.input])
            }
        })
        .collect();
    json!({ "status": "ok", "history": history })
}
