//! The visage HTTP service. Layers, imports running one way (top to bottom):
//!
//! - [`startup`]: `Application::build(config)` binds (port 0 in tests) and returns the address.
//! - [`http`]: the route table, extractors, middleware, handlers, DTOs, error mapping, OpenAPI.
//! - [`jobs`]: offline work the command line runs (re-embedding, the image sweep).
//! - [`service`]: the rules (enrolment, matching, subjects, erasure, feedback, audit), no HTTP.
//! - [`state`] and [`resources`]: what everything shares, and how it is opened.
//! - [`inference`], [`gallery`], [`outage`], [`shared`], [`observability`], [`config`]: the parts
//!   below.

pub use visage_config as config;
pub mod gallery;
pub mod http;
pub mod inference;
pub mod jobs;
pub mod observability;
pub mod outage;
pub mod resources;
pub mod service;
pub mod shared;
pub mod startup;
pub mod state;

/// Thresholds and the calibration file, at their old path.
pub use visage_calibration as calibration;

pub use config::{Config, Profile};
pub use startup::Application;
pub use state::{App, AppState};
