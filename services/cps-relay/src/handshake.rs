//! **Decision — the relay is not a signing oracle** (SPEC.md §1): it signs only data shaped like
//! TLS client-authentication signing input, and refuses anything else with the reason:
//!
//! - TLS 1.3: the CertificateVerify content of RFC 8446 §4.4.3 — 64 spaces, the *client*
//!   context string "TLS 1.3, client CertificateVerify", a zero byte, and a SHA-256 or SHA-384
//!   transcript hash. Never with RSA PKCS#1 v1.5 (RFC 8446 forbids it in CertificateVerify).
//! - TLS 1.2: the handshake messages from the ClientHello up to and including the client's
//!   ClientKeyExchange (RFC 5246 §7.4.8), in the order of a full handshake with client
//!   authentication: ClientHello, ServerHello, [Certificate, [CertificateStatus]],
//!   [ServerKeyExchange], CertificateRequest, ServerHelloDone, Certificate, ClientKeyExchange.

use crate::error::RelayError;
use crate::scheme::Scheme;

/// Largest TLS 1.2 transcript accepted (server certificate chains included).
pub(crate) const MAX_TLS12_TRANSCRIPT: usize = 256 * 1024;

const TLS13_CLIENT_CONTEXT: &[u8] = b"TLS 1.3, client CertificateVerify";
const TLS13_SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify";

/// What the data was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeInput {
    Tls13ClientCertificateVerify,
    Tls12Transcript,
}

impl HandshakeInput {
    pub(crate) fn name(self) -> &'static str {
        match self {
            HandshakeInput::Tls13ClientCertificateVerify => "tls1.3",
            HandshakeInput::Tls12Transcript => "tls1.2",
        }
    }
}

/// Checks that `data` is handshake signing input that `scheme` may sign.
pub(crate) fn classify(scheme: Scheme, data: &[u8]) -> Result<HandshakeInput, RelayError> {
    let refuse = |reason: &str| RelayError::NotHandshakeData(reason.to_owned());
    if data.len() >= 64 && data[..64].iter().all(|b| *b == 0x20) {
        let rest = &data[64..];
        if rest.starts_with(TLS13_SERVER_CONTEXT) {
            return Err(refuse(
                "TLS 1.3 server CertificateVerify content: the relay signs only as a TLS client",
            ));
        }
        if !rest.starts_with(TLS13_CLIENT_CONTEXT) {
            return Err(refuse(
                "64 spaces not followed by the TLS 1.3 client CertificateVerify context string",
            ));
        }
        let rest = &rest[TLS13_CLIENT_CONTEXT.len()..];
        if rest.first() != Some(&0) || !matches!(rest.len() - 1, 32 | 48) {
            return Err(refuse(
                "TLS 1.3 CertificateVerify content must end with 0x00 and a 32- or 48-byte hash",
            ));
        }
        if scheme == Scheme::RsaPkcs1Sha256 {
            return Err(refuse(
                "RSA PKCS#1 v1.5 cannot sign a TLS 1.3 CertificateVerify (RFC 8446 §4.2.3); use TLS 1.2 or PSS",
            ));
        }
        return Ok(HandshakeInput::Tls13ClientCertificateVerify);
    }
    check_tls12_transcript(data).map_err(|r| RelayError::NotHandshakeData(r.to_owned()))?;
    Ok(HandshakeInput::Tls12Transcript)
}

// Handshake message types (RFC 5246 §7.4, RFC 6066 §8).
pub(crate) const CLIENT_HELLO: u8 = 1;
pub(crate) const SERVER_HELLO: u8 = 2;
pub(crate) const CERTIFICATE: u8 = 11;
const SERVER_KEY_EXCHANGE: u8 = 12;
pub(crate) const CERTIFICATE_REQUEST: u8 = 13;
const SERVER_HELLO_DONE: u8 = 14;
const CLIENT_KEY_EXCHANGE: u8 = 16;
const CERTIFICATE_STATUS: u8 = 22;

/// The handshake messages of a TLS 1.2 transcript, as (type, body), after the bounds checks.
pub(crate) fn tls12_messages(data: &[u8]) -> Result<Vec<(u8, &[u8])>, &'static str> {
    if data.is_empty() {
        return Err("empty data");
    }
    if data.len() > MAX_TLS12_TRANSCRIPT {
        return Err("larger than any TLS 1.2 handshake transcript the relay accepts (256 KiB)");
    }
    let mut messages = Vec::with_capacity(10);
    let mut pos = 0usize;
    while pos < data.len() {
        if messages.is_empty() && data[0] != CLIENT_HELLO {
            return Err("does not start with a TLS ClientHello");
        }
        let header = data
            .get(pos..pos + 4)
            .ok_or("truncated handshake message header")?;
        let len = (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
        let body = data
            .get(pos + 4..pos + 4 + len)
            .ok_or("handshake message longer than the data")?;
        if messages.is_empty() {
            // client_version: TLS 1.0 to 1.2 (a TLS 1.3 ClientHello also says 3,3 here).
            if body.len() < 2 + 32 + 1 || body[0] != 3 || !(1..=3).contains(&body[1]) {
                return Err("ClientHello with an unexpected version or too short");
            }
        }
        messages.push((header[0], body));
        pos += 4 + len;
    }
    Ok(messages)
}

