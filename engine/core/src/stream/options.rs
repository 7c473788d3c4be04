//! What `CREATE EXTERNAL TABLE ... STORED AS KAFKA LOCATION '...' OPTIONS (...)` asks for, validated up front so
//! that a typo is an error at CREATE, not a silent default.

use datafusion::common::{plan_err, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How message values are decoded into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per message; fields by column name (timestamps as RFC 3339 strings or epoch milliseconds).
    Json,
    /// One CSV record per message, fields in column order.
    Csv,
    /// The key and value as they are: columns `key` and/or `value`, TEXT (UTF-8) or BYTEA.
    Raw,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Raw => "raw",
        }
    }
}

/// Where a new table starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    /// The consumer group's committed offsets (earliest where the group has none); offsets are committed back.
    Group,
}

/// How much of the stream a table keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Everything (bounded by `max_bytes`: the consumer pauses when it is reached).
    All,
    /// The newest n rows.
    Rows(usize),
    /// Rows whose Kafka timestamp is younger than this.
    Time(Duration),
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::All => write!(f, "all"),
            Retention::Rows(n) => write!(f, "{n} rows"),
            Retention::Time(d) => {
                let secs = d.as_secs_f64();
                for (unit, n) in [("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)] {
                    if secs >= n && (secs / n).fract() == 0.0 {
                        let k = secs / n;
                        return write!(f, "{k} {unit}{}", if k == 1.0 { "" } else { "s" });
                    }
                }
                write!(f, "{secs} s")
            }
        }
    }
}

/// A live table's source and settings.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port[,host:port]`, or the in-process demo broker's address when the location's host is `demo`.
    pub bootstrap: String,
    pub topic: String,
    pub format: Format,
    pub start: Start,
    pub group_id: Option<String>,
    pub retention: Retention,
    /// Memory the table may hold before the consumer pauses.
    pub max_bytes: usize,
    /// Column whose value becomes the message key on INSERT.
    pub key_column: Option<String>,
    /// `kafka.<property>` options, passed to librdkafka as they are.
    pub client: BTreeMap<String, String>,
    /// CSV: whether messages carry a header line to skip (never, by default) and the delimiter.
    pub csv_delimiter: u8,
    /// Whether the location named the demo broker.
    pub demo: bool,
}

pub const DEFAULT_MAX_BYTES: usize = 1 << 30;

const KNOWN: &str = "format, start, group.id, retention, max.memory, key.column, delimiter, kafka.<librdkafka property>";

/// Parses `kafka://host:port[,host:port]/topic` and the OPTIONS map (DataFusion prefixes keys without a dot
/// with `format.` and lowercases them).
pub fn parse(location: &str, options: &HashMap<String, String>) -> Result<KafkaOptions> {
    let Some(rest) = location.strip_prefix("kafka://") else {
        return plan_err!(
            "a Kafka table's LOCATION is 'kafka://host:port/topic' (or 'kafka://demo/topic' for the built-in demo broker), got '{location}'"
        );
    };
    let Some((hosts, topic)) = rest.split_once('/') else {
        return plan_err!("LOCATION '{location}' names no topic: use 'kafka://host:port/topic'");
    };
    if hosts.is_empty() {
        return plan_err!("LOCATION '{location}' names no broker: use 'kafka://host:port/topic'");
    }
    let topic = topic.trim_end_matches('/');
    if topic.is_empty()
        || topic.len() > 249
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return plan_err!(
            "'{topic}' is not a valid Kafka topic name (letters, digits, '.', '_' and '-', at most 249)"
        );
    }
    let demo = hosts.eq_ignore_ascii_case("demo");
    let mut o = KafkaOptions {
        bootstrap: hosts.to_string(),
        topic: topic.to_string(),
        format: Format::Json,
        start: Start::Earliest,
        group_id: None,
        retention: Retention::All,
        max_bytes: DEFAULT_MAX_BYTES,
        key_column: None,
        client: BTreeMap::new(),
        csv_delimiter: b',',
        demo,
    };
    let mut keys: Vec<&String> = options.keys().collect();
    keys.sort();
    for key in keys {
        let value = options[key].trim();
        let name = key.strip_prefix("format.").unwrap_or(key);
        match name {
            "format" => {
                o.format = match value.to_ascii_lowercase().as_str() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    "raw" => Format::Raw,
                    other => {
                        return plan_err!("option 'format': '{other}' is not json, csv or raw")
                    }
                }
            }
            "start" => {
                o.start = match value.to_ascii_lowercase().as_str() {
                    "earliest" => Start::Earliest,
                    "latest" => Start::Latest,
                    "group" => Start::Group,
                    other => {
                        return plan_err!(
                            "option 'start': '{other}' is not earliest, latest or group"
                        )
                    }
                }
            }
            "group.id" => o.group_id = Some(value.to_string()),
            "retention" => o.retention = parse_retention(value)?,
            "max.memory" => o.max_bytes = parse_bytes(value)?,
            "key.column" => o.key_column = Some(value.to_string()),
            "delimiter" => {
                let b = value.as_bytes();
                if b.len() != 1 {
                    return plan_err!("option 'delimiter' must be one character, got '{value}'");
                }
                o.csv_delimiter = b[0];
            }
            _ => match name.strip_prefix("kafka.") {
                Some(property) if !property.is_empty() => {
                    o.client.insert(property.to_string(), value.to_string());
                }
                _ => return plan_err!("unknown option '{name}' for a Kafka table; known: {KNOWN}"),
            },
        }
    }
    if o.start == Start::Group && o.group_id.is_none() {
        return plan_err!("option 'start' 'group' needs a consumer group: add 'group.id' 'name'");
    }
    if o.client.contains_key("bootstrap.servers") || o.client.contains_key("group.id") {
        return plan_err!(
            "set the brokers in LOCATION and the group with 'group.id', not with kafka.bootstrap.servers/kafka.group.id"
        );
    }
    Ok(o)
}

