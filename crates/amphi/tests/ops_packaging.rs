//! The files in deploy/: the systemd unit passes `systemd-analyze verify`
//! and keeps its hardening; the Dockerfile is a well-formed multi-stage
//! build ending in a small non-root runtime image; the reverse-proxy
//! examples pass the WebSocket upgrade.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(file: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let (_, unit) = deploy("amphi.service");
    for directive in [
        "User=amphi",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == directive),
            "amphi.service lacks {directive}"
        );
    }
    // systemd-analyze checks that ExecStart's program exists: point the
    // copy it checks at the binary under test.
    let dir = std::env::temp_dir().join(format!("amphi-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("amphi.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/amphi", env!("CARGO_BIN_EXE_amphi")),
    )
    .unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "systemd-analyze is needed for this test ({e}); scripts/install-deps installs it (apt-get install systemd)"
        ),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Messages about other units on the machine are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("amphi")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

/// Dockerfile instructions: (keyword, arguments), continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if t.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (k, a) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((k.to_owned(), a.trim().to_owned()));
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    out
}

#[test]
fn dockerfile_is_a_multi_stage_build_of_one_binary() {
    let (_, text) = deploy("Dockerfile");
    let ins = instructions(&text);
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    for (k, a) in &ins {
        assert!(KNOWN.contains(&k.as_str()), "unknown instruction {k}");
        assert!(!a.is_empty(), "{k} without arguments");
    }
    let stages: Vec<&str> = ins
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert!(
        stages.len() >= 3,
        "web client, server and runtime stages: {stages:?}"
    );
    assert!(
        stages.iter().any(|s| s.starts_with("node:")),
        "the web client is built with node"
    );
    assert!(
        stages.iter().any(|s| s.starts_with("rust:")),
        "the server is built with rust"
    );
    let runtime = stages.last().unwrap();
    assert!(
        runtime.contains("slim") || runtime.contains("distroless"),
        "a small runtime image: {runtime}"
    );
    // Every --from names an earlier stage.
    let names: Vec<&str> = stages
        .iter()
        .filter_map(|s| s.split(" AS ").nth(1))
        .collect();
    for (_, a) in ins.iter().filter(|(k, _)| k == "COPY") {
        if let Some(from) = a.strip_prefix("--from=") {
            let stage = from.split_whitespace().next().unwrap();
            assert!(
                names.contains(&stage),
                "COPY --from={stage}: no such stage in {names:?}"
            );
        }
    }
    // The runtime stage: the binary only, not root, exec-form entrypoint.
    let last_from = ins.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let runtime_ins = &ins[last_from..];
    assert!(runtime_ins.iter().any(|(k, a)| k == "COPY"
        && a.starts_with("--from=build")
        && a.contains("/usr/local/bin/amphi")));
    assert!(
        runtime_ins
            .iter()
            .any(|(k, a)| k == "USER" && a != "root" && a != "0")
    );
    for kw in ["ENTRYPOINT", "CMD"] {
        let (_, a) = runtime_ins
            .iter()
            .find(|(k, _)| k == kw)
            .unwrap_or_else(|| panic!("no {kw}"));
        let v: Vec<String> =
            serde_json::from_str(a).unwrap_or_else(|e| panic!("{kw} is not exec form: {e}"));
        assert!(!v.is_empty());
    }
    let exposed: Vec<&str> = runtime_ins
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .flat_map(|(_, a)| a.split_whitespace())
        .collect();
    assert!(
        exposed.contains(&"7880/tcp") && exposed.contains(&"7881/udp"),
        "{exposed:?}"
    );
    // The build copies what the workspace needs.
    let (_, cargo) = (
        0,
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
            .unwrap(),
    );
    for member in ["crates/", "benches/"] {
        if cargo.contains(&format!("\"{member}")) {
            assert!(
                ins.iter()
                    .any(|(k, a)| k == "COPY" && a.starts_with(member)),
                "the build stage copies {member}"
            );
        }
    }
}

#[test]
fn compose_file_runs_the_image_with_host_networking() {
    let (_, text) = deploy("docker-compose.yml");
    for needle in [
        "dockerfile: deploy/Dockerfile",
        "network_mode: host",
        "AMPHI_MEDIA_PUBLIC_IPS",
        "stop_grace_period",
    ] {
        assert!(text.contains(needle), "docker-compose.yml lacks {needle}");
    }
    assert!(!text.contains('\t'), "YAML forbids tabs");
}

#[test]
fn reverse_proxy_examples_pass_the_websocket_upgrade() {
    let (_, nginx) = deploy("nginx.conf");
    for needle in [
        "location = /rtc",
        "proxy_http_version 1.1",
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_read_timeout",
    ] {
        assert!(nginx.contains(needle), "nginx.conf lacks {needle}");
    }
    assert_eq!(
        nginx.matches('{').count(),
        nginx.matches('}').count(),
        "balanced braces"
    );
    let (_, caddy) = deploy("Caddyfile");
    assert!(caddy.contains("reverse_proxy 127.0.0.1:7880"));
    assert_eq!(
        caddy.matches('{').count(),
        caddy.matches('}').count(),
        "balanced braces"
    );
}
