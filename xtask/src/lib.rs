//! `cargo xtask`: build, push and deploy the container Lambdas of a monorepo with Terraform.
//!
//! Data flows one way: settings → facts → plan → runner → report. The README's
//! "Architecture" section names the module that owns each concern.

pub mod audit;
pub mod aws;
pub mod bench;
pub mod ci;
pub mod cli;
pub mod cmdline;
pub mod facts;
pub mod http;
pub mod local;
pub mod paths;
pub mod pipeline;
pub mod plan;
pub mod registry;
pub mod report;
pub mod retry;
pub mod runner;
pub mod scan;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod smoke;
pub mod tools;
