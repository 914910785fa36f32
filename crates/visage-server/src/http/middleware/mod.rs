//! Layers around the handlers: the request context (id, span, metrics, log line) around
//! everything, the role check in front of every keyed route, and `Idempotency-Key` on the
//! routes that create something.

pub mod idempotency;
pub mod request_context;
pub mod role;
