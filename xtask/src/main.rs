//! `cargo xtask`: parses the command line, then dispatches. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use xtask::cli::{Cli, Command};
use xtask::{bench, ci, pipeline};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(args) => pipeline::image(&cli.global, args),
        Command::Deploy(args) => pipeline::deploy(&cli.global, args),
        Command::Rollback(args) => pipeline::rollback(&cli.global, args),
        Command::Promote(args) => pipeline::promote(&cli.global, args),
        Command::Bootstrap(args) => pipeline::bootstrap(&cli.global, args),
        Command::Local(action) => pipeline::local(&cli.global, action),
        Command::Ci(args) => ci::run(&cli.global, args),
        Command::Bench(args) => bench::run(&cli.global, args),
    };
    pipeline::exit(result, cli.global.verbose)
}
