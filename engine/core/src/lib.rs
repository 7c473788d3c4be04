//! kestrel-core: what Kestrel's capabilities share, below the engine facade (`kestrel-engine`).
//!
//! - [`error`], [`outcome`]: errors classified for the user, and what a statement did;
//! - [`sys`]: the `sys.*` tables, each capability adding its own;
//! - [`names`], [`input`]: table names as typed, input completeness;
//! - [`sql`]: the PostgreSQL/TimescaleDB/CrateDB dialect;
//! - [`vector`]: FLOAT_VECTOR, KNN_MATCH and vector indexes;
//! - [`stream`]: Kafka live tables and the demo broker;
//! - [`views`]: materialized and continuous views;
//! - [`optimize`]: optimizer rules every query gets.
//!
//! Vectors, live tables and views still import each other (an index follows a live table's appends and a view's
//! rows), so they share this crate until they meet through traits here instead.

pub mod error;
pub mod input;
pub mod names;
pub mod optimize;
pub mod outcome;
pub mod sql;
pub mod stream;
pub mod sys;
pub mod vector;
pub mod views;