/// `10000 rows`, `1 hour`, `30 minutes`, `90 s`, `all`.
pub fn parse_retention(value: &str) -> Result<Retention> {
    let v = value.trim().to_ascii_lowercase();
    if v == "all" || v == "none" || v.is_empty() {
        return Ok(Retention::All);
    }
    let usage =
        "retention is a row count ('100000 rows') or a time ('1 hour', '30 minutes', '90 s')";
    let (num, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')) {
        Some(i) => (v[..i].trim(), v[i..].trim()),
        None => (v.as_str(), "rows"),
    };
    let Ok(n) = num.replace('_', "").parse::<f64>() else {
        return plan_err!("option 'retention': '{value}': {usage}");
    };
    if n <= 0.0 || !n.is_finite() {
        return plan_err!("option 'retention' must be positive, got '{value}'");
    }
    let secs = match unit {
        "row" | "rows" => {
            if n.fract() != 0.0 {
                return plan_err!("option 'retention': a row count must be whole, got '{value}'");
            }
            return Ok(Retention::Rows(n as usize));
        }
        "ms" | "millisecond" | "milliseconds" => n / 1000.0,
        "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return plan_err!("option 'retention': unknown unit '{unit}': {usage}"),
    };
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= Duration::from_secs(100 * 365 * 86400) => Ok(Retention::Time(d)),
        _ => plan_err!("option 'retention': '{value}' is longer than a century; use 'all'"),
    }
}

/// `512MB`, `1 GiB`, `1048576`.
pub fn parse_bytes(value: &str) -> Result<usize> {
    let v = value.trim().to_ascii_lowercase();
    let i = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = (v[..i].trim(), v[i..].trim());
    let scale: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return plan_err!("option 'max.memory': '{value}' is not a size like '512MB' or '2GB'")
        }
    };
    match num.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * scale) as usize),
        _ => plan_err!("option 'max.memory': '{value}' is not a size like '512MB' or '2GB'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn locations_and_options_parse() {
        let o = parse(
            "kafka://localhost:9092/sensor-readings",
            &opts(&[
                ("format.format", "CSV"),
                ("format.start", "group"),
                ("group.id", "g1"),
                ("format.retention", "1 hour"),
                ("kafka.fetch.wait.max.ms", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(o.bootstrap, "localhost:9092");
        assert_eq!(o.topic, "sensor-readings");
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.start, Start::Group);
        assert_eq!(o.retention, Retention::Time(Duration::from_secs(3600)));
        assert_eq!(
            o.client.get("fetch.wait.max.ms").map(String::as_str),
            Some("10")
        );
        assert!(parse("kafka://demo/t", &HashMap::new()).unwrap().demo);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |loc: &str, o: &[(&str, &str)]| parse(loc, &opts(o)).unwrap_err().to_string();
        assert!(err("localhost:9092/t", &[]).contains("kafka://host:port/topic"));
        assert!(err("kafka://h:1", &[]).contains("names no topic"));
        assert!(err("kafka://h:1/a b", &[]).contains("not a valid Kafka topic"));
        assert!(
            err("kafka://h:1/t", &[("format.fromat", "json")]).contains("unknown option 'fromat'")
        );
        assert!(err("kafka://h:1/t", &[("format.format", "avro")]).contains("not json, csv or raw"));
        assert!(err("kafka://h:1/t", &[("format.start", "group")]).contains("group.id"));
        assert!(err("kafka://h:1/t", &[("format.retention", "5 parsecs")]).contains("unknown unit"));
        assert_eq!(
            parse_retention("10000 rows").unwrap(),
            Retention::Rows(10000)
        );
        assert_eq!(parse_retention("250").unwrap(), Retention::Rows(250));
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
    }
}
