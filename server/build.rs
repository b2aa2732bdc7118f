//! Installs the pinned front-end packages (Bootstrap) from the npm registry into `OUT_DIR`
//! so the server can embed them: a LAN with no internet still gets a styled page, and no
//! vendored copy lives in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const ASSETS: &[&str] = &[
    "bootstrap/dist/css/bootstrap.min.css",
    "bootstrap/dist/js/bootstrap.bundle.min.js",
];

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=assets/package.json");
    println!("cargo:rerun-if-changed=assets/package-lock.json");

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let npm_dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("npm");
    fs::create_dir_all(&npm_dir).unwrap();

    let lock = manifest_dir.join("assets/package-lock.json");
    let stamp = npm_dir.join("package-lock.json");
    let up_to_date = fs::read(&stamp).ok() == fs::read(&lock).ok()
        && ASSETS
            .iter()
            .all(|a| npm_dir.join("node_modules").join(a).exists());
    if !up_to_date {
        install(&manifest_dir.join("assets"), &npm_dir);
    }
}

fn install(assets: &Path, npm_dir: &Path) {
    for file in ["package.json", "package-lock.json"] {
        fs::copy(assets.join(file), npm_dir.join(file)).unwrap();
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(npm_dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` for the embedded Bootstrap failed ({s}); is the npm registry reachable?"
        ),
        Err(e) => panic!(
            "cannot run `npm` to fetch the embedded Bootstrap ({e}); install Node.js and npm"
        ),
    }
}
