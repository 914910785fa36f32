//! The API's JSON shapes, one module per area. A request type is what the handler parses and
//! what the OpenAPI document shows, with the limits the server enforces. Image fields are
//! documentation only: the image extractor takes them out (file parts in multipart, base64 in
//! JSON) before the other fields are parsed.

pub mod analysis;
pub mod audit;
pub mod collections;
pub mod destruction;
pub mod face;
pub mod health;
pub mod keys;
pub mod matching;
pub mod overview;
pub mod review;
pub mod subjects;

use serde::Deserialize;

pub use analysis::*;
pub use audit::*;
pub use collections::*;
pub use destruction::*;
pub use face::*;
pub use health::*;
pub use keys::*;
pub use matching::*;
pub use overview::*;
pub use review::*;
pub use subjects::*;

use crate::http::error::ApiError;

/// An image field: a file part in multipart/form-data, base64 (or a data URL) in JSON. The
/// image extractor takes it out before the request's other fields are parsed, so as a field
/// of a parsed request it is always absent.
#[derive(Debug, Default, Deserialize)]
pub struct ImageField(serde::de::IgnoredAny);

/// Reads a flag that may arrive as a JSON bool or, from a form or query string, as text.
pub fn lenient_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Text(String),
    }
    match Option::<Either>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Either::Bool(b)) => Ok(Some(b)),
        Some(Either::Text(t)) => match t.as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!("{t:?} is not true or false"))),
        },
    }
}

/// Checks an optional number against the range the document gives for it.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: Option<T>,
    min: T,
    max: T,
) -> Result<(), ApiError> {
    match value {
        Some(v) if v < min || v > max => Err(ApiError::invalid(format!("{name} must lie in [{min}, {max}]"))),
        _ => Ok(()),
    }
}

/// Reads a number that may arrive as JSON number or, from a form or query string, as text.
pub fn lenient_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Number(T),
        /// JSON Schema counts 3.0 as an integer; serde does not.
        Whole(f64),
        Text(String),
    }
    match Option::<Either<T>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Whole(n)) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{n:.0}")
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{n} is out of range"))),
        Some(Either::Whole(n)) => Err(serde::de::Error::custom(format!("{n} is not a whole number"))),
        Some(Either::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a number"))),
    }
}
