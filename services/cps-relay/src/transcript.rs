//! Which server the card authenticates to (issue 13, "Relay signs only for allowed servers").
//! A TLS 1.2 CertificateVerify signs the whole handshake, and that handshake names its server
//! twice: the ClientHello's SNI (RFC 6066 §3) and the server's Certificate message. The relay
//! signs only when the Certificate message is there and its chain verifies (webpki, through
//! rustls' `WebPkiServerVerifier`) against `signing.server_ca` for a host of
//! `signing.allowed_hosts`. A transcript for any other server is useless to that server's
//! CertificateVerify check, so whoever asks cannot log the professional in anywhere else.
//!
//! A client that connects to an IP address sends no SNI (RFC 6066 forbids IP literals there;
//! rustls omits it): then the chain must verify for one of the IP addresses of
//! `signing.allowed_hosts`, and a transcript without SNI is refused when the list has none.
//!
//! TLS 1.3 hides the server's certificate from the CertificateVerify content (only a hash is
//! signed), so the relay cannot tell the server: that path is off unless
//! `signing.allow_tls13 = true` (the DMP speaks TLS 1.2).
//!
//! Parsing is bounded by the transcript's 256 KiB cap and every length is checked against the
//! bytes present: hostile input is refused, never a panic. A chain verified for a host is
//! remembered for [`VERIFIED_FOR`] (a gateway's handshakes with one DMP carry the same chain),
//! so the card's signing rate is not spent on certificate checks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::SigningSettings;
use crate::error::RelayError;
use crate::handshake::{
    CERTIFICATE, CERTIFICATE_REQUEST, CLIENT_HELLO, HandshakeInput, SERVER_HELLO, tls12_messages,
};

/// Most certificates accepted in the server's chain (the DMP sends two or three).
const MAX_CHAIN: usize = 10;
/// How long a verified (chain, host) is trusted without verifying it again.
pub(crate) const VERIFIED_FOR: Duration = Duration::from_secs(300);
const MAX_REMEMBERED: usize = 64;
const SNI_EXTENSION: u16 = 0;
const HOST_NAME: u8 = 0;

