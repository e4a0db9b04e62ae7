//! The `hashrig` binary: parse, run, print the error chain, exit 0 ok / 1 failure / 2 usage;
//! a closed output pipe is a quiet 0.

use std::process::ExitCode;

use clap::Parser;
use hashrig_cli::{Cli, is_bad_input, is_broken_pipe, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    hashrig_cli::init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away: done, quietly (see `is_broken_pipe`).
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if is_bad_input(&err) { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}
