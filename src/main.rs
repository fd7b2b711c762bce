//! `atoitalk`: the API server, the scheduler and maintenance commands.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = atoitalk::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(atoitalk::cli::run(cli));
    // Whatever is still running (a stuck blocking task) must not keep the
    // process from exiting after shutdown.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