/// The servers the card may authenticate to.
pub(crate) struct ServerPolicy {
    verifier: Arc<WebPkiServerVerifier>,
    hosts: Vec<ServerName<'static>>,
    allow_tls13: bool,
    /// SHA-256 of (host, chain) → when it was verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Why a policy could not be built from its settings.
#[derive(Debug, thiserror::Error)]
#[error("signing.{key}: {reason}")]
pub(crate) struct PolicyError {
    key: &'static str,
    reason: String,
}

impl ServerPolicy {
    pub(crate) fn load(settings: &SigningSettings) -> Result<Self, PolicyError> {
        let roots = service_kit::tls::load_roots(&settings.server_ca).map_err(|e| PolicyError {
            key: "server_ca",
            reason: e.to_string(),
        })?;
        service_kit::tls::install_crypto_provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .map_err(|e| PolicyError {
            key: "server_ca",
            reason: e.to_string(),
        })?;
        let hosts = settings
            .allowed_hosts
            .iter()
            .map(|h| {
                ServerName::try_from(normalise(h))
                    .map(|n| n.to_owned())
                    .map_err(|e| PolicyError {
                        key: "allowed_hosts",
                        reason: format!("`{h}`: {e}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(ServerPolicy {
            verifier,
            hosts,
            allow_tls13: settings.allow_tls13,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Checks the server of `data`, already classified as `input`; returns the host it is
    /// allowed as (for the audit), `None` for TLS 1.3 content.
    pub(crate) fn check(&self, input: HandshakeInput, data: &[u8]) -> Result<Option<String>, RelayError> {
        match input {
            HandshakeInput::Tls13ClientCertificateVerify if self.allow_tls13 => Ok(None),
            HandshakeInput::Tls13ClientCertificateVerify => Err(RelayError::NotHandshakeData(
                "TLS 1.3 CertificateVerify content is refused: its server cannot be checked, and \
                 signing.allow_tls13 is off (the DMP speaks TLS 1.2)"
                    .into(),
            )),
            HandshakeInput::Tls12Transcript => self.check_tls12(data).map(Some),
        }
    }

    fn check_tls12(&self, data: &[u8]) -> Result<String, RelayError> {
        let refuse = |why: String| RelayError::ServerNotAllowed(why);
        let parts = server_parts(data).map_err(|e| refuse(e.to_owned()))?;
        let chain = parts.chain.ok_or_else(|| {
            refuse("the transcript has no server Certificate message, so its server cannot be checked".into())
        })?;
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| refuse("the server's Certificate message is empty".into()))?;
        let candidates: Vec<&ServerName<'static>> = match &parts.sni {
            Some(sni) => {
                let name = ServerName::try_from(normalise(sni)).map_err(|_| {
                    refuse(format!(
                        "the ClientHello's SNI `{}` is not a host name",
                        printable(sni)
                    ))
                })?;
                let allowed: Vec<_> = self.hosts.iter().filter(|h| **h == name).collect();
                if allowed.is_empty() {
                    return Err(refuse(format!(
                        "server `{}` (ClientHello SNI) is not in signing.allowed_hosts",
                        printable(sni)
                    )));
                }
                allowed
            }
            None => {
                let ips: Vec<_> = self
                    .hosts
                    .iter()
                    .filter(|h| matches!(h, ServerName::IpAddress(_)))
                    .collect();
                if ips.is_empty() {
                    return Err(refuse(
                        "the ClientHello names no server (no SNI: the client connected to an IP \
                         address) and signing.allowed_hosts lists no IP address"
                            .into(),
                    ));
                }
                ips
            }
        };
        let now = UnixTime::now();
        let mut last_error = String::new();
        for name in candidates {
            let host = host_text(name);
            let key = remember_key(&host, &chain);
            if self.recently_verified(&key) {
                return Ok(host);
            }
            match self
                .verifier
                .verify_server_cert(leaf, intermediates, name, &[], now)
            {
                Ok(_) => {
                    self.remember(key);
                    return Ok(host);
                }
                Err(e) => last_error = format!("{e} for {host}"),
            }
        }
        Err(refuse(format!(
            "the server's certificate does not verify against signing.server_ca: {last_error}"
        )))
    }
}

impl ServerPolicy {
    fn recently_verified(&self, key: &[u8; 32]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.get(key).is_some_and(|at| at.elapsed() < VERIFIED_FOR)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        if verified.len() < MAX_REMEMBERED {
            verified.insert(key, Instant::now());
        }
    }
}

fn remember_key(host: &str, chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    // Lengths first, so no two different (host, chain) lists hash the same bytes.
    ctx.update(&(host.len() as u64).to_be_bytes());
    ctx.update(host.as_bytes());
    for c in chain {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Host names compare case-insensitively and without the root's trailing dot.
fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn host_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => "?".into(),
    }
}

/// A host name taken from hostile bytes, shortened and stripped of control characters before
/// it reaches an error message or a log.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// What a TLS 1.2 transcript says about its server.
#[derive(Debug, Default)]
struct ServerParts {
    sni: Option<String>,
    /// The server's Certificate message (leaf first), when present.
    chain: Option<Vec<CertificateDer<'static>>>,
}

fn server_parts(data: &[u8]) -> Result<ServerParts, &'static str> {
    let messages = tls12_messages(data)?;
    let mut parts = ServerParts::default();
    let mut seen_server_hello = false;
    for (kind, body) in messages {
        match kind {
            CLIENT_HELLO if !seen_server_hello => parts.sni = client_hello_sni(body)?,
            SERVER_HELLO => seen_server_hello = true,
            // The first Certificate after the ServerHello and before the CertificateRequest is
            // the server's; the client's comes after.
            CERTIFICATE if seen_server_hello => {
                parts.chain = Some(certificate_list(body)?);
                break;
            }
            CERTIFICATE_REQUEST => break,
            _ => {}
        }
    }
    Ok(parts)
}

/// Reads `len`-prefixed (1, 2 or 3 bytes, big-endian) fields off a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("a length in the handshake runs past its message");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn number(&mut self, bytes: usize) -> Result<usize, &'static str> {
        Ok(self
            .take(bytes)?
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b)))
    }

