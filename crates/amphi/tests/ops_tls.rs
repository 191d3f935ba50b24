//! HTTPS served by amphi itself: the page and the signalling WebSocket over
//! TLS, and a certificate reload on SIGHUP that new handshakes see while an
//! open WSS connection goes on.

mod ops_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amphi_client::tungstenite;
use ops_common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Accepts any certificate and remembers the last one seen.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection; returns it and the SHA-256 of the server's certificate.
fn connect(addr: SocketAddr) -> (Tls, String) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    let der = recorder
        .seen
        .lock()
        .unwrap()
        .clone()
        .expect("a certificate");
    (tls, fingerprint(&der))
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn https_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let (mut tls, fp) = connect(addr);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    // A peer closing without close_notify is an error to rustls; the body is in.
    let _ = tls.read_to_end(&mut raw);
    let (status, body) = parse_response(&raw);
    (status, body, fp)
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM, DER fingerprint).
fn self_signed() -> (String, String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (
        cert.pem(),
        signing_key.serialize_pem(),
        fingerprint(cert.der()),
    )
}

#[test]
fn https_and_wss_with_certificate_reload_on_sighup() {
    let dir = TempDir::new("tls");
    let (cert1, key1, fp1) = self_signed();
    let cert = dir.write("cert.pem", &cert1);
    let key = dir.write("key.pem", &key1);
    let config = dir.write(
        "amphi.toml",
        &format!(
            "[http.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let srv = start_dev_with_config(&config);
    assert!(srv.url().starts_with("https://"), "{}", srv.url());
    let addr = http_addr(&srv);

    let (status, body, fp) = https_get(addr, "/api/info");
    assert_eq!((status, fp.as_str()), (200, fp1.as_str()), "{body}");
    assert!(body.contains("\"version\""), "{body}");
    assert_eq!(https_get(addr, "/readyz").0, 200);

    // Signalling over WSS: join, and keep the connection.
    let (tls, _) = connect(addr);
    let (mut ws, _) = tungstenite::client(format!("wss://{addr}/rtc"), tls).expect("WSS upgrade");
    let token = srv.dev_token("tls-room", "alice", "Alice").unwrap();
    ws.send(tungstenite::Message::text(format!(
        r#"{{"type":"join","token":"{token}"}}"#
    )))
    .unwrap();
    let first = (0..20)
        .map(|_| ws.read().expect("an answer"))
        .find(|m| m.is_text())
        .expect("a text message");
    assert!(first.to_text().unwrap().contains("\"joined\""), "{first:?}");

    // A new certificate in the same files, and SIGHUP.
    let (cert2, key2, fp2) = self_signed();
    std::fs::write(&cert, cert2).unwrap();
    std::fs::write(&key, key2).unwrap();
    signal(srv.pid(), "HUP");
    wait_for_log(&srv, "TLS certificate reloaded", Duration::from_secs(10));
    let (status, _, fp) = https_get(addr, "/api/info");
    assert_eq!(
        (status, fp.as_str()),
        (200, fp2.as_str()),
        "new handshakes get the new certificate"
    );

    // The WSS connection opened before the reload still works.
    ws.send(tungstenite::Message::text(r#"{"type":"ping"}"#))
        .unwrap();
    let pong = (0..20)
        .map(|_| ws.read().expect("the old connection is open"))
        .find(|m| m.to_text().is_ok_and(|t| t.contains("\"pong\"")));
    assert!(
        pong.is_some(),
        "a pong on the connection opened before the reload"
    );

    // A broken certificate file is refused and the current one stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    signal(srv.pid(), "HUP");
    wait_for_log(&srv, "not reloaded", Duration::from_secs(10));
    assert_eq!(https_get(addr, "/api/info").2, fp2);
}
