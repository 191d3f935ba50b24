//! Webhooks: a receiver in the test gets room and participant events, each
//! signed (HMAC-SHA256 over "<timestamp>.<body>"), in order, including a
//! retry of the first event after it answered 500.

mod ops_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use amphi_client::TestParticipant;
use hmac::{Hmac, Mac};
use ops_common::*;
use sha2::Sha256;

const SECRET: &str = "webhook-test-secret-0123456789";

struct Delivery {
    headers: HashMap<String, String>,
    body: String,
    /// What the receiver answered.
    status: u16,
}

/// Answers 500 to the first request and 200 to the others.
fn receiver() -> (String, mpsc::Receiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hooks/amphi", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            assert!(
                request_line.starts_with("POST /hooks/amphi HTTP/1.1"),
                "{request_line:?}"
            );
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers["content-length"].parse().expect("a length");
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("the body");
            let status = if n == 0 { 500 } else { 200 };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let body = String::from_utf8(body).expect("utf-8 JSON");
            if tx
                .send(Delivery {
                    headers,
                    body,
                    status,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

fn verify(d: &Delivery) -> serde_json::Value {
    let ts = &d.headers["amphi-timestamp"];
    let sig = d.headers["amphi-signature"]
        .strip_prefix("sha256=")
        .expect("sha256= prefix");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", d.body).as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, want, "signature of {}", d.body);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts: u64 = ts.parse().expect("a unix time");
    assert!(now.abs_diff(ts) < 60, "a fresh timestamp");
    assert_eq!(d.headers["content-type"], "application/json");
    serde_json::from_str(&d.body).expect("a JSON body")
}

#[test]
fn webhooks_are_signed_retried_and_in_order() {
    let (url, deliveries) = receiver();
    let dir = TempDir::new("webhooks");
    let secret = dir.write("hook.key", &format!("{SECRET}\n"));
    let config = dir.write(
        "amphi.toml",
        &format!(
            "[[webhooks]]\nurl = \"{url}\"\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    );
    let srv = start_dev_with_config(&config);
    let room = "hooks-101";
    let alice = TestParticipant::spawn(
        srv.url(),
        &srv.dev_token(room, "alice@uni.example", "Alice").unwrap(),
    )
    .expect("alice joins");
    let bob = TestParticipant::spawn(srv.url(), &srv.dev_token(room, "bob", "Bob").unwrap())
        .expect("bob joins");
    let (alice_id, bob_id) = (alice.id().to_owned(), bob.id().to_owned());
    bob.leave().expect("bob leaves");
    alice.leave().expect("alice leaves");

    let mut got = Vec::new();
    while got.iter().filter(|d: &&Delivery| d.status == 200).count() < 6 {
        let d = deliveries
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("only {} deliveries; log:\n{}", got.len(), srv.log()));
        got.push(d);
    }
    // The first attempt got 500; the same event (same delivery id) came again.
    assert_eq!(got[0].status, 500);
    assert_eq!(
        got[0].headers["amphi-delivery"],
        got[1].headers["amphi-delivery"]
    );
    assert_eq!(got[0].body, got[1].body, "a retry carries the same event");

    let events: Vec<serde_json::Value> = got[1..].iter().map(verify).collect();
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            let who = e["participant"]["id"].as_str().unwrap_or("");
            format!("{} {who}", e["event"].as_str().unwrap())
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(
        summary,
        [
            "room_started".to_owned(),
            format!("participant_joined {alice_id}"),
            format!("participant_joined {bob_id}"),
            format!("participant_left {bob_id}"),
            format!("participant_left {alice_id}"),
            "room_ended".to_owned(),
        ]
    );
    assert!(events.iter().all(|e| e["room"] == room));
    assert_eq!(events[1]["participant"]["identity"], "alice@uni.example");
    assert_eq!(events[1]["participant"]["name"], "Alice");
    assert_eq!(events[3]["reason"], "left");
    // Identities never reach the info-level log.
    assert!(!srv.log().contains("alice@uni.example"), "{}", srv.log());
}
