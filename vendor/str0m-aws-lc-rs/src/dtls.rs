//! DTLS implementation using dimpl with AWS-LC-RS backend.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use str0m_proto::crypto::CryptoError;
use str0m_proto::crypto::DtlsVersion;
use str0m_proto::crypto::dtls::ProtocolVersion;
use str0m_proto::crypto::dtls::{DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider};

// ============================================================================
// DTLS Provider Implementation
// ============================================================================

#[derive(Debug)]
pub(super) struct AwsLcRsDtlsProvider;

impl DtlsProvider for AwsLcRsDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        // Use dimpl's rcgen-based certificate generation (with aws-lc-rs backend)
        dimpl::certificate::generate_self_signed_certificate()
            .ok()
            .map(|cert| DtlsCert {
                certificate: cert.certificate,
                private_key: cert.private_key,
            })
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let dimpl_cert = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };

        let config = config(mtu, self.is_test())?;
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, dimpl_cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, dimpl_cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, dimpl_cert, now),
            _ => {
                return Err(CryptoError::Other(format!(
                    "Unsupported DTLS version: {dtls_version}"
                )));
            }
        };

        Ok(Box::new(AwsLcRsDtlsInstance { dtls }))
    }
}

/// The dimpl configurations made so far, by MTU and test mode.
///
/// Amphi patch. `dimpl::ConfigBuilder::build` validates the crypto provider
/// every time (a key exchange in each group it offers, and signatures): about
/// 0.9 ms, nearly all of building an `Rtc`. A server makes two connections
/// for each participant who joins, on the thread that forwards everyone's
/// media. A config holds only settings, the same for every connection with
/// the same MTU, and dimpl takes it behind an `Arc` to be shared.
static CONFIGS: Mutex<Configs> = Mutex::new(Configs(Vec::new()));

/// The dimpl configuration for a connection: made once per MTU and test mode.
fn config(mtu: Option<usize>, test: bool) -> Result<Arc<dimpl::Config>, CryptoError> {
    // Poisoned only by a panic in `build`, which leaves the list as it was.
    let mut configs = CONFIGS.lock().unwrap_or_else(|e| e.into_inner());
    configs.get(mtu, test)
}

/// What a configuration depends on: the MTU, and whether in test mode.
type ConfigKey = (Option<usize>, bool);

struct Configs(Vec<(ConfigKey, Arc<dimpl::Config>)>);

impl Configs {
    /// Configurations kept: an application uses one MTU, or a few.
    const KEPT: usize = 8;

    fn get(&mut self, mtu: Option<usize>, test: bool) -> Result<Arc<dimpl::Config>, CryptoError> {
        if let Some((_, config)) = self.0.iter().find(|(key, _)| *key == (mtu, test)) {
            return Ok(config.clone());
        }

        // Create a default dimpl Config with AWS-LC-RS crypto provider
        // ICE verifies return routability before DTLS, making server cookies redundant.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        if test {
            // We need the DTLS impl to be deterministic for the BWE tests.
            builder = builder.dangerously_set_rng_seed(42);
        }

        let config = builder
            .build()
            .map_err(|e| CryptoError::Other(format!("dimpl config creation failed: {}", e)))?;

        let config = Arc::new(config);
        if self.0.len() == Self::KEPT {
            self.0.remove(0);
        }
        self.0.push(((mtu, test), config.clone()));
        Ok(config)
    }
}

// ============================================================================
// DTLS Instance Wrapper
// ============================================================================

struct AwsLcRsDtlsInstance {
    dtls: dimpl::Dtls,
}

impl std::fmt::Debug for AwsLcRsDtlsInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsLcRsDtlsInstance").finish()
    }
}

impl DtlsInstance for AwsLcRsDtlsInstance {
    fn set_active(&mut self, active: bool) {
        self.dtls.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.dtls.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.dtls.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_with_one_mtu_share_one_config() {
        let a = config(Some(1150), false).unwrap();
        let b = config(Some(1150), false).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "each connection validated the provider anew"
        );
        assert_eq!(a.mtu(), 1150);

        let mut configs = Configs(Vec::new());
        let other = configs.get(Some(1200), false).unwrap();
        assert!(Arc::ptr_eq(
            &other,
            &configs.get(Some(1200), false).unwrap()
        ));
        assert_eq!(other.mtu(), 1200);
        let test = configs.get(Some(1200), true).unwrap();
        assert!(!Arc::ptr_eq(&other, &test));
        let unset = configs.get(None, false).unwrap();
        assert_eq!(unset.mtu(), dimpl::Config::builder().build().unwrap().mtu());
    }

    #[test]
    fn configs_kept_are_bounded() {
        let mut configs = Configs(Vec::new());
        for mtu in 0..(Configs::KEPT * 2) {
            configs.get(Some(1000 + mtu), false).unwrap();
        }
        assert_eq!(configs.0.len(), Configs::KEPT);
        // The newest are kept.
        assert_eq!(
            configs.0.last().unwrap().0,
            (Some(1000 + Configs::KEPT * 2 - 1), false)
        );
    }

    #[test]
    fn dtls_instances_are_made_with_the_kept_config() {
        let provider = AwsLcRsDtlsProvider;
        let cert = provider.generate_certificate().unwrap();
        // An MTU no other test uses: the list is the process's.
        let key = (Some(1151), provider.is_test());
        for _ in 0..2 {
            let dtls = provider
                .new_dtls(&cert, Instant::now(), DtlsVersion::Dtls12, Some(1151))
                .unwrap();
            assert!(!dtls.is_active());
        }
        let configs = CONFIGS.lock().unwrap_or_else(|e| e.into_inner());
        let kept = configs.0.iter().filter(|(k, _)| *k == key).count();
        assert_eq!(kept, 1, "new_dtls did not take its config from the list");
    }
}
