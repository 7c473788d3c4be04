//! IOPub: one task owns the PUB socket; everyone else sends it messages through a channel, so outputs of a
//! request stay in order between its busy and idle.

use super::wire::{self, Message};
use super::MimeBundle;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

pub(crate) enum IopubCommand {
    Send(Message),
    /// Acknowledged once everything queued before it has been written to the socket.
    Flush(oneshot::Sender<()>),
}

/// Publishes outputs on IOPub as children of one request.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<IopubCommand>,
    session: String,
    parent_header: Value,
}

impl Publisher {
    pub(crate) fn new(
        tx: mpsc::UnboundedSender<IopubCommand>,
        session: String,
        parent_header: Value,
    ) -> Self {
        Self {
            tx,
            session,
            parent_header,
        }
    }

    /// Sends any IOPub message as a child of this publisher's request.
    pub fn send(&self, msg_type: &str, content: Value) {
        let msg = Message {
            identities: vec![Bytes::from(format!("kernel.{}.{msg_type}", self.session))],
            header: wire::new_header(&self.session, msg_type),
            parent_header: self.parent_header.clone(),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        };
        // The receiver only goes away when the kernel shuts down; output after that has nowhere to go.
        let _ = self.tx.send(IopubCommand::Send(msg));
    }

    /// Text on stdout/stderr: what Rust cells print.
    pub fn stream(&self, name: &str, text: &str) {
        self.send("stream", json!({ "name": name, "text": text }));
    }

    /// A `display_data`; with a `display_id` it can be updated in place later.
    pub fn display(&self, data: MimeBundle, display_id: Option<&str>) {
        let transient = display_id.map_or(json!({}), |id| json!({ "display_id": id }));
        self.send(
            "display_data",
            json!({ "data": data, "metadata": {}, "transient": transient }),
        );
    }

    pub fn update_display(&self, data: MimeBundle, display_id: &str) {
        self.send(
            "update_display_data",
            json!({ "data": data, "metadata": {}, "transient": { "display_id": display_id } }),
        );
    }

    pub fn clear_output(&self, wait: bool) {
        self.send("clear_output", json!({ "wait": wait }));
    }

    pub(crate) fn status(&self, state: &str) {
        self.send("status", json!({ "execution_state": state }));
    }

    /// Waits until everything published so far is on the socket.
    pub(crate) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(IopubCommand::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}
