//! What the server process sets up at start. Its files are its own user's only: the data
//! folder 0700; the database, its `-wal` and `-shm`, and the secret key 0600; whether the
//! server creates them or finds them. Its open-files limit is raised to the hard limit.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

mod common;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

const SERVER: &str = env!("CARGO_BIN_EXE_kodi-tickets-server");

/// The server binary on a data folder of its own, with the usual umask of a login shell.
fn server(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(SERVER);
    cmd.args(args);
    configure(&mut cmd, dir);
    cmd
}

fn configure(cmd: &mut Command, dir: &Path) {
    common::on_data_folder(cmd, dir)
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", "0")
        .env("ROCKET_KODI_SCRIPT", "/bin/true")
        .env("ROCKET_EXEC_LOG", dir.join("exec.log"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server and returns once it serves (it has opened its database by then).
fn serve(dir: &Path) -> Running {
    start(server(dir, &[]))
}

fn start(mut command: Command) -> Running {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("Rocket has launched") {
            return running;
        }
    }
    panic!("the server stopped before serving:\n{log}");
}

#[test]
fn a_fresh_data_folder_and_its_files_are_the_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let _server = serve(dir.path());
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data folder");
    for file in ["kt.db", "kt.db-wal", "kt.db-shm", "secret.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[test]
fn an_existing_open_data_folder_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let open = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    for file in ["kt.db", "kt.db-wal", "kt.db-shm"] {
        std::fs::write(data.join(file), "").unwrap();
        open(&data.join(file), 0o644);
    }
    // A key as the server writes it: 64 bytes in base64.
    let key = format!("{}==", "Q".repeat(86));
    std::fs::write(data.join("secret.key"), key).unwrap();
    open(&data.join("secret.key"), 0o644);
    open(&data, 0o755);

    let out = server(dir.path(), &["device", "add", "TV"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&data), 0o700, "data folder");
    for file in ["kt.db", "secret.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Started with a soft limit below the hard one, as systemd starts services.
    let mut command = Command::new("sh");
    command.args(["-c", "ulimit -Sn 256 && exec \"$0\"", SERVER]);
    configure(&mut command, dir.path());
    let server = start(command);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.0.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "soft = hard: {line}");
    assert_ne!(numbers[0], "256", "{line}");
}
