//! Functions that build command lines for external tools. No I/O happens here.

pub mod docker;
pub mod terraform;
