//! Functions that build command lines for external tools. No I/O happens here.

pub mod bootstrap;
pub mod docker;
pub mod terraform;
pub mod version;
