//! Model inference off the async runtime: what runs on an inference thread ([`pipeline`]) and
//! the bounded pool of threads that runs it ([`pool`]).

pub mod pipeline;
pub mod pool;

pub use pipeline::{Detection, LivenessVerdict, Pick, Pipeline, Probe, StageTimes};
pub use pool::{InferenceError, InferencePool, QueueWait};
