//! `[log]`: the log line format and the level filter.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

pub(super) fn validate(raw: &RawLog) -> Result<LogConfig, ConfigError> {
    let format = match raw.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(
                "log.format",
                format!("is `{other}`"),
                "use \"text\" or \"json\"",
            ));
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&raw.level).is_err() {
        return Err(ConfigError::invalid(
            "log.level",
            format!("`{}` is not a log filter", raw.level),
            "use error, warn, info, debug or trace (or a tracing filter like \"authgate=debug\")",
        ));
    }
    Ok(LogConfig {
        format,
        level: raw.level.clone(),
    })
}
