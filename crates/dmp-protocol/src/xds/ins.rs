//! The INS (Identifiant National de Santé), the patient identifier of every DMP transaction.

use std::fmt;

use super::{FResult, FieldError};

/// The assigning authority of an INS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsAuthority {
    /// INS-NIR, production: 1.2.250.1.213.1.4.8.
    Nir,
    /// INS-NIR of test identities: 1.2.250.1.213.1.4.10.
    TestNir,
    /// INS-NIA of test identities: 1.2.250.1.213.1.4.11.
    TestNia,
}

impl InsAuthority {
    /// INS-NIR.
    pub const NIR_OID: &'static str = "1.2.250.1.213.1.4.8";
    /// INS-NIR of test identities.
    pub const TEST_NIR_OID: &'static str = "1.2.250.1.213.1.4.10";
    /// INS-NIA of test identities.
    pub const TEST_NIA_OID: &'static str = "1.2.250.1.213.1.4.11";

    /// The authority's OID.
    pub fn oid(self) -> &'static str {
        match self {
            InsAuthority::Nir => Self::NIR_OID,
            InsAuthority::TestNir => Self::TEST_NIR_OID,
            InsAuthority::TestNia => Self::TEST_NIA_OID,
        }
    }

    /// The authority of an OID, if it is one of the three.
    pub fn from_oid(oid: &str) -> Option<InsAuthority> {
        match oid {
            Self::NIR_OID => Some(InsAuthority::Nir),
            Self::TEST_NIR_OID => Some(InsAuthority::TestNir),
            Self::TEST_NIA_OID => Some(InsAuthority::TestNia),
            _ => None,
        }
    }
}

/// A patient's INS: 15 characters (13-character NIR + 2-digit key) under one of the three
/// accepted authorities. NIR-based ones (production and test NIR) have their key checked
/// (97 − NIR mod 97, Corsican departments 2A/2B counted as 19/18); test NIA values are checked
/// for form only, as their key rule is not public.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ins {
    value: String,
    authority: InsAuthority,
}

impl Ins {
    /// `field` is the request field the value came from (for the error message).
    pub fn new(field: &str, value: &str, authority_oid: &str) -> FResult<Ins> {
        let oid_field = format!("{field}.assigning_authority");
        let value_field = format!("{field}.ins");
        let authority = if authority_oid.is_empty() {
            InsAuthority::Nir
        } else {
            InsAuthority::from_oid(authority_oid).ok_or_else(|| {
                FieldError::new(
                    &oid_field,
                    format!(
                        "`{authority_oid}` is not an INS authority (1.2.250.1.213.1.4.8 for INS-NIR, \
                         1.2.250.1.213.1.4.10 or .11 for test identities)"
                    ),
                )
            })?
        };
        if value.is_empty() {
            return Err(FieldError::new(&value_field, "the patient's INS is required"));
        }
        if value.len() != 15 {
            return Err(FieldError::new(
                &value_field,
                format!(
                    "an INS has 15 characters (13 + 2-digit key), got {}",
                    value.chars().count()
                ),
            ));
        }
        let bytes = value.as_bytes();
        let corsica = matches!(value.get(5..7), Some("2A" | "2B" | "2a" | "2b"));
        let form_ok = bytes
            .iter()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (corsica && (i == 5 || i == 6)));
        if !form_ok {
            return Err(FieldError::new(
                &value_field,
                "an INS is made of digits (2A/2B allowed for a Corsican department of birth)",
            ));
        }
        if !matches!(bytes[0], b'1'..=b'4' | b'7' | b'8') {
            return Err(FieldError::new(
                &value_field,
                "an INS starts with 1, 2, 3, 4, 7 or 8 (sex digit)",
            ));
        }
        if authority != InsAuthority::TestNia {
            let nir = value[..13].to_ascii_uppercase();
            let numeric = nir.replace("2A", "19").replace("2B", "18");
            let n: u128 = numeric
                .parse()
                .map_err(|_| FieldError::new(&value_field, "the NIR part is not a number"))?;
            let expected = 97 - (n % 97) as u32;
            let key: u32 = value[13..].parse().map_err(|_| {
                FieldError::new(&value_field, "the INS key (last 2 characters) is not a number")
            })?;
            if key != expected {
                return Err(FieldError::new(
                    &value_field,
                    format!("the INS key {key:02} does not match the NIR (expected {expected:02})"),
                ));
            }
        }
        Ok(Ins {
            value: value.to_ascii_uppercase(),
            authority,
        })
    }

    /// Parses the HL7 CX form `INS^^^&OID&ISO^NH`, tolerating further components (the DMP
    /// appends an effective date: `^NH^^20100907`).
    pub fn parse_cx(field: &str, cx: &str) -> FResult<Ins> {
        let parts: Vec<&str> = cx.split('^').collect();
        let bad = || {
            FieldError::new(
                field,
                format!("`{cx}` is not a patient id of the form INS^^^&1.2.250.1.213.1.4.8&ISO^NH"),
            )
        };
        if parts.len() < 5 || !parts[1].is_empty() || !parts[2].is_empty() || parts[4] != "NH" {
            return Err(bad());
        }
        let aa: Vec<&str> = parts[3].split('&').collect();
        if aa.len() != 3 || !aa[0].is_empty() || aa[2] != "ISO" {
            return Err(bad());
        }
        Ins::new(field, parts[0], aa[1]).map_err(|e| FieldError::new(field, e.reason))
    }

    /// The 15 characters (Corsican letters upper case).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The assigning authority.
    pub fn authority(&self) -> InsAuthority {
        self.authority
    }

    /// `INS^^^&OID&ISO^NH`.
    pub fn to_cx(&self) -> String {
        format!("{}^^^&{}&ISO^NH", self.value, self.authority.oid())
    }
}

impl fmt::Display for Ins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cx())
    }
}
