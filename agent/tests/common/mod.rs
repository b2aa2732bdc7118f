//! Shared by the agent's integration tests.

use std::process::Command;

/// The agent binary as a command. Under `KODI_TICKETS_TEST_RUNNER` (an absolute path:
/// `scripts/test-arm` sets qemu-aarch64-static) the runner starts it: a test built for
/// another machine runs under qemu-user, which cannot start that machine's binaries itself.
pub fn agent_command() -> Command {
    let agent = env!("CARGO_BIN_EXE_kodi-tickets-agent");
    match std::env::var_os("KODI_TICKETS_TEST_RUNNER") {
        Some(runner) => {
            let mut command = Command::new(runner);
            command.arg(agent);
            command
        }
        None => Command::new(agent),
    }
}
