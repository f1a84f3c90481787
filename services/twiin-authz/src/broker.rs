//! Who may use use case 3.1 (SPEC.md §3.1, "het systeem is slechts benaderbaar voor" the
//! Resource Broker): callers on the gRPC listener with a client certificate (its chain checked
//! by `server.tls.client_ca`) whose SHA-256 fingerprint or subjectAltName DNS name is one of
//! `resource_broker.identities`. In development with no identities configured, any caller.

use x509_parser::prelude::*;

use crate::error::AuthzError;

/// The refusal of a caller that is not the Resource Broker.
pub(crate) const NOT_THE_BROKER: &str = "Alleen de Resource Broker mag TWIIN assertions aanvragen";

/// The client certificate a caller presented, as far as the audit log and the check need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallerCertificate {
    pub(crate) subject: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub(crate) fingerprint: String,
    pub(crate) dns_names: Vec<String>,
}

impl CallerCertificate {
    pub(crate) fn from_der(der: &[u8]) -> CallerCertificate {
        let fingerprint = service_kit::tls::sha256_fingerprint(der);
        let (subject, dns_names) = match X509Certificate::from_der(der) {
            Ok((_, c)) => {
                let dns = c
                    .subject_alternative_name()
                    .ok()
                    .flatten()
                    .map(|san| {
                        san.value
                            .general_names
                            .iter()
                            .filter_map(|n| match n {
                                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (c.subject().to_string(), dns)
            }
            Err(_) => (String::new(), Vec::new()),
        };
        CallerCertificate {
            subject,
            fingerprint,
            dns_names,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Brokers {
    identities: Vec<String>,
    development: bool,
}

impl Brokers {
    pub(crate) fn new(identities: &[String], development: bool) -> Self {
        Brokers {
            identities: identities.iter().map(|i| i.to_ascii_lowercase()).collect(),
            development,
        }
    }

    /// Whether a caller with `cert` may use 3.1.
    pub(crate) fn admit(&self, cert: Option<&CallerCertificate>) -> Result<(), AuthzError> {
        if self.identities.is_empty() && self.development {
            return Ok(());
        }
        let Some(cert) = cert else {
            return Err(AuthzError::AccessDenied(NOT_THE_BROKER));
        };
        let known = self
            .identities
            .iter()
            .any(|id| *id == cert.fingerprint || cert.dns_names.iter().any(|d| d == id));
        if known {
            Ok(())
        } else {
            Err(AuthzError::AccessDenied(NOT_THE_BROKER))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(fp: &str, dns: &[&str]) -> CallerCertificate {
        CallerCertificate {
            subject: "CN=x".into(),
            fingerprint: fp.into(),
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn identities_are_fingerprints_or_dns_names() {
        let b = Brokers::new(&["AB".repeat(32), "broker.example.nl".into()], false);
        b.admit(Some(&cert(&"ab".repeat(32), &[])))
            .expect("by fingerprint");
        b.admit(Some(&cert("00", &["broker.example.nl"])))
            .expect("by DNS name");
        assert!(b.admit(Some(&cert("00", &["other.example.nl"]))).is_err());
        assert!(b.admit(None).is_err());
    }

    #[test]
    fn only_development_without_identities_is_open() {
        Brokers::new(&[], true).admit(None).expect("development");
        assert!(Brokers::new(&[], false).admit(None).is_err());
    }
}
