//! Offline work the command line runs against the same configuration as `visage serve`.

pub mod backup;
pub mod calibration;
pub mod destruction;
pub mod reembed;
pub mod rotation;
pub mod sweep;
