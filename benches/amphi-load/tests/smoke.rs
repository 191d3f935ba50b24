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

/// Runs amphi-load against a fresh server with `args` after the common
/// ones; returns its JSON result and, for messages, everything it printed.
fn run_load(scenario: &str, extra: &[&str]) -> (serde_json::Value, String) {
    // One load at a time: two debug servers and load generators side by
    // side on a two-core CI machine would measure each other.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = TestServer::start_dev(amphi_bin()).expect("start amphi serve --dev");
    let dir = std::env::temp_dir().join(format!(
        "amphi-load-smoke-{}-{scenario}-{}",
        std::process::id(),
        extra.len()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_amphi-load"))
        .args([
            "--dev",
            "--url",
            server.url(),
            "--scenario",
            scenario,
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
        ])
        .args(extra)
        .arg("--json")
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
    let _ = std::fs::remove_dir_all(&dir);
    (
        r,
        format!("{text}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
    )
}

/// Everyone joined and received media, and nothing was lost.
fn assert_complete(r: &serde_json::Value, participants: u64, context: &str) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {context}"));
    assert_eq!(n("participants"), participants, "{context}");
    assert_eq!(n("participants_ready"), participants, "{context}");
    assert_eq!(n("participants_failed"), 0, "{context}");
    assert_eq!(n("subscribers_without_media"), 0, "{context}");
    assert!(n("forwarded_packets") > 0, "{context}");
    assert!(n("sent_packets") > 0, "{context}");
    assert_eq!(n("lost_packets"), 0, "{context}");
    assert_eq!(r["loss_ratio"].as_f64(), Some(0.0), "{context}");
}

#[test]
fn lecture_1_to_20_loses_nothing() {
    let (r, context) = run_load("lecture-20", &["--floor-core", "0"]);
    let context = context.as_str();
    assert_complete(&r, 21, context);
    assert_eq!(r["simulcast"].as_bool(), Some(false), "{context}");
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
    // The floor was measured, and the server, which does far more per
    // packet than encrypt and send it, reached only a share of it.
    let floor = r["floor_us_per_packet"].as_f64().unwrap_or(0.0);
    assert!(floor > 0.0, "{context}");
    let share = r["share_of_floor"].as_f64().unwrap_or(0.0);
    assert!(share > 0.0 && share < 1.0, "{context}");
    for key in [
        "sfu_cpu_seconds",
        "sfu_rss_bytes",
        "forwarded_packets_per_cpu_second",
    ] {
        assert!(!r[key].is_null(), "{key} missing: {context}");
    }
}

/// The teacher's camera in three simulcast layers: every student gets
/// video, from one layer, and nothing is lost.
#[test]
fn a_simulcast_lecture_loses_nothing() {
    let (r, context) = run_load("lecture-10", &["--simulcast"]);
    let context = context.as_str();
    assert_complete(&r, 11, context);
    assert_eq!(r["simulcast"].as_bool(), Some(true), "{context}");
    assert!(r["delivery_ratio"].is_null(), "{context}");
    // Three layers go in, one comes out to each student: over the 5 s
    // window at most the top layer's 156 packets/s each (with a margin for
    // keyframes), where all three would be about 250; and at least a good
    // part of the smallest layer's 30 each.
    let video = r["forwarded_video_packets"].as_u64().unwrap_or(0);
    let students = 10 * 5;
    assert!(
        (students * 15..=students * 190).contains(&video),
        "{video} video packets: {context}"
    );
}
