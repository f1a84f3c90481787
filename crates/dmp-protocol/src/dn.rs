//! Distinguished names as strings (RFC 4514), the form both DMP documents use for a certificate
//! name: the XAdES `X509IssuerName` (official example `TD2.1-SignatureXades.xml`:
//! `CN=TEST AC IGC-SANTE ELEMENTAIRE PERSONNES,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR`)
//! and the VIHF `Issuer` (official examples `Exemples_Jeton_VIHF/`:
//! `CN=899900038839+2.5.4.4=#14045452414c+2.5.4.42=#14064144454d4953,OU=…,O=TEST,C=FR`).
//!
//! Every RDN is written, last first; a multi-valued RDN keeps its attributes in the order the
//! certificate encodes them (real CPS cards do not DER-sort them). Attribute types are the
//! RFC 4514 §3 short names (CN, L, ST, O, OU, C, STREET, DC, UID) and the dotted OID for any
//! other type; values of those short-named types are strings with RFC 4514 §2.4 escaping,
//! values of other types are `#` and the hex of their DER encoding (§2.4), which is what the
//! official VIHF examples show for SN and GN — the Java `X500Principal` RFC 2253 form the DMP
//! compares with.

use std::fmt::Write as _;

use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// RFC 4514 §3 short names.
const SHORT_NAMES: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// `name` as an RFC 4514 string.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, ava) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_ava(&mut out, ava);
        }
    }
    out
}

fn write_ava(out: &mut String, ava: &AttributeTypeAndValue<'_>) {
    let oid = ava.attr_type().to_id_string();
    let short = SHORT_NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n);
    match (short, ava.as_str()) {
        (Some(name), Ok(value)) => {
            out.push_str(name);
            out.push('=');
            escape_value(out, value);
        }
        (short, _) => {
            out.push_str(short.unwrap_or(&oid));
            out.push_str("=#");
            // The whole DER of the value: tag, length, content.
            let raw = ava.attr_value();
            let _ = write!(out, "{:02x}", raw.header.tag().0 as u8);
            for b in der_length(raw.data.len()) {
                let _ = write!(out, "{b:02x}");
            }
            for b in raw.data {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut v = vec![0x80 | (bytes.len() - skip) as u8];
    v.extend_from_slice(&bytes[skip..]);
    v
}

/// RFC 4514 §2.4: `"+,;<>\` anywhere, a leading space or `#`, a trailing space, and NUL.
fn escape_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '#' if i == 0 => out.push_str("\\#"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 0x80);
        [vec![tag, content.len() as u8], content.to_vec()].concat()
    }

    fn ava(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(0x30, &[tlv(0x06, oid), tlv(tag, value)].concat())
    }

    #[test]
    fn the_vihf_example_form() {
        // The subject of the official VIHF examples, rebuilt: C=FR, O=TEST, OU=Médecin,
        // CN=899900038839+SN=TRAL+GN=ADEMIS (SN, GN as T61String, in card order).
        let name = tlv(
            0x30,
            &[
                tlv(0x31, &ava(&[0x55, 4, 6], 0x13, b"FR")),
                tlv(0x31, &ava(&[0x55, 4, 10], 0x0c, b"TEST")),
                tlv(0x31, &ava(&[0x55, 4, 11], 0x0c, "Médecin".as_bytes())),
                tlv(
                    0x31,
                    &[
                        ava(&[0x55, 4, 3], 0x0c, b"899900038839"),
                        ava(&[0x55, 4, 4], 0x14, b"TRAL"),
                        ava(&[0x55, 4, 42], 0x14, b"ADEMIS"),
                    ]
                    .concat(),
                ),
            ]
            .concat(),
        );
        let (_, parsed) = X509Name::from_der(&name).expect("name");
        assert_eq!(
            rfc4514(&parsed),
            "CN=899900038839+2.5.4.4=#14045452414c+2.5.4.42=#14064144454d4953,OU=Médecin,O=TEST,C=FR"
        );
    }

    #[test]
    fn escapes_what_rfc_4514_escapes() {
        let name = tlv(
            0x30,
            &[
                tlv(0x31, &ava(&[0x55, 4, 10], 0x0c, b"#Dr, \"A\"+B; <C>\\ ")),
                tlv(0x31, &ava(&[0x55, 4, 3], 0x0c, b" lead")),
            ]
            .concat(),
        );
        let (_, parsed) = X509Name::from_der(&name).expect("name");
        assert_eq!(rfc4514(&parsed), r#"CN=\ lead,O=\#Dr\, \"A\"\+B\; \<C\>\\\ "#);
    }
}
