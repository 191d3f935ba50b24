//! The benchmark's smoke test, for CI: a short lecture (1 → 20, 5 s)
//! against the real server, through the real load generator binary.
//! It asserts that everyone got media and nothing was lost; it asserts no
//! timing (CI machines are shared and debug builds are slow).

use std::path::PathBuf;
use std::process::Command;

use amphi_client::TestServer;

/// The `amphi` binary: `AMPHI_BIN`, else the one next to this test's
/// target directory (`cargo test --workspace` builds it), else built now.
fn amphi_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AMPHI_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/smoke-HASH -> target/<profile>/amphi
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .to_path_buf();
    let bin = profile_dir.join("amphi");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "amphi", "--bin", "amphi"])
            .status()
            .expect("running cargo build -p amphi");
        assert!(status.success(), "cargo build -p amphi failed");
    }
    bin
}

#[test]
fn lecture_1_to_20_loses_nothing() {
    let server = TestServer::start_dev(amphi_bin()).expect("start amphi serve --dev");
    let dir = std::env::temp_dir().join(format!("amphi-load-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_amphi-load"))
        .args([
            "--dev",
            "--url",
            server.url(),
            "--scenario",
            "lecture-20",
            "--duration",
            "5s",
            "--warmup",
            "1s",
            "--ramp-batch",
            "10",
            "--ready-timeout",
            "60s",
            "--server-pid",
            &server.pid().to_string(),
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run amphi-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "amphi-load failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{}",
        server.log()
    );
    let text = std::fs::read_to_string(&json).expect("result JSON");
    let r: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {text}"));
    let context = format!("{text}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(n("participants"), 21, "{context}");
    assert_eq!(n("participants_ready"), 21, "{context}");
    assert_eq!(n("participants_failed"), 0, "{context}");
    assert_eq!(n("subscribers_without_media"), 0, "{context}");
    assert!(n("forwarded_packets") > 0, "{context}");
    assert!(n("sent_packets") > 0, "{context}");
    assert_eq!(n("lost_packets"), 0, "{context}");
    assert_eq!(r["loss_ratio"].as_f64(), Some(0.0), "{context}");
    assert!(r["latency_ms"]["p50"].as_f64().is_some(), "{context}");
    // Every packet measured also has the kernel's arrival stamp, and it
    // cannot be later than the moment the packet was handled.
    let arrival = &r["arrival_latency_ms"];
    assert_eq!(
        arrival["samples"].as_u64(),
        r["latency_ms"]["samples"].as_u64(),
        "{context}"
    );
    let (at_socket, handled) = (arrival["p50"].as_f64(), r["latency_ms"]["p50"].as_f64());
    assert!(
        at_socket.is_some_and(|a| handled.is_some_and(|h| a <= h)),
        "{context}"
    );
    for key in [
        "sfu_cpu_seconds",
        "sfu_rss_bytes",
        "forwarded_packets_per_cpu_second",
    ] {
        assert!(!r[key].is_null(), "{key} missing: {context}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
