//! HTTP at the edge: the accept loop, the route table, extractors, middleware, handlers, the
//! JSON shapes, the error mapping and the OpenAPI document. Everything here calls into
//! `crate::service`.

pub mod dto;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod server;

pub use error::{ApiError, ApiResult};
pub use routes::router;
