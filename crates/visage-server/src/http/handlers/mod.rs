//! One file per area of the API. A handler takes the request apart, calls one service
//! function and shapes its answer; the rules live in `crate::service`.

pub mod analysis;
pub mod audit;
pub mod collections;
pub mod console;
pub mod destruction;
pub mod health;
pub mod keys;
pub mod matching;
pub mod metrics;
pub mod overview;
pub mod review;
pub mod subjects;

use visage_store::CollectionId;

use crate::http::error::{ApiError, ApiResult};

/// The named collection, or `default`.
fn collection_or_default(name: Option<&str>) -> ApiResult<CollectionId> {
    name.map_or_else(
        || Ok(CollectionId::default_collection()),
        |n| CollectionId::parse(n).map_err(ApiError::invalid),
    )
}
