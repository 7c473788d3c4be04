//! The Jupyter wire format: multipart frames `[identities.., "<IDS|MSG>", signature, header, parent_header,
//! metadata, content, buffers..]`, signed with an HMAC of the four JSON frames.
//!
//! Incoming messages are verified against the exact bytes received (before any JSON parsing), and a signature
//! seen before is rejected as a replay. Content stays `serde_json::Value`: the kernel answers every request it can
//! read, however a client spells the optional fields.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;

const DELIMITER: &[u8] = b"<IDS|MSG>";
/// Protocol version this kernel speaks (headers and kernel_info).
pub const PROTOCOL_VERSION: &str = "5.3";
/// How many recent signatures are remembered to reject replays.
const REPLAY_WINDOW: usize = 8192;

/// Why an incoming message was dropped.
#[derive(Debug)]
pub enum WireError {
    NoDelimiter,
    TooFewFrames(usize),
    BadSignature,
    Unsigned,
    Replayed,
    BadJson(&'static str, serde_json::Error),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::NoDelimiter => write!(f, "no <IDS|MSG> delimiter"),
            WireError::TooFewFrames(n) => {
                write!(f, "{n} frames after the delimiter, need at least 5")
            }
            WireError::BadSignature => write!(
                f,
                "signature does not match (wrong key or tampered message)"
            ),
            WireError::Unsigned => write!(f, "message is not signed but the connection has a key"),
            WireError::Replayed => write!(f, "signature seen before (replayed message)"),
            WireError::BadJson(frame, e) => write!(f, "{frame} is not valid JSON: {e}"),
        }
    }
}

/// The signing key and scheme of a connection file.
#[derive(Clone)]
pub enum Signer {
    /// Empty key: signing is disabled (the spec's "no authentication").
    Disabled,
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl Signer {
    /// `scheme` is the connection file's `signature_scheme`, e.g. `hmac-sha256`.
    pub fn new(scheme: &str, key: &str) -> Result<Self, String> {
        if key.is_empty() {
            return Ok(Signer::Disabled);
        }
        let bad_key = |e: hmac::digest::InvalidLength| format!("invalid HMAC key: {e}");
        match scheme {
            "hmac-sha256" | "" => Ok(Signer::Sha256(Hmac::new_from_slice(key.as_bytes()).map_err(bad_key)?)),
            "hmac-sha384" => Ok(Signer::Sha384(Hmac::new_from_slice(key.as_bytes()).map_err(bad_key)?)),
            "hmac-sha512" => Ok(Signer::Sha512(Hmac::new_from_slice(key.as_bytes()).map_err(bad_key)?)),
            other => Err(format!(
                "unsupported signature_scheme '{other}' (supported: hmac-sha256, hmac-sha384, hmac-sha512)"
            )),
        }
    }

    fn digest(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = mac.clone();
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Signer::Disabled => None,
            Signer::Sha256(m) => Some(run(m, parts)),
            Signer::Sha384(m) => Some(run(m, parts)),
            Signer::Sha512(m) => Some(run(m, parts)),
        }
    }

    /// Hex signature of the four JSON frames ("" when signing is disabled).
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        self.digest(parts).map(hex::encode).unwrap_or_default()
    }

    /// Constant-time check of a hex signature.
    fn verify(&self, parts: &[&[u8]], signature: &[u8]) -> Result<(), WireError> {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]], sig: &[u8]) -> Result<(), WireError> {
            let mut mac = mac.clone();
            for p in parts {
                mac.update(p);
            }
            mac.verify_slice(sig).map_err(|_| WireError::BadSignature)
        }
        if matches!(self, Signer::Disabled) {
            return Ok(());
        }
        if signature.is_empty() {
            return Err(WireError::Unsigned);
        }
        let sig = hex::decode(signature).map_err(|_| WireError::BadSignature)?;
        match self {
            Signer::Disabled => Ok(()),
            Signer::Sha256(m) => run(m, parts, &sig),
            Signer::Sha384(m) => run(m, parts, &sig),
            Signer::Sha512(m) => run(m, parts, &sig),
        }
    }
}

/// A decoded message. JSON frames are kept as values; `identities` route a reply back to its sender.
#[derive(Debug, Clone)]
pub struct Message {
    pub identities: Vec<Bytes>,
    pub header: Value,
    pub parent_header: Value,
    pub metadata: Value,
    pub content: Value,
    pub buffers: Vec<Bytes>,
}

