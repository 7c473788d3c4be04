//! `kestrel`: the Kestrel Jupyter kernel and its command line.
//!
//! - `kestrel kernel -f CONNECTION_FILE`: what the kernelspec runs;
//! - `kestrel install [--prefix DIR]`: registers the `kestrel` kernelspec;
//! - `kestrel sql -c SQL | FILE [--format table|csv|json]`: the same engine from a shell.

mod cli;
mod install;
mod plot;
mod protocol;
mod render;
mod rust;
mod sql_kernel;
mod watch;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;

/// mimalloc, as datafusion-cli: it keeps freed pages for the next batch where glibc unmaps and faults them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kestrel",
    version,
    about = "A Jupyter kernel for SQL and ML data work on Apache DataFusion"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as a Jupyter kernel (started by Jupyter through the kernelspec)
    Kernel {
        /// The connection file Jupyter wrote for this kernel
        #[arg(short = 'f', long = "connection-file")]
        connection_file: PathBuf,
    },
    /// Register the `kestrel` kernelspec with Jupyter
    Install {
        /// Install under DIR/share/jupyter/kernels (e.g. a virtualenv) instead of the user's Jupyter data directory
        #[arg(long)]
        prefix: Option<PathBuf>,
        /// Kernelspec name
        #[arg(long, default_value = "kestrel")]
        name: String,
    },
    /// Run SQL from the command line (a file, `-c`, or standard input)
    Sql {
        /// SQL text to run
        #[arg(short = 'c', long = "command", conflicts_with = "file")]
        command: Option<String>,
        /// A .sql file to run (`-` for standard input)
        file: Option<PathBuf>,
        /// Output format for query results
        #[arg(long, value_enum, default_value = "table")]
        format: cli::Format,
    },
}

fn history_path() -> Option<PathBuf> {
    match std::env::var_os("KESTREL_HISTORY") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => dirs::data_dir().map(|d| d.join("kestrel").join("history.jsonl")),
    }
}

fn main() -> std::process::ExitCode {
    // evcxr runs Rust cells in a child process that is this binary again (and wraps rustc with it for its build
    // cache): in those roles this call does not return.
    evcxr::runtime_hook();
    // before any thread starts (it sets an environment variable)
    kestrel_engine::embed::configure_process();
    let args = Args::parse();
    let is_kernel = matches!(args.command, Command::Kernel { .. });
    if is_kernel {
        rust::prepare_environment();
        rust::clean_up(false);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kestrel: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Kernel { connection_file } => {
                // Rust cells start in the background unless KESTREL_RUST_WARMUP=0 (then at the first %%rust cell).
                let warm = std::env::var("KESTREL_RUST_WARMUP").map_or(true, |v| v != "0");
                let kernel = sql_kernel::SqlKernel::new(kestrel_engine::Engine::new(), warm);
                protocol::serve(connection_file, kernel, history_path()).await
            }
            Command::Install { prefix, name } => {
                let exe =
                    std::env::current_exe().context("cannot find the kestrel executable's path")?;
                let dir = install::install(prefix.as_deref(), &name, &exe)?;
                println!("Installed kernelspec '{name}' in {}", dir.display());
                Ok(())
            }
            Command::Sql {
                command,
                file,
                format,
            } => {
                let sql = match (command, file) {
                    (Some(sql), _) => sql,
                    (None, Some(path)) if path.as_os_str() != "-" => std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    _ => {
                        let mut sql = String::new();
                        std::io::stdin()
                            .read_to_string(&mut sql)
                            .context("cannot read standard input")?;
                        sql
                    }
                };
                cli::run(&sql, format).await
            }
        }
    });
    // Queries may leave blocking I/O tasks behind; do not wait for them on exit.
    runtime.shutdown_background();
    if is_kernel {
        rust::clean_up(true);
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kestrel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
