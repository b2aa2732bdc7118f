//! What the process sets up for itself before it creates any file or takes connections.

use rustix::fs::Mode;

/// Files and folders the server creates from now on (the database, its `-wal` and `-shm`, the
/// secret key, the data folder) are its own user's only: they hold every PIN and the key that
/// encrypts sessions, and on a Kodi box Kodi's file manager could otherwise copy them.
pub fn restrict_new_files() {
    rustix::process::umask(Mode::from_raw_mode(0o077));
}

/// Lets the server hold as many open files (connections among them) as the system allows it:
/// services often start with a soft limit of 1,024, which idle connections from one client
/// could use up.
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(hard) = limit.maximum else {
        return;
    };
    if limit.current.is_some_and(|soft| soft >= hard) {
        return;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!("open files limit raised to {hard}"),
        Err(e) => tracing::warn!("cannot raise the open files limit to {hard}: {e}"),
    }
}