impl Message {
    pub fn msg_type(&self) -> &str {
        self.header
            .get("msg_type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A string field of the content, "" when absent.
    pub fn str_field(&self, key: &str) -> &str {
        self.content.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A new message of `msg_type` whose parent is `self`, sent back to the same identities.
    pub fn reply(&self, session: &str, msg_type: &str, content: Value) -> Message {
        Message {
            identities: self.identities.clone(),
            header: new_header(session, msg_type),
            parent_header: self.header.clone(),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }
}

/// A fresh header from this kernel.
pub fn new_header(session: &str, msg_type: &str) -> Value {
    json!({
        "msg_id": uuid::Uuid::new_v4().to_string(),
        "session": session,
        "username": "kestrel",
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
    })
}

/// The most recent signatures, for replay detection: a set to look up, a queue to forget the oldest.
#[derive(Default)]
struct RecentSignatures {
    set: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

/// Verifies and decodes incoming frames, remembering recent signatures to reject replays.
pub struct Decoder {
    signer: Signer,
    seen: Mutex<RecentSignatures>,
}

impl Decoder {
    pub fn new(signer: Signer) -> Self {
        Self {
            signer,
            seen: Mutex::new(RecentSignatures::default()),
        }
    }

    pub fn decode(&self, frames: Vec<Bytes>) -> Result<Message, WireError> {
        let delim = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let rest = &frames[delim + 1..];
        if rest.len() < 5 {
            return Err(WireError::TooFewFrames(rest.len()));
        }
        let signature = &rest[0];
        let parts: [&[u8]; 4] = [&rest[1], &rest[2], &rest[3], &rest[4]];
        self.signer.verify(&parts, signature)?;
        if !matches!(self.signer, Signer::Disabled) {
            self.remember(signature)?;
        }
        let parse = |name: &'static str, bytes: &[u8]| -> Result<Value, WireError> {
            serde_json::from_slice(bytes).map_err(|e| WireError::BadJson(name, e))
        };
        Ok(Message {
            identities: frames[..delim].to_vec(),
            header: parse("header", parts[0])?,
            parent_header: parse("parent_header", parts[1])?,
            metadata: parse("metadata", parts[2])?,
            content: parse("content", parts[3])?,
            buffers: rest[5..].to_vec(),
        })
    }

    fn remember(&self, signature: &Bytes) -> Result<(), WireError> {
        let mut guard = match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let recent = &mut *guard;
        if !recent.set.insert(signature.to_vec()) {
            return Err(WireError::Replayed);
        }
        recent.order.push_back(signature.to_vec());
        if recent.order.len() > REPLAY_WINDOW {
            if let Some(old) = recent.order.pop_front() {
                recent.set.remove(&old);
            }
        }
        Ok(())
    }
}

/// Serialises and signs a message into frames.
pub fn encode(signer: &Signer, msg: &Message) -> Vec<Bytes> {
    let to_bytes =
        |v: &Value| Bytes::from(serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()));
    let header = to_bytes(&msg.header);
    let parent = to_bytes(&msg.parent_header);
    let metadata = to_bytes(&msg.metadata);
    let content = to_bytes(&msg.content);
    let signature = signer.sign(&[&header, &parent, &metadata, &content]);
    let mut frames = msg.identities.clone();
    frames.push(Bytes::from_static(DELIMITER));
    frames.push(Bytes::from(signature));
    frames.extend([header, parent, metadata, content]);
    frames.extend(msg.buffers.iter().cloned());
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            identities: vec![Bytes::from_static(b"client")],
            header: new_header("s", "kernel_info_request"),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({}),
            buffers: vec![],
        }
    }

    #[test]
    fn round_trip_with_each_scheme() {
        for scheme in ["hmac-sha256", "hmac-sha384", "hmac-sha512"] {
            let signer = Signer::new(scheme, "secret").expect("scheme");
            let frames = encode(&signer, &message());
            let decoded = Decoder::new(signer).decode(frames).expect("valid");
            assert_eq!(decoded.msg_type(), "kernel_info_request");
            assert_eq!(decoded.identities, vec![Bytes::from_static(b"client")]);
        }
    }

    #[test]
    fn wrong_key_missing_signature_and_tampering_are_rejected() {
        let frames = encode(
            &Signer::new("hmac-sha256", "other").expect("ok"),
            &message(),
        );
        let decoder = Decoder::new(Signer::new("hmac-sha256", "secret").expect("ok"));
        assert!(matches!(
            decoder.decode(frames),
            Err(WireError::BadSignature)
        ));

        let mut frames = encode(&Signer::Disabled, &message());
        assert!(matches!(
            decoder.decode(frames.clone()),
            Err(WireError::Unsigned)
        ));

        let signer = Signer::new("hmac-sha256", "secret").expect("ok");
        frames = encode(&signer, &message());
        let last = frames.len() - 1;
        frames[last] = Bytes::from_static(br#"{"code": "DROP TABLE t"}"#);
        assert!(matches!(
            decoder.decode(frames),
            Err(WireError::BadSignature)
        ));
    }

    #[test]
    fn a_replayed_message_is_rejected() {
        let signer = Signer::new("hmac-sha256", "secret").expect("ok");
        let decoder = Decoder::new(signer.clone());
        let frames = encode(&signer, &message());
        assert!(decoder.decode(frames.clone()).is_ok());
        assert!(matches!(decoder.decode(frames), Err(WireError::Replayed)));
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(Signer::new("hmac-md5", "k").is_err());
        assert!(matches!(
            Signer::new("hmac-sha256", ""),
            Ok(Signer::Disabled)
        ));
    }
}
