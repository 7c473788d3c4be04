"""Write tutorials/03-time-series-features.ipynb, the time-series feature engineering tutorial, without outputs.

The notebook is committed; run this script only after editing the cells below, then run the notebook test
(tests/test_notebooks.py), which executes it and checks its key outputs. Its data comes from make_sensors.py.

How to run (from the repository root; needs nbformat, as in the project's .venv):

    .venv/bin/python tutorials/data/make_time_tutorial.py

"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbwrite import md, sql, write  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "03-time-series-features.ipynb"

WEEK2 = "2026-04-29 00:00:00"  # the drift split: week 1 is the reference, week 2 the current sample


CELLS = [
    md(
        """
        # 03 · Time-series features

        Machines, meters and apps report *events in time*: one row per reading, at irregular moments, with holes
        when a device goes silent. A model rarely wants those raw rows. It wants **features**: the average
        temperature of the last hour, how noisy the last five minutes were, how old the latest reading is, which
        firmware the device runs. And to train it, every feature must be computed **as it was known when the label
        was recorded**, never with data from later.

        This notebook builds such features in SQL, on two weeks of telemetry from 20 temperature sensors. You will:
        1. load the readings from Parquet and look at them,
        2. summarise them per time bucket (`time_bucket`),
        3. compute rolling averages and differences per sensor (window functions),
        4. cut time into windows with the table functions `TUMBLE`, `HOP` and `SESSION`,
        5. fill the gaps a silent sensor leaves (`time_bucket_gapfill`, `locf`, `interpolate`),
        6. read fields out of JSON text,
        7. keep features ready in a materialized view,
        8. build a point-in-time correct training set with `ASOF JOIN`, and export it,
        9. measure which sensors drifted between the two weeks (`ks_statistic`, `psi`).

        The functions follow TimescaleDB (`time_bucket`, gap filling), DuckDB (`ASOF JOIN`) and Flink (window
        table functions), so what you learn here carries over.

        The data is synthetic, made by `data/make_sensors.py` with a fixed seed: the same rows every time.
        """
    ),
    md(
        """
        ## The readings

        `data/sensors.parquet` holds one row per reading: when (`ts`), which sensor, the temperature in °C, an
        error code (mostly `NULL`) and a `payload` of JSON text the device sends along. `CREATE EXTERNAL TABLE`
        reads the file where it lies.
        """
    ),
    sql(
        """
        CREATE EXTERNAL TABLE readings STORED AS PARQUET LOCATION 'data/sensors.parquet'
        """
    ),
    sql(
        """
        DESCRIBE readings
        """
    ),
    md(
        """
        `Timestamp(µs)` is a date and time to the microsecond, with no time zone: how Parquet files written by
        pandas or Spark usually store time. The rows are in time order, all sensors mixed, as they arrived:
        """
    ),
    sql(
        """
        SELECT * FROM readings LIMIT 5
        """
    ),
    md(
        """
        Per sensor: how many readings, from when to when, how many errors. Sensors report on their own rhythm (every
        30 seconds to every 2 minutes), and s20 was installed a day late.
        """
    ),
    sql(
        """
        SELECT sensor_id, count(*) AS readings, min(ts) AS first_reading, max(ts) AS last_reading,
               count(error_code) AS errors
        FROM readings
        GROUP BY sensor_id
        ORDER BY sensor_id
        """
    ),
    md(
        """
        ## Time buckets

        Readings arrive at odd moments (00:00:35, 00:01:06, ...). To compare sensors, or hours, we first round each
        timestamp down to the start of its *bucket*: `time_bucket(INTERVAL '5 minutes', ts)` maps 10:07:30 to
        10:05:00. Grouping by sensor and bucket then gives one row of features per sensor per 5 minutes:
        """
    ),
    sql(
        """
        SELECT sensor_id, time_bucket(INTERVAL '5 minutes', ts) AS bucket,
               avg(temperature) AS avg_temp, stddev(temperature) AS std_temp, count(*) AS n
        FROM readings
        GROUP BY 1, 2
        ORDER BY 1, 2
        """
    ),
    md(
        """
        `GROUP BY 1, 2` means "by the first and second columns of the `SELECT`". The standard deviation tells how
        much the temperature moved inside the bucket; a sensor reporting every 2 minutes has only 2 or 3 readings
        per bucket, so its `std_temp` is rough (and `NULL` with a single reading).

        One sensor over one hour, rounded to read more easily:
        """
    ),
    sql(
        """
        SELECT time_bucket(INTERVAL '5 minutes', ts) AS bucket,
               round(avg(temperature), 3) AS avg_temp, round(stddev(temperature), 3) AS std_temp, count(*) AS n
        FROM readings
        WHERE sensor_id = 's03' AND ts >= '2026-04-24 15:00:00' AND ts < '2026-04-24 16:00:00'
        GROUP BY 1
        ORDER BY 1
        """
    ),
    md(
        """
        Buckets are counted from an *origin*. The default origin is Monday 2000-01-03 00:00 (as in TimescaleDB and
        DuckDB), so hourly buckets start on the hour, daily ones at midnight, and **weekly buckets start on
        Mondays**. The data starts on Wednesday 22 April 2026, yet its first weekly bucket is Monday 20 April:
        """
    ),
    sql(
        """
        SELECT time_bucket(INTERVAL '1 week', ts) AS week, count(*) AS readings,
               min(ts) AS first_reading, max(ts) AS last_reading
        FROM readings
        GROUP BY 1
        ORDER BY 1
        """
    ),
    md(
        """
        Months have no fixed length, so month buckets count calendar months (from 2000-01-01): they start on the
        first of the month.
        """
    ),
    sql(
        """
        SELECT time_bucket(INTERVAL '1 month', ts) AS month, count(*) AS readings, round(avg(temperature), 2) AS avg_temp
        FROM readings
        GROUP BY 1
        ORDER BY 1
        """
    ),
    md(
        """
        A third argument moves the origin: `time_bucket(INTERVAL '1 week', ts, TIMESTAMP '2026-04-22 00:00:00')`
        gives weeks starting on Wednesdays. We use it at the end of the notebook.

        ## Rolling windows

        Buckets cut time into fixed slices. A *rolling* feature instead looks back from every reading: "the average
        of this sensor's last 5 minutes, up to now". That is a window function with a time frame:
        `RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND CURRENT ROW` takes the rows of the same sensor
        (`PARTITION BY sensor_id`) whose `ts` lies within 5 minutes before the current row's, the current row
        included. `LAG(temperature)` is the previous reading of the same sensor, so their difference is how fast
        the temperature changes.

        Sensor s05 stopped reporting for a while on 24 April. The window is computed over all of s05's readings
        in the inner query; the outer `WHERE` then shows a few minutes around the silence:
        """
    ),
    sql(
        """
        SELECT * FROM (
          SELECT sensor_id, ts, temperature,
                 round(AVG(temperature) OVER (PARTITION BY sensor_id ORDER BY ts RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND CURRENT ROW), 3) AS rolling_avg_5min,
                 COUNT(*) OVER (PARTITION BY sensor_id ORDER BY ts RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND CURRENT ROW) AS n_5min,
                 round(temperature - LAG(temperature) OVER (PARTITION BY sensor_id ORDER BY ts), 2) AS delta,
                 date_part('epoch', ts - LAG(ts) OVER (PARTITION BY sensor_id ORDER BY ts)) AS seconds_since_previous
          FROM readings
          WHERE sensor_id = 's05'
        )
        WHERE ts BETWEEN '2026-04-24 09:00:00' AND '2026-04-24 10:52:00'
        ORDER BY ts
        """
    ),
    md(
        """
        After the silence, the first reading's 5-minute window holds that reading alone (`n_5min` = 1), and its
        `delta` spans 97 minutes (5,844 seconds): a rolling feature quietly means something else after a gap.
        `seconds_since_previous` makes that visible to the model. (Subtracting two timestamps gives a duration;
        `date_part('epoch', ...)` turns it into seconds, a plain number as models want.) Filtering on `ts` inside
        the inner query would have cut the first readings' windows short: compute windows first, filter after.

        ## Window table functions

        `TUMBLE`, `HOP` and `SESSION` take a table, its time column and sizes, and return the table's rows with two
        more columns, `window_start` and `window_end`. You then group by them.

        **TUMBLE** cuts time into back-to-back windows of one size, like `time_bucket`, but also tells where each
        window ends:
        """
    ),
    sql(
        """
        SELECT window_start, window_end, sensor_id, round(avg(temperature), 2) AS avg_temp, count(*) AS n
        FROM TUMBLE(readings, ts, INTERVAL '1 hour')
        GROUP BY window_start, window_end, sensor_id
        ORDER BY sensor_id, window_start
        """
    ),
    md(
        """
        **HOP** makes overlapping windows: `HOP(readings, ts, INTERVAL '15 minutes', INTERVAL '1 hour')` starts a
        one-hour window every 15 minutes, so each reading falls in four windows. It is an hourly average refreshed
        every quarter of an hour. Here for sensor s01:
        """
    ),
    sql(
        """
        SELECT window_start, window_end, round(avg(temperature), 2) AS avg_temp, count(*) AS n
        FROM HOP(readings, ts, INTERVAL '15 minutes', INTERVAL '1 hour')
        WHERE sensor_id = 's01' AND window_start >= '2026-04-24 12:00:00' AND window_start < '2026-04-24 14:00:00'
        GROUP BY 1, 2
        ORDER BY 1
        """
    ),
    md(
        """
        **SESSION** follows activity instead of the clock: rows closer than the gap to each other belong to one
        session, and a session ends `gap` after its last row. The fourth argument keeps sessions per sensor.
        With a 10-minute gap, a sensor has one long session unless it went silent for more than 10 minutes:
        """
    ),
    sql(
        """
        SELECT sensor_id, count(*) AS sessions,
               round(min(hours), 1) AS shortest_hours, round(max(hours), 1) AS longest_hours
        FROM (
          SELECT sensor_id, window_start, window_end, date_part('epoch', window_end - window_start) / 3600 AS hours
          FROM SESSION(readings, ts, INTERVAL '10 minutes', sensor_id)
          GROUP BY 1, 2, 3
        )
        GROUP BY 1
        ORDER BY sessions DESC, sensor_id
        """
    ),
    md(
        """
        s14 drops out for half an hour or so every morning; s05, s08 and s19 each went silent once. Their
        sessions:
        """
    ),
    sql(
        """
        SELECT sensor_id, window_start, window_end, count(*) AS readings
        FROM SESSION(readings, ts, INTERVAL '10 minutes', sensor_id)
        WHERE sensor_id IN ('s05', 's08', 's19')
        GROUP BY 1, 2, 3
        ORDER BY 1, 2
        """
    ),
    md(
        """
        ## Filling gaps

        A plain `GROUP BY time_bucket(...)` only returns buckets that have rows: during s05's silence there is
        simply nothing. Many models, and every chart, want one row per bucket. `time_bucket_gapfill` in the
        `GROUP BY` produces **every** bucket of the time range written in the `WHERE` clause, the empty ones
        included. For those, the aggregate is `NULL`, and two functions fill it in:

        * `locf(agg)`: *last observation carried forward*, the latest known value;
        * `interpolate(agg)`: a straight line between the known values before and after.
        """
    ),
    sql(
        """
        SELECT time_bucket_gapfill(INTERVAL '10 minutes', ts) AS bucket, sensor_id,
               avg(temperature) AS avg_temp,
               locf(avg(temperature)) AS locf_temp,
               interpolate(avg(temperature)) AS interp_temp
        FROM readings
        WHERE ts >= '2026-04-24 08:00:00' AND ts < '2026-04-24 12:00:00' AND sensor_id = 's05'
        GROUP BY 1, 2
        ORDER BY 1
        """
    ),
    md(
        """
        Four hours make 24 ten-minute buckets. The range comes from the `WHERE` clause, so a bucket with no reading
        at the start or the end of the range still appears. `locf` holds the temperature flat through the silence;
        `interpolate` lets it climb towards the value after it, which is closer to what the room did that morning.

        How many buckets had to be filled?
        """
    ),
    sql(
        """
        SELECT count(*) AS buckets, count(avg_temp) AS with_readings, count(*) - count(avg_temp) AS filled
        FROM (
          SELECT time_bucket_gapfill(INTERVAL '10 minutes', ts) AS bucket, avg(temperature) AS avg_temp
          FROM readings
          WHERE ts >= '2026-04-24 08:00:00' AND ts < '2026-04-24 12:00:00' AND sensor_id = 's05'
          GROUP BY 1
        )
        """
    ),
    md(
        """
        ## Features from JSON

        The `payload` column is JSON text: `{"fw": "1.4.2", "battery": 87, "site": {"id": "plant-3"}}`. Two
        operators read into it:

        * `payload->'key'` gives the value under `key`, still JSON (so you can go deeper: `->'site'->'id'`);
        * `payload->>'key'` gives it as text.

        The `json_*` functions give typed values: `json_get_str`, `json_get_int`, `json_get_float`, `json_get_bool`,
        plus `json_contains(payload, 'key')` (is the key there?) and `json_length` (how many items). A missing key,
        or text that is not JSON, gives `NULL` rather than an error.
        """
    ),
    sql(
        """
        SELECT ts, sensor_id,
               payload->>'fw' AS fw,
               payload->'site'->>'id' AS site,
               json_get_int(payload, 'battery') AS battery,
               json_contains(payload, 'battery') AS has_battery,
               json_length(payload) AS fields
        FROM readings
        WHERE sensor_id IN ('s01', 's03', 's05') AND ts >= '2026-04-29 03:00:00' AND ts < '2026-04-29 03:02:00'
        ORDER BY ts
        """
    ),
    md(
        """
        s05 is plugged into the mains: its payload has no battery, so `battery` is `NULL`. As features per sensor:
        the site, the lowest battery level and the firmware versions seen.
        """
    ),
    sql(
        """
        SELECT sensor_id,
               payload->'site'->>'id' AS site,
               min(json_get_int(payload, 'battery')) AS min_battery,
               count(DISTINCT payload->>'fw') AS firmware_versions,
               max(payload->>'fw') AS latest_fw
        FROM readings
        GROUP BY 1, 2
        ORDER BY 1
        """
    ),
    md(
        """
        s03 and s11 received a firmware update during the second week. Keep that in mind for the last section.

        ## A materialized view of hourly features

        Hourly features per sensor are used again and again: by the training set below, by a dashboard, by the
        model at prediction time. A **materialized view** runs its query once and keeps the result, so reading it
        is as cheap as reading a small table.

        In production, readings keep arriving. Here an in-memory copy of the readings, `live_readings`, plays the
        live table that new rows are inserted into:
        """
    ),
    sql(
        """
        CREATE TABLE live_readings AS SELECT * FROM readings
        """
    ),
    sql(
        """
        CREATE MATERIALIZED VIEW hourly_features AS
        SELECT sensor_id, time_bucket(INTERVAL '1 hour', ts) AS hour,
               avg(temperature) AS avg_temp, stddev(temperature) AS std_temp,
               min(temperature) AS min_temp, max(temperature) AS max_temp,
               count(*) AS n, count(error_code) AS errors
        FROM live_readings
        GROUP BY 1, 2
        """
    ),
    md(
        """
        `sys.views` lists the materialized views: the query that defines each one, the tables it reads, its number
        of rows, when it was last computed and how long that took. `incremental` says whether a live source could
        keep it up to date by updating only the groups that change: true for counts, sums, averages, minimums,
        maximums and standard deviations, whose partial results combine; false for joins or percentiles, which
        must be recomputed. Over live Kafka tables Kestrel keeps views up to date continuously.
        """
    ),
    sql(
        """
        SELECT * FROM sys.views
        """
    ),
    md(
        """
        The last hours of sensor s01:
        """
    ),
    sql(
        """
        SELECT sensor_id, hour, round(avg_temp, 2) AS avg_temp, n
        FROM hourly_features
        WHERE sensor_id = 's01' AND hour >= '2026-05-05 22:00:00'
        ORDER BY hour
        """
    ),
    md(
        """
        Three new readings arrive, just after midnight on 6 May:
        """
    ),
    sql(
        """
        INSERT INTO live_readings VALUES
          (TIMESTAMP '2026-05-06 00:00:40', 's01', 16.4, NULL, '{"fw": "1.4.2", "battery": 9, "site": {"id": "plant-1"}}'),
          (TIMESTAMP '2026-05-06 00:02:10', 's01', 16.5, NULL, '{"fw": "1.4.2", "battery": 9, "site": {"id": "plant-1"}}'),
          (TIMESTAMP '2026-05-06 00:03:40', 's01', 16.9, 101, '{"fw": "1.4.2", "battery": 8, "site": {"id": "plant-1"}}')
        """
    ),
    md(
        """
        Over an ordinary table, a materialized view is a **snapshot**: it still shows what the readings were when
        it was created. The new hour is not there:
        """
    ),
    sql(
        """
        -- before REFRESH: the snapshot taken at CREATE
        SELECT sensor_id, hour, round(avg_temp, 2) AS avg_temp, n
        FROM hourly_features
        WHERE sensor_id = 's01' AND hour >= '2026-05-05 22:00:00'
        ORDER BY hour
        """
    ),
    md(
        """
        `REFRESH MATERIALIZED VIEW` runs the query again and replaces the stored result:
        """
    ),
    sql(
        """
        REFRESH MATERIALIZED VIEW hourly_features
        """
    ),
    sql(
        """
        -- after REFRESH
        SELECT sensor_id, hour, round(avg_temp, 2) AS avg_temp, n, errors
        FROM hourly_features
        WHERE sensor_id = 's01' AND hour >= '2026-05-05 22:00:00'
        ORDER BY hour
        """
    ),
    md(
        """
        `DROP MATERIALIZED VIEW hourly_features` would remove it.

        ## A point-in-time training set

        `data/failures.parquet` holds the labels: maintenance inspections, each recorded at a moment `ts`, saying
        whether the inspector found the sensor failing.
        """
    ),
    sql(
        """
        CREATE EXTERNAL TABLE failures STORED AS PARQUET LOCATION 'data/failures.parquet';
        SELECT count(*) AS inspections, sum(CASE WHEN failed THEN 1 ELSE 0 END) AS failed,
               min(ts) AS first_inspection, max(ts) AS last_inspection
        FROM failures
        """
    ),
    md(
        """
        To train a model that predicts `failed`, each label needs the features **as they were at that moment**: the
        latest reading before the inspection, not one taken after it. A plain join cannot express "latest before":
        joining on the sensor pairs each label with every reading of that sensor, past and future alike, and any
        feature computed from those pairs (the nearest reading, the day's average) peeks at readings that did not
        exist yet when the label was recorded. The model then learns from the future, scores well in testing and
        fails in production. This is called *leakage*. For sensor s03:
        """
    ),
    sql(
        """
        SELECT count(*) AS pairs, sum(CASE WHEN r.ts > f.ts THEN 1 ELSE 0 END) AS from_the_future
        FROM failures f JOIN readings r ON f.sensor_id = r.sensor_id
        WHERE f.sensor_id = 's03'
        """
    ),
    md(
        """
        Half of those pairs join a label with a reading taken after it.

        `ASOF JOIN` matches each left row with **one** right row: among those with equal keys (`f.sensor_id =
        r.sensor_id`), the latest one satisfying the time condition (`f.ts >= r.ts`: at or before the label). This
        is DuckDB's syntax. `ASOF LEFT JOIN` keeps labels that have no earlier reading, with `NULL`s;
        `ASOF JOIN` alone would drop them.
        """
    ),
    sql(
        """
        SELECT f.ts, f.sensor_id, f.failed, r.temperature, r.ts AS reading_ts,
               date_part('epoch', f.ts - r.ts) AS reading_age_s
        FROM failures f
        ASOF LEFT JOIN readings r ON f.sensor_id = r.sensor_id AND f.ts >= r.ts
        ORDER BY f.ts, f.sensor_id
        """
    ),
    md(
        """
        One row per label, and each `reading_ts` is at or before its label's `ts`. The age of the reading, in
        seconds, is a useful feature in itself: which labels have a missing or stale reading?
        """
    ),
    sql(
        """
        SELECT f.ts, f.sensor_id, f.failed, r.temperature, r.ts AS reading_ts,
               date_part('epoch', f.ts - r.ts) AS reading_age_s
        FROM failures f
        ASOF LEFT JOIN readings r ON f.sensor_id = r.sensor_id AND f.ts >= r.ts
        WHERE r.ts IS NULL OR f.ts - r.ts > INTERVAL '10 minutes'
        ORDER BY f.ts
        """
    ),
    md(
        """
        s20's installation check came before its first reading: no features, but the label is kept by
        `ASOF LEFT JOIN`. The two inspections of s19 during its silence get a reading 2 and 12 hours old: the
        model should know that, through `reading_age_s`.

        Snowflake writes the same join with a `MATCH_CONDITION` clause, and this form keeps every left row
        (DataFusion adopted it after version 55; Kestrel accepts both). Counting labels and matches:
        """
    ),
    sql(
        """
        SELECT count(*) AS labels, count(r.temperature) AS with_reading
        FROM failures f
        ASOF JOIN readings r MATCH_CONDITION (f.ts >= r.ts) ON f.sensor_id = r.sensor_id
        """
    ),
    md(
        """
        Hourly features come from the materialized view, as of each label too. Careful: the bucket labelled 14:00
        averages readings up to 15:00, so at 14:30 it is not known yet. A bucket can be used once it is complete,
        at `hour + INTERVAL '1 hour'`; the subquery adds that moment as `complete_at`, and the join condition uses
        it. Two `ASOF` joins in one query then give the training set, which `COPY` writes to Parquet for pandas,
        scikit-learn or any training job (`pd.read_parquet('output/training_set.parquet')`):
        """
    ),
    sql(
        """
        COPY (
          SELECT f.ts AS label_ts, f.sensor_id, f.failed,
                 r.temperature, r.ts AS reading_ts, date_part('epoch', f.ts - r.ts) AS reading_age_s, r.error_code,
                 r.payload->>'fw' AS fw, json_get_int(r.payload, 'battery') AS battery,
                 h.hour AS feature_hour, h.avg_temp AS hour_avg_temp, h.std_temp AS hour_std_temp,
                 h.max_temp AS hour_max_temp, h.n AS hour_readings
          FROM failures f
          ASOF LEFT JOIN readings r ON f.sensor_id = r.sensor_id AND f.ts >= r.ts
          ASOF LEFT JOIN (SELECT *, hour + INTERVAL '1 hour' AS complete_at FROM hourly_features) h
            ON f.sensor_id = h.sensor_id AND f.ts >= h.complete_at
          ORDER BY f.ts, f.sensor_id
        ) TO 'output/training_set.parquet' STORED AS PARQUET
        """
    ),
    md(
        """
        Reading the file back, and checking that it is point-in-time correct: one row per label, no reading taken
        after its label, no hourly feature from an hour that had not ended when the label was recorded.
        """
    ),
    sql(
        """
        CREATE EXTERNAL TABLE training_set STORED AS PARQUET LOCATION 'output/training_set.parquet';
        SELECT count(*) AS labels, sum(CASE WHEN failed THEN 1 ELSE 0 END) AS failed,
               count(temperature) AS with_reading,
               sum(CASE WHEN reading_ts > label_ts THEN 1 ELSE 0 END) AS readings_after_label,
               sum(CASE WHEN feature_hour + INTERVAL '1 hour' > label_ts THEN 1 ELSE 0 END) AS unfinished_hours_used
        FROM training_set
        """
    ),
    md(
        f"""
        ## Drift between the two weeks

        A model trained on week 1 assumes week 2 looks alike. **Drift** statistics compare a *reference* sample
        (here week 1) with a *current* one (week 2), per sensor. Both functions are aggregates taking the values
        and a boolean that is true for reference rows, here `ts < TIMESTAMP '{WEEK2}'`:

        * `ks_statistic(x, is_reference)`: the two-sample Kolmogorov–Smirnov statistic D, the largest vertical gap
          between the two samples' cumulative distributions: 0 for identical distributions, 1 when they do not
          overlap at all. It is the same number as `scipy.stats.ks_2samp(reference, current).statistic`.
        * `psi(x, is_reference [, bins])`: the population stability index. The reference's deciles cut the values
          into 10 bins (each holding a tenth of the reference); with r and c the shares of reference and current
          values in a bin, PSI = Σ (c − r) · ln(c / r). Shares are floored at 0.0001 so that an empty bin does not
          make it infinite. The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a
          significant one.
        """
    ),
    sql(
        f"""
        SELECT sensor_id,
               round(ks_statistic(temperature, ts < TIMESTAMP '{WEEK2}'), 3) AS ks,
               round(psi(temperature, ts < TIMESTAMP '{WEEK2}'), 3) AS psi
        FROM readings
        GROUP BY 1
        ORDER BY psi DESC
        """
    ),
    md(
        """
        Four sensors stand out, the other sixteen are stable. Weekly statistics tell the kind of drift; with the
        origin moved to the first day of the data, each "week" is one of the two samples compared above:
        """
    ),
    sql(
        """
        SELECT sensor_id, time_bucket(INTERVAL '1 week', ts, TIMESTAMP '2026-04-22 00:00:00') AS week,
               max(payload->>'fw') AS fw,
               round(avg(temperature), 2) AS avg_temp, round(stddev(temperature), 2) AS std_temp,
               round(max(temperature), 2) AS max_temp
        FROM readings
        WHERE sensor_id IN ('s03', 's11', 's17', 's06', 's01')
        GROUP BY 1, 2
        ORDER BY 1, 2
        """
    ),
    md(
        """
        * s03 and s11 read about 2.5 °C warmer in week 2, since the firmware update to 2.0.0: a calibration
          problem rather than a warmer plant, worth reporting before retraining anything.
        * s17 warms up steadily through week 2, 4 °C by its end: its statistics are lower than s03's although its
          last days drifted further, because the shift builds up gradually.
        * s06's average barely moved but its spread grew (a loose connection, perhaps): KS and PSI, which compare
          whole distributions, both notice; a check on averages alone would not.
        * s01, for comparison, is stable.

        ## Recap

        * `time_bucket(interval, ts [, origin])`: fixed buckets; the default origin (Monday 2000-01-03) makes weeks
          start on Mondays; months are calendar months;
        * window functions with `RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND CURRENT ROW` for rolling
          features, `LAG` for differences;
        * `TUMBLE`, `HOP` and `SESSION` table functions adding `window_start` and `window_end`;
        * `time_bucket_gapfill` with a `WHERE` time range, `locf` and `interpolate`;
        * `->`, `->>` and `json_get_*` on JSON text;
        * `CREATE MATERIALIZED VIEW`, `sys.views`, `REFRESH MATERIALIZED VIEW`;
        * `ASOF [LEFT] JOIN ... ON key = key AND l.ts >= r.ts` and `ASOF JOIN ... MATCH_CONDITION (...)` for
          point-in-time correct features, exported with `COPY ... TO 'output/training_set.parquet'`;
        * `ks_statistic` and `psi` for drift.

        Shift-Tab on a function name shows its documentation.
        """
    ),
]


def main() -> None:
    write(CELLS, NOTEBOOK)


if __name__ == "__main__":
    main()
