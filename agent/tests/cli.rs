//! The agent's command line: help, usage errors and a configuration it cannot run with.

mod common;

fn agent(args: &[&str]) -> std::process::Output {
    common::agent_command()
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

#[test]
fn help_usage_errors_and_a_missing_setting_have_their_exit_codes() {
    for args in [&["--help"][..], &["check", "--help"], &["run", "--help"]] {
        let out = agent(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: kodi-tickets-agent"));
    }
    let out = agent(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: kodi-tickets-agent"));
    // No server_url nor token: systemd must not restart it in a loop (78, EX_CONFIG).
    let out = agent(&["check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration"));
    let out = agent(&["--config", "/nonexistent/agent.toml"]);
    assert_eq!(out.status.code(), Some(78), "the unit's --config form");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml"));
    let unit = include_str!("../dist/kodi-tickets-agent.service");
    assert!(
        unit.contains("RestartPreventExitStatus=78"),
        "systemd must not restart a configuration error in a loop"
    );
    let out = agent(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kodi-tickets-agent {}", env!("CARGO_PKG_VERSION"))
    );
}
