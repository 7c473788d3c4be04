//! The kernel's end of `kestrel::sql` and `kestrel::register`: a Unix socket in a private directory, served on
//! the kernel's runtime. Rust cells (evcxr's child process) find it through `KESTREL_BRIDGE`. The wire format is
//! described in the `kestrel` crate (kernel/cell).

use kestrel::{FAILED, OK, QUERY, REGISTER};
use kestrel_engine::{Engine, Outcome, RunOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// The listening socket; dropping it stops serving and removes the socket.
pub struct Bridge {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Bridge {
    /// Listens in `dir`, which is made (if needed) so that only this user can enter it.
    pub fn start(engine: Engine, dir: &Path) -> std::io::Result<Bridge> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let path = dir.join("bridge.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let engine = Arc::new(engine);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, &engine).await {
                                eprintln!("kestrel: a Rust cell's request failed: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        eprintln!("kestrel: the Rust bridge stopped accepting: {e}");
                        return;
                    }
                }
            }
        });
        Ok(Bridge { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Requests larger than this are refused (a table name or query text, not data).
const MAX_TEXT: u32 = 64 << 20;

async fn serve(mut s: UnixStream, engine: &Engine) -> std::io::Result<()> {
    let op = s.read_u8().await?;
    let len = s.read_u32().await?;
    if len > MAX_TEXT {
        return answer(
            &mut s,
            Err(format!("request text of {len} bytes is too long")),
        )
        .await;
    }
    let mut text = vec![0u8; len as usize];
    s.read_exact(&mut text).await?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let result = match op {
        QUERY => query(engine, &text).await,
        REGISTER => {
            let len = s.read_u64().await?;
            let mut ipc = Vec::new();
            (&mut s).take(len).read_to_end(&mut ipc).await?;
            register(engine, &text, &ipc).await
        }
        other => Err(format!("unknown request {other}")),
    };
    answer(&mut s, result).await
}

async fn answer(s: &mut UnixStream, result: Result<Vec<u8>, String>) -> std::io::Result<()> {
    let (status, body) = match result {
        Ok(b) => (OK, b),
        Err(e) => (FAILED, e.into_bytes()),
    };
    s.write_u8(status).await?;
    s.write_u64(body.len() as u64).await?;
    s.write_all(&body).await?;
    s.flush().await
}

async fn query(engine: &Engine, sql: &str) -> Result<Vec<u8>, String> {
    let outcome = engine
        .run_cell(sql, &RunOptions::all_rows())
        .await
        .map_err(|e| e.to_string())?;
    let (schema, batches) = match outcome {
        Some(Outcome::Rows(r)) => (r.schema, r.batches),
        _ => (
            Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            Vec::new(),
        ),
    };
    kestrel::encode(&schema, &batches).map_err(|e| e.to_string())
}

async fn register(engine: &Engine, name: &str, ipc: &[u8]) -> Result<Vec<u8>, String> {
    let (schema, batches) = kestrel::decode(ipc).map_err(|e| e.to_string())?;
    let message = engine
        .register_batches(name, schema, batches)
        .await
        .map_err(|e| e.to_string())?;
    Ok(message.into_bytes())
}
