//! The communication protocols a data interface may name.

/// A data interface's `communicationProtocol`, parsed (case-insensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1 / 5.
    Mqtt,
    /// Apache Kafka.
    Kafka,
    /// HTTP: an ingest endpoint on the engine, or a webhook sink.
    Http,
    /// MongoDB.
    MongoDb,
    /// PostgreSQL.
    PostgreSql,
    /// SQLite, embedded.
    Sqlite,
    /// Files: JSON lines or CSV.
    File,
    /// The paper's DR&P simulator: random walk or replay.
    Simulator,
    /// The engine's in-process data bus (a topic with no external system behind it).
    Bus,
    /// Anything else (kept as written).
    Other(String),
}

impl Protocol {
    /// Every protocol DDA knows, for messages.
    pub const KNOWN: &'static [Protocol] = &[
        Self::Mqtt,
        Self::Kafka,
        Self::Http,
        Self::MongoDb,
        Self::PostgreSql,
        Self::Sqlite,
        Self::File,
        Self::Simulator,
        Self::Bus,
    ];

    /// Parses a protocol name as written in a data interface.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "mqtt" | "mqtts" => Self::Mqtt,
            "kafka" => Self::Kafka,
            "http" | "https" | "webhook" => Self::Http,
            "mongodb" | "mongo" => Self::MongoDb,
            "postgresql" | "postgres" => Self::PostgreSql,
            "sqlite" => Self::Sqlite,
            "file" | "jsonl" | "csv" => Self::File,
            "simulator" | "simulation" => Self::Simulator,
            "bus" | "internal" | "in-process" => Self::Bus,
            _ => Self::Other(text.to_owned()),
        }
    }

    /// The canonical name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Mqtt => "MQTT",
            Self::Kafka => "Kafka",
            Self::Http => "HTTP",
            Self::MongoDb => "MongoDB",
            Self::PostgreSql => "PostgreSQL",
            Self::Sqlite => "SQLite",
            Self::File => "File",
            Self::Simulator => "Simulator",
            Self::Bus => "Bus",
            Self::Other(name) => name,
        }
    }

    /// Whether data on this protocol exists only inside the engine.
    #[must_use]
    pub const fn is_internal(&self) -> bool {
        matches!(self, Self::Bus)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_round_trip() {
        for p in Protocol::KNOWN {
            assert_eq!(&Protocol::parse(p.name()), p);
            assert_eq!(&Protocol::parse(&p.name().to_ascii_uppercase()), p);
        }
        assert_eq!(Protocol::parse("Modbus"), Protocol::Other("Modbus".into()));
        assert!(Protocol::Bus.is_internal() && !Protocol::Mqtt.is_internal());
    }
}