fn check_tls12_transcript(data: &[u8]) -> Result<(), &'static str> {
    let types: Vec<u8> = tls12_messages(data)?.iter().map(|(t, _)| *t).collect();
    // Expected order of a full TLS 1.2 handshake with client authentication.
    let mut it = types.iter().copied().peekable();
    let mut expect = |t: u8, what: &'static str| -> Result<(), &'static str> {
        if it.next() == Some(t) { Ok(()) } else { Err(what) }
    };
    expect(CLIENT_HELLO, "does not start with a ClientHello")?;
    expect(SERVER_HELLO, "ClientHello not followed by a ServerHello")?;
    let mut rest: Vec<u8> = it.collect();
    // Optional server Certificate (+ CertificateStatus) and ServerKeyExchange.
    if rest.first() == Some(&CERTIFICATE) {
        rest.remove(0);
        if rest.first() == Some(&CERTIFICATE_STATUS) {
            rest.remove(0);
        }
    }
    if rest.first() == Some(&SERVER_KEY_EXCHANGE) {
        rest.remove(0);
    }
    match rest.as_slice() {
        [
            CERTIFICATE_REQUEST,
            SERVER_HELLO_DONE,
            CERTIFICATE,
            CLIENT_KEY_EXCHANGE,
        ] => Ok(()),
        [] => Err("transcript stops after the ServerHello"),
        _ if !rest.contains(&CERTIFICATE_REQUEST) => {
            Err("no CertificateRequest: the server did not ask for client authentication")
        }
        _ if rest.last() != Some(&CLIENT_KEY_EXCHANGE) => {
            Err("does not end with the client's ClientKeyExchange (what CertificateVerify signs)")
        }
        _ => Err("handshake messages out of the TLS 1.2 order"),
    }
}

