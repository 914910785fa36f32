//! The visage HTTP service: `Application::build(config)` binds and returns the address;
//! handlers stay thin over the face pipeline (on a bounded inference pool) and the store.

pub mod app;
pub mod auth;
pub mod config;
pub mod dto;
pub mod error;
pub mod gallery;
pub mod idempotency;
pub mod images;
pub mod input;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod pool;
pub mod reembed;
pub mod routes;
pub mod shared_state;
pub mod telemetry;

/// Thresholds and the calibration file, at their old path.
pub use visage_calibration as calibration;

pub use app::{App, AppState, Application};
pub use config::{Config, Profile};
