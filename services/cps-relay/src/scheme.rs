//! The hashing the relay does before the card signs, and the signature encodings it converts.
//! The schemes themselves are shared with the relay's callers (`relay_client::Scheme`).

pub(crate) use relay_client::Scheme;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// DER DigestInfo for SHA-256 (RFC 8017 §9.2 note 1), prefixed to the hash for CKM_RSA_PKCS,
/// which smart cards implement where they lack CKM_SHA256_RSA_PKCS.
pub fn sha256_digest_info(hash: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
        0x04, 0x20,
    ];
    let mut v = Vec::with_capacity(51);
    v.extend_from_slice(&PREFIX);
    v.extend_from_slice(hash);
    v
}

/// Converts a raw ECDSA signature (r || s, as PKCS#11 returns it) into the DER form TLS uses.
pub(crate) fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: &[u8] = {
            let first = bytes
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(bytes.len().saturating_sub(1));
            &bytes[first..]
        };
        let mut v = Vec::with_capacity(trimmed.len() + 3);
        v.push(0x02);
        let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
        v.push((trimmed.len() + usize::from(pad)) as u8);
        if pad {
            v.push(0);
        }
        v.extend_from_slice(trimmed);
        v
    }
    let body = [integer(r), integer(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_to_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[63] = 1; // s is 1
        let der = ecdsa_raw_to_der(&raw).expect("der");
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 1]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }
}
