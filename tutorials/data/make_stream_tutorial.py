"""Write tutorials/04-streaming-features.ipynb, the Kafka live tables tutorial, without outputs.

The notebook is committed; run this script only after editing the cells below, then run the notebook test
(tests/test_notebooks.py), which executes it and checks its key outputs. It needs no Kafka: the kernel's built-in
demo broker (librdkafka's mock cluster) and its generators produce the streams.

How to run (from the repository root; needs nbformat, as in the project's .venv):

    .venv/bin/python tutorials/data/make_stream_tutorial.py

"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbwrite import md, sql, write  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "04-streaming-features.ipynb"


CELLS = [
    md(
        """
        # 04 · Streaming features from Kafka

        Sensors, clicks and payments do not arrive as files: they arrive as a **stream** of messages on a Kafka
        topic. In this notebook a table *is* a topic: you query it while it fills, bad messages are kept aside
        instead of stopping everything, features stay up to date by themselves, and results go back to Kafka.

        You will:
        1. start a stream of sensor readings (no Kafka to install: the kernel has a small broker built in),
        2. turn the topic into a **live table** and query it while it fills,
        3. look at the **dead letters**, the messages that could not be read,
        4. follow each table's progress in `sys.sources`,
        5. keep per-sensor features current with a **continuous materialized view**,
        6. watch a query refresh by itself with `%%watch`,
        7. search a live table of embeddings with `KNN_MATCH` and an HNSW index,
        8. write alerts back to a Kafka topic with `INSERT INTO`.

        The same statements work on a real Kafka cluster: only the `LOCATION` changes, from `kafka://demo/topic` to
        `kafka://broker-host:9092/topic`.
        """
    ),
    md(
        """
        ## A stream to play with

        `kafka_demo(topic, rows_per_second, malformed_share, kind, total_rows)` starts the built-in broker (once)
        and a generator writing JSON readings of 20 sensors to a topic. Here: 6,000 readings at 3,000 per second,
        1% of them deliberately broken, the way real devices sometimes send garbage.
        """
    ),
    sql(
        """
        SELECT * FROM kafka_demo('readings', 3000, 0.01, 'sensors', 6000)
        """
    ),
    md(
        """
        ## A live table

        `CREATE EXTERNAL TABLE ... STORED AS KAFKA` points a table at a topic. The columns say which JSON fields to
        read and as what type; timestamps may be RFC 3339 text or epoch milliseconds. The options:

        * `'format'`: `json` (one object per message), `csv`, or `raw` (key and value as they are);
        * `'start'`: `earliest` (the whole topic), `latest` (only new messages) or `group` (where the consumer group
          `'group.id'` stopped last time);
        * `'retention'`: how much to keep in memory, a time (`'1 hour'`) or a row count (`'100000 rows'`);
        * `'max.memory'` (default 1 GB): past it, the table stops reading until retention frees space, instead of
          growing without limit;
        * any `'kafka.<setting>'` is passed to the Kafka client (librdkafka).

        The table starts filling as soon as it exists: the line under the result shows it catching up.
        """
    ),
    sql(
        """
        CREATE EXTERNAL TABLE readings (
            ts          TIMESTAMP,
            sensor_id   TEXT NOT NULL,
            site        TEXT,
            temperature DOUBLE,
            humidity    DOUBLE
        )
        STORED AS KAFKA LOCATION 'kafka://demo/readings'
        OPTIONS ('format' 'json', 'start' 'earliest', 'retention' '1 hour')
        """
    ),
    md(
        """
        A query sees the rows that have arrived so far: run the next cell twice quickly and the count grows. To
        wait until the table has read everything the topic holds (handy before an export), ask `kafka_wait`:
        """
    ),
    sql(
        """
        SELECT * FROM kafka_wait('readings')
        """
    ),
    sql(
        """
        SELECT count(*) AS readings, count(DISTINCT sensor_id) AS sensors,
               round(avg(temperature), 3) AS avg_temp
        FROM readings
        """
    ),
    md(
        """
        Every live table also has four columns from Kafka itself: the `_partition` and `_offset` a message was
        stored at, its `_timestamp`, and its `_key`. The generator keys each reading by its sensor, so all readings
        of a sensor land in the same partition, in order.
        """
    ),
    sql(
        """
        SELECT _partition, count(*) AS messages, count(DISTINCT _key) AS sensors
        FROM readings GROUP BY _partition ORDER BY _partition
        """
    ),
    md(
        """
        ## Dead letters

        6,000 messages were sent, and the table holds 5,940 rows. The other 60 did not fit the columns, and each
        of them is a row of `sys.dead_letters`, with where it came from, its text and what was wrong. One bad
        message never stops the table or costs its neighbours.
        """
    ),
    sql(
        """
        SELECT error, count(*) AS messages
        FROM sys.dead_letters
        WHERE table_name = 'readings'
        GROUP BY error ORDER BY error
        """
    ),
    sql(
        """
        SELECT partition, "offset", key, payload
        FROM sys.dead_letters
        WHERE payload = 'sensor offline'
        ORDER BY partition, "offset" LIMIT 3
        """
    ),
    md(
        """
        ## Progress: `sys.sources`

        One row per live table: how many rows it holds, how many messages it has read, its **lag** (messages on the
        broker not read yet), the current rate, the dead letters, and its state (`catching up`, `live`,
        `paused (memory)`, `reconnecting`).
        """
    ),
    sql(
        """
        SELECT table_name, topic, partitions, rows, consumed, lag, errors, state, retention
        FROM sys.sources
        """
    ),
    md(
        """
        ## Features that stay current

        A materialized view over a live table is kept up to date by the kernel: new messages reach it within a
        second. Counts, sums, averages, minima, maxima and standard deviations grouped by columns or time buckets
        are maintained **incrementally**: only the new rows are aggregated and merged into what the view already
        holds. So the view also remembers the rows that the table's retention has since dropped.
        """
    ),
    sql(
        """
        CREATE MATERIALIZED VIEW sensor_features AS
        SELECT sensor_id,
               count(*)                      AS readings,
               avg(temperature)              AS avg_temp,
               stddev(temperature)           AS std_temp,
               max(temperature)              AS max_temp,
               max(ts)                       AS last_seen
        FROM readings
        GROUP BY sensor_id
        """
    ),
    sql(
        """
        SELECT sensor_id, readings, round(avg_temp, 3) AS avg_temp, round(std_temp, 3) AS std_temp,
               round(max_temp, 3) AS max_temp
        FROM sensor_features ORDER BY sensor_id LIMIT 5
        """
    ),
    md(
        """
        Now 4,000 more readings arrive. `kafka_wait` returns once the table has read them **and** its continuous
        views have taken them in:
        """
    ),
    sql(
        """
        SELECT * FROM kafka_demo('readings', 4000, 0.01, 'sensors', 4000)
        """
    ),
    sql(
        """
        SELECT * FROM kafka_wait('readings')
        """
    ),
    sql(
        """
        SELECT sum(readings) AS readings_in_features, count(*) AS sensors FROM sensor_features
        """
    ),
    sql(
        """
        SELECT name, incremental, continuous, rows FROM sys.views
        """
    ),
    md(
        """
        ## `%%watch`: a result that refreshes itself

        Put `%%watch` and an interval on the first line of a cell and its result refreshes in place while you go on
        working in other cells. Re-running the cell, interrupting the kernel (the ■ button) or running
        `%%watch stop` stops it. Start a slow endless stream first, so there is something to watch:
        """
    ),
    sql(
        """
        SELECT * FROM kafka_demo('readings', 20)
        """
    ),
    sql(
        """
        %%watch 1s
        SELECT sensor_id, readings, round(avg_temp, 2) AS avg_temp, last_seen
        FROM sensor_features ORDER BY last_seen DESC LIMIT 5
        """
    ),
    sql(
        """
        %%watch stop
        """
    ),
    sql(
        """
        SELECT * FROM kafka_demo('readings', 0)
        """
    ),
    md(
        """
        ## Vector search on a live table

        Streams carry embeddings too: items of a catalogue, each with an 8-dimensional vector, arriving as they are
        added. `FLOAT_VECTOR(8)` reads a JSON array of 8 numbers; `KNN_MATCH` finds the nearest ones among the rows
        that have arrived (the generator puts each category near its own axis).
        """
    ),
    sql(
        """
        SELECT * FROM kafka_demo('items', 5000, 0, 'embeddings', 2000)
        """
    ),
    sql(
        """
        CREATE EXTERNAL TABLE items (id BIGINT, ts TIMESTAMP, item TEXT, category TEXT, embedding FLOAT_VECTOR(8))
        STORED AS KAFKA LOCATION 'kafka://demo/items'
        """
    ),
    sql(
        """
        SELECT * FROM kafka_wait('items')
        """
    ),
    sql(
        """
        SELECT category, count(*) AS nearest
        FROM items
        WHERE KNN_MATCH(embedding, [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 10)
        GROUP BY category
        """
    ),
    md(
        """
        An HNSW index makes the search a graph walk instead of a scan. On a live table it keeps up with the stream:
        rows that arrive after `CREATE INDEX` are searched exactly at once and built into new graph segments in the
        background, and rows that retention evicts drop out of the results (`sys.indexes` shows indexed and
        pending rows).
        """
    ),
    sql(
        """
        CREATE INDEX items_embedding ON items USING hnsw (embedding)
        """
    ),
    sql(
        """
        SELECT name, "table", rows_indexed, rows_pending, segments FROM sys.indexes
        """
    ),
    sql(
        """
        EXPLAIN SELECT category FROM items
        WHERE KNN_MATCH(embedding, [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 10)
        """
    ),
    md(
        """
        ## Predictions back to Kafka

        `INSERT INTO` a Kafka table produces one JSON message per row, keyed here by the sensor (`'key.column'`).
        A downstream service subscribes to the topic. The statement returns once the broker has acknowledged every
        message.
        """
    ),
    sql(
        """
        CREATE EXTERNAL TABLE alerts (sensor_id TEXT, avg_temp DOUBLE, max_temp DOUBLE, reason TEXT)
        STORED AS KAFKA LOCATION 'kafka://demo/alerts' OPTIONS ('key.column' 'sensor_id')
        """
    ),
    sql(
        """
        INSERT INTO alerts
        SELECT sensor_id, round(avg_temp, 2), round(max_temp, 2), 'runs hot'
        FROM sensor_features
        WHERE avg_temp > 21
        """
    ),
    md(
        """
        The `alerts` table reads its own topic, so the messages come back as rows, with their key:
        """
    ),
    sql(
        """
        SELECT * FROM kafka_wait('alerts')
        """
    ),
    sql(
        """
        SELECT _key, sensor_id, avg_temp, reason FROM alerts ORDER BY sensor_id
        """
    ),
    md(
        """
        ## Cleaning up

        `DROP TABLE` stops a table's consumer.
        """
    ),
    sql(
        """
        DROP TABLE alerts
        """
    ),
    sql(
        """
        SELECT table_name, state FROM sys.sources ORDER BY table_name
        """
    ),
    md(
        """
        ## What you used

        * `kafka_demo(...)` for a stream without Kafka, `kafka_wait('table')` to wait until a table has caught up;
        * `CREATE EXTERNAL TABLE ... STORED AS KAFKA LOCATION 'kafka://host:port/topic' OPTIONS (...)`, and the
          columns `_partition`, `_offset`, `_timestamp`, `_key`;
        * `sys.dead_letters` and `sys.sources`;
        * continuous materialized views, maintained incrementally;
        * `%%watch INTERVAL` and `%%watch stop`;
        * `KNN_MATCH` on a live table of `FLOAT_VECTOR`s, and an HNSW index that keeps up with it;
        * `INSERT INTO kafka_table SELECT ...` with `'key.column'`, and `DROP TABLE`.
        """
    ),
]


def main() -> None:
    write(CELLS, NOTEBOOK)


if __name__ == "__main__":
    main()
