//! What the process sets up for itself before it creates any file.

use rustix::fs::Mode;

/// Files and folders the server creates from now on (the database, its `-wal` and `-shm`, the
/// secret key, the data folder) are its own user's only: they hold every PIN and the key that
/// encrypts sessions, and on a Kodi box Kodi's file manager could otherwise copy them.
pub fn restrict_new_files() {
    rustix::process::umask(Mode::from_raw_mode(0o077));
}
