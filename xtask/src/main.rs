//! `cargo xtask`: build, push and deploy the SSE streaming Lambda. Parses, then dispatches.

mod aws;
mod base64;
mod bench;
mod ci;
mod cli;
mod facts;
mod http;
#[cfg(test)]
mod lifecycle;
mod local;
mod paths;
mod pipeline;
mod plan;
mod registry;
mod report;
mod run;
mod settings;
mod tools;
#[cfg(test)]
mod workflows;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(args) => pipeline::image(&cli.global, args),
        Command::Deploy(args) => pipeline::deploy(&cli.global, args),
        Command::Rollback(args) => pipeline::rollback(&cli.global, args),
        Command::Local(args) => pipeline::local(&cli.global, args.action),
        Command::Ci(args) => ci::run(&cli.global, args),
        Command::Bench(args) => bench::run(&cli.global, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The chain, one cause a line; never Debug, which would add a backtrace.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
