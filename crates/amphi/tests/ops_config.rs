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

#[test]
fn config_check_validates_the_turn_section() {
    let dir = TempDir::new("config-turn");
    // A good [turn] (TCP and UDP, secret from a file) passes.
    let secret = dir.write("turn.key", "turn-s3cr3t-turn-s3cr3t-turn-s3cr3t\n");
    let good = dir.write(
        "good.toml",
        &format!(
            "{GOOD}[turn]\nenabled = true\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    );
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

    let check = |text: &str| {
        let path = dir.write("bad.toml", &format!("{GOOD}{text}"));
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        err
    };
    // Every problem of the section at once, each on its own line with its
    // key; the secret itself never appears.
    let err = check(
        "[turn]\nenabled = true\nsecret = \"sh0rt\"\nudp_port = 7881\n\
         tcp_port = 5349\ntls_port = 5349\nrealm = \"\"\n\
         max_allocations = 0\nhost = \"turn.example.edu/x\"\n",
    );
    for (key, what) in [
        ("turn.secret:", "shorter than 16 bytes"),
        ("turn.udp_port:", "media.udp_port"),
        ("turn.tls_port:", "[http.tls]"),
        ("turn.tls_port:", "turn.tcp_port"),
        ("turn.realm:", "empty"),
        ("turn.max_allocations:", "at least 1"),
        ("turn.host:", "turn.example.edu/x"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(what)),
            "a line with {key} … {what}:\n{err}"
        );
    }
    assert!(!err.contains("sh0rt"), "no secret in messages: {err}");

    // A type error stops parsing, so it comes alone, with its key.
    let err = check("[turn]\nenabled = true\ncredential_ttl = \"0s\"\n");
    assert!(err.contains("turn.credential_ttl"), "{err}");

    // No secret at all; an unreadable secret file; no listener.
    let err = check("[turn]\nenabled = true\n");
    assert!(err.contains("turn.secret:"), "{err}");
    let err = check(
        "[turn]\nenabled = true\nsecret_file = \"/nonexistent/turn.key\"\n\
         udp_port = 0\ntcp_port = 0\n",
    );
    assert!(
        err.lines()
            .any(|l| l.contains("turn.secret_file:") && l.contains("/nonexistent/turn.key")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("turn.udp_port:") && l.contains("no TURN listener")),
        "{err}"
    );
    // A bad value from the environment names the variable.
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&good)
        .env("AMPHI_TURN_TLS_PORT", "tls")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("AMPHI_TURN_TLS_PORT"), "{err}");

    // A disabled section is not checked: it must not stop a server.
    let off = dir.write(
        "off.toml",
        &format!("{GOOD}[turn]\nenabled = false\nrealm = \"\"\n"),
    );
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&off)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