/// A synthetic, well-formed TLS 1.2 transcript with client authentication (ClientHello to
/// ClientKeyExchange), for tests and benchmarks: the ClientHello names `server_host` in its SNI
/// extension (none when `None`), the server's Certificate message carries `server_chain` (DER,
/// leaf first). The relay signs it when that chain verifies for an allowed host.
pub fn sample_tls12_transcript(server_host: Option<&str>, server_chain: &[Vec<u8>]) -> Vec<u8> {
    fn msg(t: u8, body: &[u8]) -> Vec<u8> {
        let l = body.len();
        [vec![t, (l >> 16) as u8, (l >> 8) as u8, l as u8], body.to_vec()].concat()
    }
    fn u16_len(v: &[u8]) -> Vec<u8> {
        [((v.len() >> 8) as u8), v.len() as u8].to_vec()
    }
    let mut hello = [vec![3, 3], vec![9; 32], vec![0, 0, 2, 0xc0, 0x2f, 1, 0]].concat();
    if let Some(host) = server_host {
        let name = [vec![0], u16_len(host.as_bytes()), host.as_bytes().to_vec()].concat();
        let list = [u16_len(&name), name].concat();
        let extension = [vec![0, 0], u16_len(&list), list].concat();
        hello.extend_from_slice(&u16_len(&extension));
        hello.extend_from_slice(&extension);
    }
    let certs: Vec<u8> = server_chain
        .iter()
        .flat_map(|c| {
            let l = c.len();
            [vec![(l >> 16) as u8, (l >> 8) as u8, l as u8], c.clone()].concat()
        })
        .collect();
    let l = certs.len();
    let certificate = [vec![(l >> 16) as u8, (l >> 8) as u8, l as u8], certs].concat();
    [
        msg(CLIENT_HELLO, &hello),
        msg(SERVER_HELLO, &[3, 3, 4, 5]),
        msg(CERTIFICATE, &certificate),
        msg(SERVER_KEY_EXCHANGE, &[3, 0, 23]),
        msg(CERTIFICATE_REQUEST, &[1, 1, 0, 2, 4, 1, 0, 0]),
        msg(SERVER_HELLO_DONE, &[]),
        msg(CERTIFICATE, &[0, 0, 0]),
        msg(CLIENT_KEY_EXCHANGE, &[7; 66]),
    ]
    .concat()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn msg(t: u8, body: &[u8]) -> Vec<u8> {
        let l = body.len();
        let mut v = vec![t, (l >> 16) as u8, (l >> 8) as u8, l as u8];
        v.extend_from_slice(body);
        v
    }

    /// A synthetic but well-formed TLS 1.2 transcript with client authentication.
    pub(crate) fn tls12_transcript() -> Vec<u8> {
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[7u8; 32]);
        hello.extend_from_slice(&[0, 0, 2, 0xc0, 0x2f, 1, 0]);
        [
            msg(CLIENT_HELLO, &hello),
            msg(SERVER_HELLO, &[3, 3, 1, 2, 3]),
            msg(CERTIFICATE, &[0, 0, 3, 0, 0, 0]),
            msg(SERVER_KEY_EXCHANGE, &[3, 0, 23, 65]),
            msg(CERTIFICATE_REQUEST, &[1, 1, 0, 2, 4, 1, 0, 0]),
            msg(SERVER_HELLO_DONE, &[]),
            msg(CERTIFICATE, &[0, 0, 3, 0, 0, 0]),
            msg(CLIENT_KEY_EXCHANGE, &[65; 66]),
        ]
        .concat()
    }

    pub(crate) fn tls13_content(context: &[u8], hash_len: usize) -> Vec<u8> {
        [vec![0x20; 64], context.to_vec(), vec![0], vec![0xab; hash_len]].concat()
    }

    #[test]
    fn accepts_handshake_input() {
        assert_eq!(
            classify(Scheme::RsaPkcs1Sha256, &tls12_transcript()).ok(),
            Some(HandshakeInput::Tls12Transcript)
        );
        assert_eq!(
            classify(Scheme::RsaPssSha256, &tls13_content(TLS13_CLIENT_CONTEXT, 32)).ok(),
            Some(HandshakeInput::Tls13ClientCertificateVerify)
        );
        assert!(classify(Scheme::EcdsaP256Sha256, &tls13_content(TLS13_CLIENT_CONTEXT, 48)).is_ok());
    }

    fn reason(scheme: Scheme, data: &[u8]) -> String {
        match classify(scheme, data) {
            Err(RelayError::NotHandshakeData(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert!(reason(Scheme::RsaPkcs1Sha256, b"").contains("empty"));
        assert!(reason(Scheme::RsaPkcs1Sha256, b"please sign this contract").contains("ClientHello"));
        assert!(reason(Scheme::RsaPssSha256, &tls13_content(TLS13_SERVER_CONTEXT, 32)).contains("server"));
        assert!(reason(Scheme::RsaPssSha256, &tls13_content(TLS13_CLIENT_CONTEXT, 20)).contains("hash"));
        assert!(
            reason(Scheme::RsaPkcs1Sha256, &tls13_content(TLS13_CLIENT_CONTEXT, 32)).contains("RFC 8446")
        );
        // A transcript cut before the client's key exchange.
        let full = tls12_transcript();
        let cut = &full[..full.len() - 70];
        assert!(reason(Scheme::RsaPkcs1Sha256, cut).contains("ClientKeyExchange"));
        // A valid transcript with trailing garbage.
        let mut trailing = full.clone();
        trailing.extend_from_slice(b"x");
        assert!(reason(Scheme::RsaPkcs1Sha256, &trailing).contains("truncated"));
        // A server that never asked for a client certificate.
        let no_request = [
            msg(
                CLIENT_HELLO,
                &[3, 3].iter().chain([0u8; 33].iter()).copied().collect::<Vec<_>>(),
            ),
            msg(SERVER_HELLO, &[3, 3]),
            msg(SERVER_HELLO_DONE, &[]),
            msg(CLIENT_KEY_EXCHANGE, &[1]),
        ]
        .concat();
        assert!(reason(Scheme::RsaPkcs1Sha256, &no_request).contains("CertificateRequest"));
        // A hash alone (what a generic signing oracle would accept).
        assert!(reason(Scheme::RsaPkcs1Sha256, &[0xab; 32]).contains("ClientHello"));
        let huge = [msg(CLIENT_HELLO, &vec![3; MAX_TLS12_TRANSCRIPT])].concat();
        assert!(reason(Scheme::RsaPkcs1Sha256, &huge).contains("256 KiB"));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix and many mutations of a valid transcript.
        let base = tls12_transcript();
        for end in 0..base.len() {
            let _ = classify(Scheme::RsaPkcs1Sha256, &base[..end]);
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut m = base.clone();
            let i = (x as usize) % m.len();
            m[i] = (x >> 8) as u8;
            let _ = classify(Scheme::RsaPssSha256, &m);
        }
    }
}
