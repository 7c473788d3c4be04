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
//! The four capability modules depend on each other in one direction only: `stream` ← `views` (a continuous
//! view follows a live table) ← `vector` (an index follows a live table's appends and a view's rows) ← `sql`
//! (FLOAT_VECTOR types, REFRESH in a function body). Each could become a crate of its own in that order; they share
//! this one until a split pays for its build time.

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
