//! The DTLS certificate the server's connections present.
//!
//! str0m makes a key pair and a self-signed certificate for each connection
//! unless it is given one: about 40 µs of the 52 it takes to build a
//! connection, twice per join, on the media thread. One certificate serves
//! every connection made within a day, as in Janus and mediasoup:
//! - the key exchange is ephemeral (ECDHE), so sharing the certificate's
//!   key costs no forward secrecy;
//! - a browser checks the certificate only against the fingerprint in the
//!   SDP it received over the authenticated signalling connection.
//!
//! A new one each day: the certificate is valid for a year, and a server
//! that runs for months should not show one fingerprint all that time.

use std::time::{Duration, Instant};

use str0m::crypto::dtls::DtlsCert;
use str0m::crypto::{CryptoProvider, from_feature_flags};
use tracing::{info, warn};

/// How long one certificate is given to new connections.
pub const ROTATION: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Default)]
pub(crate) struct Certificate {
    /// The certificate and when it was made.
    current: Option<(DtlsCert, Instant)>,
}

impl Certificate {
    /// The certificate for a connection made at `now`. `None` if none can
    /// be made: str0m then tries on its own, as it would have anyway.
    pub(crate) fn for_connection(&mut self, now: Instant) -> Option<DtlsCert> {
        let fresh = self
            .current
            .as_ref()
            .is_some_and(|(_, made)| now.saturating_duration_since(*made) < ROTATION);
        if !fresh {
            let generated = match CryptoProvider::get_default() {
                Some(p) => p.dtls_provider.generate_certificate(),
                None => from_feature_flags().dtls_provider.generate_certificate(),
            };
            match generated {
                Some(cert) => {
                    info!("new DTLS certificate for new connections");
                    self.current = Some((cert, now));
                }
                // Keeps the old one, if any: better than none.
                None => warn!("could not generate a DTLS certificate"),
            }
        }
        self.current.as_ref().map(|(cert, _)| cert.clone())
    }
}
