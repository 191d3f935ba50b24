//! `/metrics`, `/healthz` and `/readyz`: after a real call between two
//! participants, the Prometheus endpoint shows them and the forwarded
//! packets, and its output is valid Prometheus text format.

mod ops_common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use amphi_client::{MediaKind, TestParticipant};
use ops_common::*;

const WAIT: Duration = Duration::from_secs(30);

/// A strict parser of the Prometheus text format 0.0.4: every sample
/// belongs to a family declared by `# TYPE` before it, names and labels are
/// well-formed, values are numbers, no sample appears twice.
fn parse_prometheus(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, ()> = HashMap::new();
    let mut samples = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for (i, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            if !valid_name(name) || helps.insert(name.into(), ()).is_some() {
                return Err(at("bad or repeated HELP"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("unknown type"));
            }
            if !valid_name(name) || types.insert(name.into(), kind.into()).is_some() {
                return Err(at("bad or repeated TYPE"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue; // a comment
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| at("value is not a number"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                Some(l.strip_suffix('}').ok_or_else(|| at("unclosed labels"))?),
            ),
            None => (series, None),
        };
        if !valid_name(name) {
            return Err(at("bad metric name"));
        }
        if !types.contains_key(name) {
            return Err(at("sample before its # TYPE"));
        }
        if let Some(labels) = labels {
            // k="v" pairs, comma-separated; values may hold escaped quotes.
            let mut rest = labels;
            while !rest.is_empty() {
                let (k, after) = rest.split_once("=\"").ok_or_else(|| at("bad label"))?;
                if !valid_name(k) || k.contains(':') {
                    return Err(at("bad label name"));
                }
                let mut end = None;
                let mut escaped = false;
                for (j, c) in after.char_indices() {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(j);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                let end = end.ok_or_else(|| at("unterminated label value"))?;
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        if samples.insert(series.to_owned(), value).is_some() {
            return Err(at("repeated sample"));
        }
    }
    Ok(samples)
}

#[test]
fn the_parser_is_strict() {
    assert!(parse_prometheus("# TYPE a counter\na 1\n").is_ok());
    assert!(parse_prometheus("a 1\n").is_err(), "no TYPE");
    assert!(parse_prometheus("# TYPE a counter\na{x=\"1} 1\n").is_err());
    assert!(parse_prometheus("# TYPE a counter\na one\n").is_err());
    assert!(parse_prometheus("# TYPE a counter\na 1\na 2\n").is_err());
    assert!(parse_prometheus("# TYPE 1a counter\n").is_err());
}

fn metrics(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"))
}

#[test]
fn metrics_show_a_call_and_parse_as_prometheus_text() {
    let dir = TempDir::new("metrics");
    let config = dir.write("amphi.toml", "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let srv = start_dev_with_config(&config);
    let maddr = metrics_addr(&srv);
    let haddr = http_addr(&srv);

    for addr in [haddr, maddr] {
        assert_eq!(
            http_get(addr, "/healthz").unwrap().0,
            200,
            "/healthz on {addr}"
        );
        assert_eq!(
            http_get(addr, "/readyz").unwrap().0,
            200,
            "/readyz on {addr}"
        );
    }
    // Metrics are on their own address only, not on the public port.
    assert_eq!(http_get(haddr, "/metrics").unwrap().0, 404);

    let idle = metrics(maddr);
    assert_eq!(idle["amphi_participants"], 0.0);
    assert_eq!(idle["amphi_ready"], 1.0);
    // No subscriber, no estimate: a sum of 0, and no made-up min/median.
    assert_eq!(idle["amphi_downlink_estimate_sum_bits_per_second"], 0.0);
    assert_eq!(
        idle["amphi_downlink_estimate_subscribers{le=\"+Inf\"}"],
        0.0
    );
    assert!(
        !idle.contains_key("amphi_downlink_estimate_min_bits_per_second"),
        "{idle:?}"
    );

    let token = |id: &str| srv.dev_token("metrics-room", id, id).expect("a token");
    let alice = TestParticipant::spawn(srv.url(), &token("alice")).expect("alice joins");
    let bob = TestParticipant::spawn(srv.url(), &token("bob")).expect("bob joins");
    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let other = other.id().to_owned();
        me.wait_until(
            |s| {
                s.from(&other, MediaKind::Video).packets >= 60
                    && s.from(&other, MediaKind::Audio).packets >= 50
            },
            WAIT,
        )
        .unwrap_or_else(|e| panic!("{}: no media from {other}: {e}\n{}", me.id(), srv.log()));
    }
    // A refused join, counted by reason.
    let refused = TestParticipant::spawn(srv.url(), "not.a.token");
    assert!(
        refused.is_err()
            || refused.is_ok_and(|p| p.wait_until(|s| s.signalling_closed, WAIT).is_ok())
    );

    // The snapshot is published once a second.
    let m = eventually("metrics to show the call", Duration::from_secs(10), || {
        let m = metrics(maddr);
        (m["amphi_participants"] == 2.0
            && m["amphi_subscribed_tracks"] == 4.0
            && m["amphi_join_failures_total{reason=\"unauthorized\"}"] >= 1.0
            // Both subscriber connections have a send-side estimate.
            && m["amphi_downlink_estimate_subscribers{le=\"+Inf\"}"] == 2.0)
            .then_some(m)
    });
    assert_eq!(m["amphi_rooms"], 1.0);
    assert_eq!(
        m["amphi_published_tracks"], 4.0,
        "two participants, audio and video each"
    );
    assert!(
        m["amphi_rtp_packets_total{direction=\"in\"}"] > 200.0,
        "{m:?}"
    );
    assert!(
        m["amphi_rtp_packets_total{direction=\"out\"}"] > 200.0,
        "forwarded packets: {m:?}"
    );
    assert!(m["amphi_udp_bytes_total{direction=\"in\"}"] > 10_000.0);
    assert!(m["amphi_udp_bytes_total{direction=\"out\"}"] > 10_000.0);
    assert!(
        m["amphi_udp_datagrams_total{direction=\"out\"}"]
            >= m["amphi_rtp_packets_total{direction=\"out\"}"]
    );
    // The downlink estimates: str0m's BWE on each subscriber connection,
    // fed by the clients' transport-wide congestion control feedback.
    let sum = m["amphi_downlink_estimate_sum_bits_per_second"];
    let min = m["amphi_downlink_estimate_min_bits_per_second"];
    let median = m["amphi_downlink_estimate_median_bits_per_second"];
    assert!(
        min > 0.0 && min <= median && 2.0 * median <= sum + 1.0,
        "{m:?}"
    );
    // Buckets are cumulative and end at the count.
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter(|(k, _)| k.starts_with("amphi_downlink_estimate_subscribers{"))
        .map(|(k, v)| {
            let le = k.split('"').nth(1).expect("an le label");
            (le.parse::<f64>().unwrap_or(f64::INFINITY), *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let buckets: Vec<f64> = buckets.into_iter().map(|(_, v)| v).collect();
    assert!(buckets.len() >= 2, "{m:?}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&2.0));
    for family in [
        "amphi_layer_switches_total",
        "amphi_downlink_congestion_events_total",
        "amphi_ice_tcp_connections_total",
        "amphi_turn_allocations_total{transport=\"tls\"}",
        "amphi_nacks_total",
        "amphi_keyframe_requests_total",
        "amphi_packets_lost_total",
    ] {
        assert!(
            m.keys().any(|k| k.starts_with(family)),
            "{family} is exported"
        );
    }

    alice.leave().expect("alice leaves");
    bob.leave().expect("bob leaves");
    eventually(
        "the room to end in the metrics",
        Duration::from_secs(10),
        || {
            let m = metrics(maddr);
            (m["amphi_participants"] == 0.0 && m["amphi_rooms"] == 0.0).then_some(())
        },
    );
}
