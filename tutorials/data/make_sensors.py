"""Build the time-series tutorial's data: tutorials/data/sensors.parquet and tutorials/data/failures.parquet.

The two Parquet files are committed, so the tutorial (tutorials/03-time-series-features.ipynb) never runs this
script; run it only after changing something below. It is deterministic: a fixed seed, no clock, no network.

The story: 20 temperature sensors (s01 to s20) in four plants, two weeks of telemetry from Wednesday 2026-04-22
00:00 to Wednesday 2026-05-06 00:00, and the results of maintenance inspections (failed or not) on those sensors.

sensors.parquet, one row per reading, sorted by time (zstd):
    ts           timestamp[us] (no time zone)  when the reading was taken, whole seconds
    sensor_id    string                        s01 ... s20
    temperature  double                        degrees Celsius, two decimals
    error_code   int32, nullable               NULL, or 101 low battery, 204 read timeout, 301 over temperature
    payload      string (JSON text)            '{"fw": "1.4.2", "battery": 87, "site": {"id": "plant-3"}}';
                                               mains-powered sensors (s05, s10, s15, s20) send no "battery"

    * Each sensor reports on its own cadence: every ~30 s, 1 min, 1.5 min or 2 min (±10 % jitter).
    * Temperature = the sensor's base + a daily cycle peaking at 15:00 + slow noise (AR(1), ~30 min memory) + read
      noise.
    * Some sensors go silent for a while (see SILENCES), so gap filling matters; s20 was installed a day late.
    * Drift in the second week (from 2026-04-29): s03 and s11 got firmware 2.0.0 at 2026-04-29 03:00, which reads
      2.5 °C too warm; s17 warms up gradually (+4 °C by the end); s06's read noise grows from 0.2 to 1.5 °C. Other sensors are
      stationary, so the same process produces both weeks.

failures.parquet, one row per inspection, sorted by time:
    ts         timestamp[us]  when the inspection was recorded
    sensor_id  string
    failed     bool           the label: did the inspector find the sensor failing?

    * Each sensor is inspected about every 12 hours (a random time in a 3-hour window), once installed.
    * The chance of `failed` grows with how far the sensor's latest reading before the inspection was above its
      normal daily peak, so the drifted sensors fail more in week 2. Labels depend only on the past.
    * s20 has an installation check at 2026-04-23 08:30, before its first reading: no reading to join.

How to run (from the repository root; numpy and pyarrow, e.g. the project's .venv):

    .venv/bin/python tutorials/data/make_sensors.py

Pass --check to print a few facts about the generated data.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SEED = 20260422

START = datetime(2026, 4, 22)  # a Wednesday
END = datetime(2026, 5, 6)
WEEK2 = datetime(2026, 4, 29)
SENSORS = [f"s{i:02d}" for i in range(1, 21)]
SITES = {s: f"plant-{i % 4 + 1}" for i, s in enumerate(SENSORS)}
MAINS_POWERED = {"s05", "s10", "s15", "s20"}
OLD_FIRMWARE = {"s02", "s09", "s16"}  # still on 1.3.9
FW_UPDATE = {"s03": datetime(2026, 4, 29, 3), "s11": datetime(2026, 4, 29, 3)}  # to 2.0.0, which reads warm
INSTALLED = {"s20": datetime(2026, 4, 23, 9)}
# (sensor, silent from, for how long): no readings in [from, from + duration)
SILENCES = [
    ("s05", datetime(2026, 4, 24, 9, 12), timedelta(minutes=95)),
    ("s08", datetime(2026, 4, 27, 2, 0), timedelta(hours=6)),
    ("s19", datetime(2026, 5, 2, 6, 0), timedelta(hours=20)),
    *(("s14", datetime(2026, 4, 22, 9) + timedelta(days=d), timedelta(minutes=25 + 5 * (d % 4))) for d in range(14)),
]


def temperature_drift(sensor: str, t: np.ndarray) -> np.ndarray:
    """Degrees added to the stationary signal (t in seconds since START)."""
    week2 = (WEEK2 - START).total_seconds()
    end = (END - START).total_seconds()
    if sensor in FW_UPDATE:
        return np.where(t >= (FW_UPDATE[sensor] - START).total_seconds(), 2.5, 0.0)
    if sensor == "s17":
        return np.clip((t - week2) / (end - week2), 0.0, None) * 4.0
    return np.zeros_like(t)


def make_sensor(sensor: str, rng: np.random.Generator) -> dict:
    base = rng.uniform(18.0, 26.0)
    amp = rng.uniform(1.0, 3.0)
    cadence = rng.choice([30.0, 60.0, 90.0, 120.0])
    first = (INSTALLED.get(sensor, START) - START).total_seconds()
    span = (END - START).total_seconds()
    steps = rng.uniform(0.9, 1.1, size=int((span - first) / cadence * 1.2) + 10) * cadence
    t = np.round(first + rng.uniform(0, cadence) + np.cumsum(steps))
    t = t[t < span]
    for s, since, length in SILENCES:
        if s == sensor:
            lo = (since - START).total_seconds()
            t = t[(t < lo) | (t >= lo + length.total_seconds())]

    hours = t / 3600.0
    daily = amp * np.cos(2 * np.pi * (hours % 24 - 15) / 24)
    tau, slow_sd = 1800.0, 0.4
    slow = np.empty_like(t)
    x = rng.normal(0, slow_sd)
    prev = t[0]
    shocks = rng.normal(0, 1, size=len(t))
    for k, now in enumerate(t):
        a = np.exp(-(now - prev) / tau)
        x = a * x + np.sqrt(1 - a * a) * slow_sd * shocks[k]
        slow[k] = x
        prev = now
    noise_sd = np.where((sensor == "s06") & (t >= (WEEK2 - START).total_seconds()), 1.5, 0.2)
    temperature = base + daily + slow + rng.normal(0, 1, size=len(t)) * noise_sd + temperature_drift(sensor, t)
    temperature = np.round(temperature, 2)

    if sensor in MAINS_POWERED:
        battery = None
    else:
        battery = np.floor(rng.uniform(55, 100) - hours / 24 * rng.uniform(1.5, 4.5)).clip(1, 100).astype(int)

    error = np.full(len(t), -1, dtype=np.int32)
    error[rng.random(len(t)) < 0.003] = 204
    if battery is not None:
        error[(battery < 15) & (rng.random(len(t)) < 0.05)] = 101
    error[temperature > base + amp + 2.5] = 301

    payloads = []
    for k, sec in enumerate(t):
        when = START + timedelta(seconds=float(sec))
        if sensor in FW_UPDATE and when >= FW_UPDATE[sensor]:
            fw = "2.0.0"
        else:
            fw = "1.3.9" if sensor in OLD_FIRMWARE else "1.4.2"
        doc = {"fw": fw}
        if battery is not None:
            doc["battery"] = int(battery[k])
        doc["site"] = {"id": SITES[sensor]}
        payloads.append(json.dumps(doc))

    return {
        "sensor": sensor,
        "base": base,
        "amp": amp,
        "t": t,
        "temperature": temperature,
        "error": error,
        "payload": payloads,
    }


def make_failures(series: dict[str, dict], rng: np.random.Generator) -> tuple[np.ndarray, list, np.ndarray]:
    times, sensors, failed = [], [], []
    span = (END - START).total_seconds()
    for sensor in SENSORS:
        s = series[sensor]
        inspections = [6 * 3600 + k * 12 * 3600 + rng.uniform(0, 3 * 3600) for k in range(28)]
        if sensor in INSTALLED:
            installed = (INSTALLED[sensor] - START).total_seconds()
            inspections = [installed - 1800] + [at for at in inspections if at > installed]  # installation check
        for at in sorted(np.round(inspections)):
            if at >= span - 3600:
                continue
            i = np.searchsorted(s["t"], at, side="right") - 1  # latest reading at or before the inspection
            stress = 0.0 if i < 0 else max(0.0, s["temperature"][i] - (s["base"] + s["amp"]))
            p = 0.03 + 0.6 * (1 - np.exp(-stress))
            times.append(at)
            sensors.append(sensor)
            failed.append(bool(rng.random() < p))
    order = np.lexsort((np.array(sensors), np.array(times)))
    return np.array(times)[order], [sensors[i] for i in order], np.array(failed)[order]


def to_timestamps(seconds: np.ndarray) -> pa.Array:
    micros = np.datetime64(START, "us") + (np.asarray(seconds) * 1_000_000).astype("timedelta64[us]")
    return pa.array(micros, type=pa.timestamp("us"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="print a few facts about the data")
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    series = {s: make_sensor(s, rng) for s in SENSORS}

    t = np.concatenate([series[s]["t"] for s in SENSORS])
    sensor = np.concatenate([[s] * len(series[s]["t"]) for s in SENSORS])
    temperature = np.concatenate([series[s]["temperature"] for s in SENSORS])
    error = np.concatenate([series[s]["error"] for s in SENSORS])
    payload = np.concatenate([series[s]["payload"] for s in SENSORS])
    order = np.lexsort((sensor, t))
    readings = pa.table(
        {
            "ts": to_timestamps(t[order]),
            "sensor_id": pa.array(sensor[order], type=pa.string()),
            "temperature": pa.array(temperature[order], type=pa.float64()),
            "error_code": pa.array(error[order], type=pa.int32(), mask=error[order] < 0),
            "payload": pa.array(payload[order], type=pa.string()),
        }
    )
    # Delta encoding stores the sorted timestamps as small differences: most of the file's size otherwise.
    pq.write_table(
        readings,
        HERE / "sensors.parquet",
        compression="zstd",
        compression_level=19,
        use_dictionary=["sensor_id", "temperature", "error_code", "payload"],
        column_encoding={"ts": "DELTA_BINARY_PACKED"},
    )

    f_t, f_sensor, f_failed = make_failures(series, rng)
    failures = pa.table(
        {
            "ts": to_timestamps(f_t),
            "sensor_id": pa.array(f_sensor, type=pa.string()),
            "failed": pa.array(f_failed, type=pa.bool_()),
        }
    )
    pq.write_table(failures, HERE / "failures.parquet", compression="zstd", compression_level=19)

    for name in ("sensors.parquet", "failures.parquet"):
        print(f"{name}: {pq.read_metadata(HERE / name).num_rows} rows, {(HERE / name).stat().st_size:,} bytes")
    if args.check:
        df = readings.to_pandas()
        print(df.groupby("sensor_id").size().to_string())
        print(df.head().to_string())
        print(f"failures: {int(f_failed.sum())} failed of {len(f_failed)}")


if __name__ == "__main__":
    main()
