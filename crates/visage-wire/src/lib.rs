//! What callers send over the wire, parsed and checked before any of it reaches the service:
//! API key tokens ([`api_key`]), `Idempotency-Key` values and request fingerprints
//! ([`idempotency`]), and the three forms an image request takes ([`image_form`]).
//!
//! No I/O and no framework here, only bytes in and values or errors out, so that the fuzz
//! targets (`fuzz/`) drive exactly the code the server runs.

pub mod api_key;
pub mod idempotency;
pub mod image_form;