    fn vector(&mut self, len_bytes: usize) -> Result<&'a [u8], &'static str> {
        let n = self.number(len_bytes)?;
        self.take(n)
    }
}

/// The host_name of the ClientHello's server_name extension (RFC 6066 §3), if any.
fn client_hello_sni(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // client_version, random
    r.vector(1)?; // session_id
    r.vector(2)?; // cipher_suites
    r.vector(1)?; // compression_methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut extensions = Reader(r.vector(2)?);
    if !r.0.is_empty() {
        return Err("bytes after the ClientHello's extensions");
    }
    while !extensions.0.is_empty() {
        let kind = extensions.number(2)?;
        let data = extensions.vector(2)?;
        if kind != usize::from(SNI_EXTENSION) {
            continue;
        }
        let mut list = Reader(Reader(data).vector(2)?);
        while !list.0.is_empty() {
            let name_type = list.take(1)?[0];
            let name = list.vector(2)?;
            if name_type == HOST_NAME {
                let host = std::str::from_utf8(name).map_err(|_| "the SNI host name is not text")?;
                return Ok(Some(host.to_owned()));
            }
        }
        return Err("a server_name extension without a host name");
    }
    Ok(None)
}

/// The DER certificates of a TLS 1.2 Certificate message (RFC 5246 §7.4.2).
fn certificate_list(body: &[u8]) -> Result<Vec<CertificateDer<'static>>, &'static str> {
    let mut outer = Reader(body);
    let mut list = Reader(outer.vector(3)?);
    if !outer.0.is_empty() {
        return Err("bytes after the server's certificate list");
    }
    let mut chain = Vec::new();
    while !list.0.is_empty() {
        if chain.len() == MAX_CHAIN {
            return Err("more certificates in the server's chain than the relay accepts (10)");
        }
        chain.push(CertificateDer::from(list.vector(3)?.to_vec()));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::sample_tls12_transcript;

    #[test]
    fn reads_sni_and_server_chain() {
        let data = sample_tls12_transcript(Some("dmp.example"), &[vec![1, 2, 3], vec![4]]);
        let parts = server_parts(&data).expect("parts");
        assert_eq!(parts.sni.as_deref(), Some("dmp.example"));
        let chain = parts.chain.expect("chain");
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), &[1, 2, 3]);
        let none = server_parts(&sample_tls12_transcript(None, &[])).expect("parts");
        assert_eq!(none.sni, None);
        assert_eq!(none.chain.map(|c| c.len()), Some(0));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let base = sample_tls12_transcript(Some("dmp.example"), &[vec![7; 40], vec![8; 20]]);
        for end in 0..base.len() {
            let _ = server_parts(&base[..end]);
            let _ = client_hello_sni(&base[4..end.max(4)]);
            let _ = certificate_list(&base[end..]);
        }
        let mut x: u32 = 0x1234_5678;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut m = base.clone();
            let i = (x as usize) % m.len();
            m[i] = (x >> 8) as u8;
            let j = ((x >> 3) as usize) % m.len();
            m[j] = m[j].wrapping_add((x >> 16) as u8);
            let _ = server_parts(&m);
        }
    }

    #[test]
    fn chain_length_is_bounded() {
        let chain: Vec<Vec<u8>> = (0..11).map(|i| vec![i]).collect();
        let data = sample_tls12_transcript(Some("dmp.example"), &chain);
        assert!(server_parts(&data).is_err());
    }
}
