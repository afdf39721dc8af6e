//! trafficd: per-process bandwidth accounting with eBPF.

mod api;
mod attribution;
mod cli;
mod daemon;
mod drain;
mod enrich;
mod error;
mod exposure;
mod fresh_memory;
mod http;
mod kernel;
mod show;
mod stats;
#[cfg(test)]
mod testnet;
mod tracker;

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// Large blocks on huge pages: see `fresh_memory`.
#[global_allocator]
static ALLOCATOR: fresh_memory::HugeBlocks = fresh_memory::HugeBlocks;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(&args.log_level);
            match daemon::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("trafficd: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Top(args) => top(&args),
        Command::Explain(args) => show::print(args.fetch(), "explain"),
        Command::Exposure(args) => show::print(args.fetch(), "exposure"),
    }
}

fn top(args: &show::TopArgs) -> ExitCode {
    loop {
        match show::top::fetch_and_render(args) {
            Ok(table) => {
                if args.watch.is_some() {
                    // Clear the screen and home the cursor, like watch(1).
                    print!("\x1b[2J\x1b[H");
                }
                print!("{table}");
            }
            Err(err) => {
                eprintln!("trafficd top: {err}");
                return ExitCode::FAILURE;
            }
        }
        match args.watch {
            Some(seconds) => std::thread::sleep(Duration::from_secs(seconds)),
            None => return ExitCode::SUCCESS,
        }
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
