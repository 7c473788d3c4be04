//! Confirmations and results of whole statements (moved from outcome.rs: they need the Engine).
use crate::outcome::*;
use crate::{Engine, RunOptions};

async fn message(engine: &Engine, sql: &str) -> String {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(Some(Outcome::Done(done))) => done.message,
        other => panic!("{sql}: expected a confirmation, got {other:?}"),
    }
}

#[tokio::test]
async fn confirmations_say_what_happened() {
    let e = Engine::new();
    assert_eq!(
        message(&e, "CREATE TABLE t (x INT)").await,
        "Created table t"
    );
    assert_eq!(
        message(&e, "CREATE TABLE IF NOT EXISTS t (x INT)").await,
        "Table t already exists; nothing changed"
    );
    assert_eq!(
        message(&e, "INSERT INTO t VALUES (1), (2)").await,
        "Inserted 2 rows into t"
    );
    assert_eq!(
        message(&e, "CREATE VIEW v AS SELECT * FROM t").await,
        "Created view v"
    );
    assert_eq!(message(&e, "DROP VIEW v").await, "Dropped view v");
    assert_eq!(
        message(&e, "DROP TABLE IF EXISTS nosuch").await,
        "Table nosuch does not exist; nothing dropped"
    );
    assert_eq!(message(&e, "DROP TABLE t").await, "Dropped table t");
    assert_eq!(
        message(&e, "SET datafusion.execution.batch_size = 100").await,
        "SET datafusion.execution.batch_size = 100"
    );
    assert_eq!(
        message(&e, "PREPARE q(INT) AS SELECT $1").await,
        "Prepared statement q"
    );
}

#[test]
fn thousands_are_grouped() {
    assert_eq!(group_thousands(0), "0");
    assert_eq!(group_thousands(999), "999");
    assert_eq!(group_thousands(1000), "1,000");
    assert_eq!(group_thousands(2_000_000), "2,000,000");
    assert_eq!(rows(1), "1 row");
    assert_eq!(rows(12345), "12,345 rows");
}
