//! `amphi config check` and `amphi serve` on good and bad configurations,
//! through the real binary: exit status, messages naming the key,
//! environment overrides, and no secret in the output.

mod ops_common;

use std::process::Command;

use ops_common::*;

const GOOD: &str = "[media]\npublic_ips = [\"192.0.2.7\"]\n[[auth.keys]]\nid = \"portal\"\nsecret = \"s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t\"\n";

#[test]
fn config_check_explains_errors_and_exits_1() {
    let dir = TempDir::new("config");
    let good = dir.write("good.toml", GOOD);
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let bad = dir.write(
        "bad.toml",
        &format!("{GOOD}[metrics]\nlisten = \"nine thousand\"\n[log]\nlevel = \"[[\"\n"),
    );
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .env("AMPHI_MEDIA_UDP_PORT", "lots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("AMPHI_MEDIA_UDP_PORT"), "{err}");

    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("metrics.listen") && err.contains("log.level"),
        "every problem, each with its key: {err}"
    );
    assert!(!err.contains("s3cr3t"), "no secret in messages: {err}");

    // The server refuses to start on the same file.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--udp-port",
            "0",
            "--config",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve refused: {err}");
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "never listened"
    );
}
