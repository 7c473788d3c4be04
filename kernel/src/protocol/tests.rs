//! The protocol layer tested on its own, with a mock interpreter (as xeus does): a panicking cell, an interrupted
//! cell, output streaming, signing, and the control channel answering while a cell runs. SQL plays no part.

use super::wire::{self, Decoder, Message, Signer};
use super::*;
use serde_json::{json, Value};
use std::time::Duration;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

struct Mock;

impl Interpreter for Mock {
    fn kernel_info(&self) -> KernelInfo {
        KernelInfo {
            implementation: "mock".into(),
            implementation_version: "0".into(),
            language_info: json!({ "name": "mock" }),
            banner: String::new(),
            help_links: json!([]),
        }
    }

    async fn execute(&self, code: String, out: Publisher) -> ExecuteOutcome {
        match code.as_str() {
            "panic" => panic!("mock interpreter panicked on purpose"),
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ExecuteOutcome::Ok(None)
            }
            "print" => {
                out.stream("stdout", "hello, world\n");
                ExecuteOutcome::Ok(None)
            }
            "fail" => {
                // Slow enough for the request sent right behind it to be queued when it fails.
                tokio::time::sleep(Duration::from_millis(200)).await;
                ExecuteOutcome::Error {
                    ename: "MockError".into(),
                    evalue: "failed".into(),
                    traceback: vec![],
                }
            }
            other => {
                let mut data = MimeBundle::new();
                data.insert("text/plain".into(), json!(other));
                ExecuteOutcome::Ok(Some(data))
            }
        }
    }

    async fn complete(&self, code: String, cursor: usize) -> CompleteOutcome {
        if code == "panic" {
            panic!("completion panicked on purpose");
        }
        CompleteOutcome {
            matches: vec![code[..cursor].to_uppercase()],
            start: 0,
            end: cursor,
            types: vec![],
        }
    }

    async fn inspect(&self, _code: String, _cursor: usize) -> Option<MimeBundle> {
        None
    }

    fn is_complete(&self, _code: &str) -> IsComplete {
        IsComplete::Complete
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Client {
    shell: zeromq::DealerSocket,
    control: zeromq::DealerSocket,
    iopub: zeromq::SubSocket,
    signer: Signer,
    decoder: Decoder,
}

impl Client {
    async fn start() -> Client {
        let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
        let key = "test-key";
        let info = json!({
            "ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256", "key": key,
            "shell_port": ports[0], "iopub_port": ports[1], "stdin_port": ports[2], "control_port": ports[3], "hb_port": ports[4],
        });
        let dir =
            std::env::temp_dir().join(format!("kestrel-proto-{}-{}", std::process::id(), ports[0]));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("connection.json");
        std::fs::write(&file, info.to_string()).expect("connection file");
        tokio::spawn(serve(file, Mock, None));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut shell = zeromq::DealerSocket::new();
        shell
            .connect(&format!("tcp://127.0.0.1:{}", ports[0]))
            .await
            .expect("shell");
        let mut control = zeromq::DealerSocket::new();
        control
            .connect(&format!("tcp://127.0.0.1:{}", ports[3]))
            .await
            .expect("control");
        let mut iopub = zeromq::SubSocket::new();
        iopub
            .connect(&format!("tcp://127.0.0.1:{}", ports[1]))
            .await
            .expect("iopub");
        iopub.subscribe("").await.expect("subscribe");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let signer = Signer::new("hmac-sha256", key).expect("signer");
        Client {
            shell,
            control,
            iopub,
            decoder: Decoder::new(signer.clone()),
            signer,
        }
    }

    fn request(&self, msg_type: &str, content: Value) -> (String, ZmqMessage) {
        let header = wire::new_header("client-session", msg_type);
        let id = header["msg_id"].as_str().unwrap_or_default().to_string();
        let msg = Message {
            identities: vec![],
            header,
            parent_header: json!({}),
            metadata: json!({}),
            content,
            buffers: vec![],
        };
        let frames = wire::encode(&self.signer, &msg);
        (id, ZmqMessage::try_from(frames).expect("frames"))
    }

    async fn shell_request(&mut self, msg_type: &str, content: Value) -> String {
        let (id, zmsg) = self.request(msg_type, content);
        self.shell.send(zmsg).await.expect("send");
        id
    }

    async fn reply(sock: &mut zeromq::DealerSocket, decoder: &Decoder) -> Message {
        let zmsg = tokio::time::timeout(Duration::from_secs(10), sock.recv())
            .await
            .expect("reply in time")
            .expect("recv");
        decoder.decode(zmsg.into_vec()).expect("signed reply")
    }

    async fn shell_reply(&mut self) -> Message {
        Self::reply(&mut self.shell, &self.decoder).await
    }

    /// IOPub messages of request `id` up to its idle status.
    async fn outputs(&mut self, id: &str) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let zmsg = tokio::time::timeout(Duration::from_secs(10), self.iopub.recv())
                .await
                .expect("iopub in time")
                .expect("recv");
            let msg = self.decoder.decode(zmsg.into_vec()).expect("signed");
            if msg.parent_header["msg_id"] != id {
                continue;
            }
            if msg.msg_type() == "status" && msg.content["execution_state"] == "idle" {
                return out;
            }
            out.push(msg);
        }
    }
}

