//! Pure bytes <-> model conversion for every goraft file and message.
//!
//! Everything here takes `&[u8]` and returns values or typed errors with byte offsets. Nothing in
//! this module opens a file, reads the clock or prints.

pub mod batch;
pub mod command;
pub mod conf;
pub mod dialect;
pub mod frame;
pub mod gojson;
pub mod log;
pub mod payload;
pub mod proto;
pub mod rpc;
pub mod snapshot;
pub mod wire;
