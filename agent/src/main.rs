//! The Kodi-box agent. Until it is built (see the agent issue), it says so honestly.

use std::process::ExitCode;

fn main() -> ExitCode {
    println!("kodi-tickets-agent {}", env!("CARGO_PKG_VERSION"));
    eprintln!("kodi-tickets-agent: not implemented yet");
    ExitCode::from(2)
}
