//! `visage destruction-records export`: the destruction records of a period, as JSON or CSV,
//! for the regulator or the operator's own register.

use std::io::Write;

use chrono::{DateTime, Utc};
use visage_store::{DestructionFilter, DestructionRecord};

use crate::config::Config;
use crate::resources::open_store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of records, as `GET /v1/destruction-records` gives them.
    Json,
    /// A header line and a line per record; categories as `category=items` joined by `;`.
    Csv,
}

const PAGE: u32 = 1000;

/// Writes the records destroyed in `[from, to)` to `out`, oldest first; returns how many.
pub async fn export(
    config: &Config,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let store = open_store(config).await?;
    let mut written = 0u64;
    let outcome = async {
        match format {
            Format::Json => out.write_all(b"[")?,
            Format::Csv => writeln!(out, "{}", CSV_HEADER)?,
        }
        let mut offset = 0;
        loop {
            let filter = DestructionFilter { from, to, limit: PAGE, offset };
            let page = store.destruction_records(&filter).await?;
            for record in &page {
                match format {
                    Format::Json => {
                        let separator = if written == 0 { "\n" } else { ",\n" };
                        write!(out, "{separator}{}", serde_json::to_string(record)?)?;
                    }
                    Format::Csv => writeln!(out, "{}", csv_line(record))?,
                }
                written += 1;
            }
            if page.len() < PAGE as usize {
                break;
            }
            offset += PAGE;
        }
        if format == Format::Json {
            out.write_all(if written == 0 { b"]\n" } else { b"\n]\n" })?;
        }
        out.flush()?;
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    outcome.map(|()| written)
}

const CSV_HEADER: &str =
    "id,destroyed_at,subject_id,collection,external_id,ground,categories,method,performed_by";

fn csv_line(r: &DestructionRecord) -> String {
    let categories: Vec<String> =
        r.categories.iter().map(|c| format!("{}={}", c.category, c.items)).collect();
    [
        r.id.to_string(),
        r.destroyed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        r.subject_id.to_string(),
        r.collection.to_string(),
        r.external_id.clone().unwrap_or_default(),
        r.ground.as_str().to_owned(),
        categories.join(";"),
        r.method.clone(),
        r.performed_by.clone(),
    ]
    .iter()
    .map(|field| csv_field(field))
    .collect::<Vec<_>>()
    .join(",")
}

/// RFC 4180: a field holding a comma, a quote or a line break is quoted, quotes doubled.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("erasure_request"), "erasure_request");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