fn execute_content(code: &str) -> Value {
    json!({ "code": code, "silent": false, "store_history": true, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_layer_survives_panics_interrupts_and_forgeries() {
    let mut c = Client::start().await;

    // A result, with busy / execute_input / execute_result / idle on IOPub.
    let id = c
        .shell_request("execute_request", execute_content("1 + 1"))
        .await;
    let reply = c.shell_reply().await;
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(reply.content["execution_count"], 1);
    let types: Vec<String> = c
        .outputs(&id)
        .await
        .iter()
        .map(|m| m.msg_type().to_string())
        .collect();
    assert_eq!(types, ["status", "execute_input", "execute_result"]);

    // Streams go out as they are published.
    let id = c
        .shell_request("execute_request", execute_content("print"))
        .await;
    c.shell_reply().await;
    let outs = c.outputs(&id).await;
    assert!(outs
        .iter()
        .any(|m| m.msg_type() == "stream" && m.content["text"] == "hello, world\n"));

    // A failed cell aborts the requests queued right behind it (stop_on_error), as "Run All" expects.
    c.shell_request("execute_request", execute_content("fail"))
        .await;
    c.shell_request("execute_request", execute_content("queued"))
        .await;
    assert_eq!(c.shell_reply().await.content["status"], "error");
    assert_eq!(c.shell_reply().await.content["status"], "aborted");

    // A panic becomes one error message and an error reply; the kernel lives.
    let id = c
        .shell_request("execute_request", execute_content("panic"))
        .await;
    let reply = c.shell_reply().await;
    assert_eq!(reply.content["status"], "error");
    assert!(reply.content["evalue"]
        .as_str()
        .unwrap_or_default()
        .contains("panicked on purpose"));
    let errors: Vec<Message> = c
        .outputs(&id)
        .await
        .into_iter()
        .filter(|m| m.msg_type() == "error")
        .collect();
    assert_eq!(errors.len(), 1);

    // Interrupt over control while a cell runs; control answers kernel_info meanwhile.
    c.shell_request("execute_request", execute_content("sleep"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, info) = c.request("kernel_info_request", json!({}));
    c.control.send(info).await.expect("send");
    let info_reply = Client::reply(&mut c.control, &c.decoder).await;
    assert_eq!(info_reply.content["protocol_version"], "5.3");
    let (_, interrupt) = c.request("interrupt_request", json!({}));
    let asked = std::time::Instant::now();
    c.control.send(interrupt).await.expect("send");
    assert_eq!(
        Client::reply(&mut c.control, &c.decoder).await.msg_type(),
        "interrupt_reply"
    );
    let reply = c.shell_reply().await;
    assert_eq!(reply.content["ename"], "Interrupted");
    assert!(asked.elapsed() < Duration::from_secs(1));

    // A forged message (wrong key) is dropped: no reply; the next good request is answered.
    let forger = Signer::new("hmac-sha256", "wrong").expect("signer");
    let header = wire::new_header("x", "execute_request");
    let forged = Message {
        identities: vec![],
        header,
        parent_header: json!({}),
        metadata: json!({}),
        content: execute_content("forged"),
        buffers: vec![],
    };
    c.shell
        .send(ZmqMessage::try_from(wire::encode(&forger, &forged)).expect("frames"))
        .await
        .expect("send");
    // ... and so is a replay of a correctly signed one.
    let (_, good) = c.request("execute_request", execute_content("once"));
    c.shell.send(good.clone()).await.expect("send");
    assert_eq!(c.shell_reply().await.content["status"], "ok");
    c.shell.send(good).await.expect("send");
    let id = c
        .shell_request("is_complete_request", json!({ "code": "x" }))
        .await;
    let next = c.shell_reply().await;
    assert_eq!(
        next.parent_header["msg_id"], id,
        "forged and replayed requests must not be answered"
    );

    // Completion offsets are code points on the wire.
    c.shell_request(
        "complete_request",
        json!({ "code": "é€x", "cursor_pos": 3 }),
    )
    .await;
    let reply = c.shell_reply().await;
    assert_eq!(reply.content["cursor_end"], 3);
    assert_eq!(reply.content["matches"], json!(["É€X"]));

    // A panic in completion is an error reply; the kernel answers the next request.
    c.shell_request(
        "complete_request",
        json!({ "code": "panic", "cursor_pos": 5 }),
    )
    .await;
    let reply = c.shell_reply().await;
    assert_eq!(reply.content["status"], "error");
    assert!(reply.content["evalue"]
        .as_str()
        .unwrap_or_default()
        .contains("completion panicked on purpose"));

    // Unknown requests get an error reply rather than silence.
    c.shell_request("frobnicate_request", json!({})).await;
    let reply = c.shell_reply().await;
    assert_eq!(reply.msg_type(), "frobnicate_reply");
    assert_eq!(reply.content["status"], "error");

    // Shutdown answers, then the kernel stops.
    let (_, shutdown) = c.request("shutdown_request", json!({ "restart": false }));
    c.control.send(shutdown).await.expect("send");
    assert_eq!(
        Client::reply(&mut c.control, &c.decoder).await.content["status"],
        "ok"
    );
}
