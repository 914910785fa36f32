//! Liveness and readiness probes.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct HealthDto {
    /// ok, or unavailable.
    pub status: String,
    /// Each check by name: ok, or what is wrong.
    #[schema(value_type = Object)]
    pub checks: serde_json::Map<String, serde_json::Value>,
}
