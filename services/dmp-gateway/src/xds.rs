//! The typed XDS.b metadata model for French DMP documents (SPEC.md §2 "XDS metadata"):
//! INS patient ids, RPPS authors, codes, HL7 DTM dates, document entries and submission sets,
//! validated *before* anything leaves the gateway, with errors naming the field of the gRPC
//! request. Conversion to ebRIM objects ([`crate::rim`]) and back to `dmp.v1` types.
//!
//! Types here can only be built valid: an [`Ins`], an [`Oid`], a [`Dtm`] or a [`UniqueId`] that
//! exists has passed its checks.

use std::fmt;

use ehealth_proto::dmp::v1 as pb;

use crate::rim::{
    Association, Classification, ExternalIdentifier, ExtrinsicObject, ObjectList, RegistryObject, Slot,
};

/// Classification and identification schemes of XDS.b (IHE ITI TF-3 4.2.5).
pub mod scheme {
    pub const DOCUMENT_ENTRY_OBJECT_TYPE: &str = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1";
    pub const DOC_AUTHOR: &str = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d";
    pub const DOC_CLASS: &str = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a";
    pub const DOC_CONFIDENTIALITY: &str = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f";
    pub const DOC_EVENT: &str = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4";
    pub const DOC_FORMAT: &str = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d";
    pub const DOC_FACILITY_TYPE: &str = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1";
    pub const DOC_PRACTICE_SETTING: &str = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead";
    pub const DOC_TYPE: &str = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983";
    pub const DOC_PATIENT_ID: &str = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427";
    pub const DOC_UNIQUE_ID: &str = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab";
    pub const SUBMISSION_SET_NODE: &str = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd";
    pub const SS_AUTHOR: &str = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d";
    pub const SS_CONTENT_TYPE: &str = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500";
    pub const SS_PATIENT_ID: &str = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446";
    pub const SS_SOURCE_ID: &str = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832";
    pub const SS_UNIQUE_ID: &str = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8";
}

/// Association types.
pub mod association {
    pub const HAS_MEMBER: &str = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember";
    pub const SIGNS: &str = "urn:ihe:iti:2007:AssociationType:signs";
    pub const UPDATE_AVAILABILITY_STATUS: &str = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus";
}

/// Document availability status URNs (the two French ones come from the CI-SIS).
pub mod status {
    pub const APPROVED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved";
    pub const DEPRECATED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated";
    pub const ARCHIVED: &str = "urn:asip:ci-sis:2010:StatusType:Archived";
    pub const DELETED: &str = "urn:asip:ci-sis:2010:StatusType:Deleted";
    pub const SUBMITTED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted";
}

/// OID of the RPPS-based professional identifiers (authorPerson, legalAuthenticator).
pub const RPPS_OID: &str = "1.2.250.1.71.4.2.1";
/// OID of structure identifiers (authorInstitution).
pub const STRUCTURE_OID: &str = "1.2.250.1.71.4.2.2";

/// A validation failure naming the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

type FResult<T> = Result<T, FieldError>;

// ---------------------------------------------------------------------------------------------
// OIDs and unique ids.

/// An ISO OID in dotted form (at most 64 characters, as XDS requires).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Oid(String);

impl Oid {
    pub fn parse(field: &str, s: &str) -> FResult<Oid> {
        if is_oid(s) {
            Ok(Oid(s.to_string()))
        } else {
            Err(FieldError::new(
                field,
                format!("`{s}` is not an OID (dotted numbers like 1.2.250.1.213, at most 64 characters)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh OID under the UUID arc `2.25` (ITU-T X.667), for generated unique ids.
    pub fn generate() -> Oid {
        Oid(format!("2.25.{}", uuid::Uuid::new_v4().as_u128()))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn is_oid(s: &str) -> bool {
    if s.is_empty() || s.len() > 64 {
        return false;
    }
    let mut arcs = 0;
    for (i, arc) in s.split('.').enumerate() {
        let ok = !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc == "0" || !arc.starts_with('0'))
            && (i > 0 || matches!(arc, "0" | "1" | "2"));
        if !ok {
            return false;
        }
        arcs += 1;
    }
    arcs >= 2
}

/// An XDS uniqueId: an OID, or `OID^extension` (extension at most 16 characters), at most 64
/// characters in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UniqueId(String);

impl UniqueId {
    pub fn parse(field: &str, s: &str) -> FResult<UniqueId> {
        let bad = |why: &str| FieldError::new(field, format!("`{s}` is not an XDS uniqueId: {why}"));
        if s.len() > 64 {
            return Err(bad("longer than 64 characters"));
        }
        let (root, ext) = match s.split_once('^') {
            Some((r, e)) => (r, Some(e)),
            None => (s, None),
        };
        if !is_oid(root) {
            return Err(bad("the root must be an OID"));
        }
        if let Some(e) = ext
            && (e.is_empty()
                || e.len() > 16
                || !e
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err(bad(
                "the extension after `^` must be 1 to 16 letters, digits, `.` or `-`",
            ));
        }
        Ok(UniqueId(s.to_string()))
    }

    pub fn generate() -> UniqueId {
        UniqueId(Oid::generate().0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// INS.

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
    pub const NIR_OID: &'static str = "1.2.250.1.213.1.4.8";
    pub const TEST_NIR_OID: &'static str = "1.2.250.1.213.1.4.10";
    pub const TEST_NIA_OID: &'static str = "1.2.250.1.213.1.4.11";

    pub fn oid(self) -> &'static str {
        match self {
            InsAuthority::Nir => Self::NIR_OID,
            InsAuthority::TestNir => Self::TEST_NIR_OID,
            InsAuthority::TestNia => Self::TEST_NIA_OID,
        }
    }

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

    pub fn from_proto(field: &str, p: Option<&pb::PatientId>) -> FResult<Ins> {
        match p {
            Some(p) => Ins::new(field, &p.ins, &p.assigning_authority),
            None => Err(FieldError::new(
                format!("{field}.ins"),
                "the patient's INS is required",
            )),
        }
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

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn authority(&self) -> InsAuthority {
        self.authority
    }

    /// `INS^^^&OID&ISO^NH`.
    pub fn to_cx(&self) -> String {
        format!("{}^^^&{}&ISO^NH", self.value, self.authority.oid())
    }

    pub fn to_proto(&self) -> pb::PatientId {
        pb::PatientId {
            ins: self.value.clone(),
            assigning_authority: self.authority.oid().to_string(),
        }
    }
}

impl fmt::Display for Ins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cx())
    }
}

// ---------------------------------------------------------------------------------------------
// Dates.

/// An HL7 V2 DTM date in UTC as XDS uses it: `YYYY[MM[DD[hh[mm[ss]]]]]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dtm(String);

impl Dtm {
    pub fn parse(field: &str, s: &str) -> FResult<Dtm> {
        let bad = |why: String| {
            FieldError::new(
                field,
                format!("`{s}` is not an HL7 DTM date (YYYY[MM[DD[hh[mm[ss]]]]], UTC): {why}"),
            )
        };
        if !matches!(s.len(), 4 | 6 | 8 | 10 | 12 | 14) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("4 to 14 digits expected".into()));
        }
        let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<u32>().ok());
        if let Some(m) = num(4, 6)
            && !(1..=12).contains(&m)
        {
            return Err(bad(format!("month {m}")));
        }
        if let Some(d) = num(6, 8) {
            let year = num(0, 4).unwrap_or(0) as i32;
            let month = num(4, 6).unwrap_or(1) as u8;
            let max = time::Month::try_from(month).map(|m| m.length(year)).unwrap_or(31) as u32;
            if d == 0 || d > max {
                return Err(bad(format!("day {d}")));
            }
        }
        for (a, b, max, what) in [
            (8, 10, 23, "hour"),
            (10, 12, 59, "minute"),
            (12, 14, 59, "second"),
        ] {
            if let Some(v) = num(a, b)
                && v > max
            {
                return Err(bad(format!("{what} {v}")));
            }
        }
        Ok(Dtm(s.to_string()))
    }

    pub fn from_offset_datetime(t: time::OffsetDateTime) -> Dtm {
        let t = t.to_offset(time::UtcOffset::UTC);
        Dtm(format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ))
    }

    pub fn from_timestamp(field: &str, ts: &prost_types::Timestamp) -> FResult<Dtm> {
        if !(0..1_000_000_000).contains(&ts.nanos) {
            return Err(FieldError::new(field, format!("nanos {} out of range", ts.nanos)));
        }
        let t = time::OffsetDateTime::from_unix_timestamp(ts.seconds)
            .map_err(|_| FieldError::new(field, format!("{} seconds is not a date", ts.seconds)))?;
        if !(1900..=9999).contains(&t.year()) {
            return Err(FieldError::new(
                field,
                format!("year {} is outside 1900..9999", t.year()),
            ));
        }
        Ok(Dtm::from_offset_datetime(t))
    }

    pub fn to_timestamp(&self) -> Option<prost_types::Timestamp> {
        let s = &self.0;
        let num =
            |a: usize, b: usize, dflt: u32| s.get(a..b).and_then(|x| x.parse::<u32>().ok()).unwrap_or(dflt);
        let date = time::Date::from_calendar_date(
            num(0, 4, 0) as i32,
            time::Month::try_from(num(4, 6, 1) as u8).ok()?,
            num(6, 8, 1) as u8,
        )
        .ok()?;
        let t = time::Time::from_hms(num(8, 10, 0) as u8, num(10, 12, 0) as u8, num(12, 14, 0) as u8).ok()?;
        Some(prost_types::Timestamp {
            seconds: time::PrimitiveDateTime::new(date, t)
                .assume_utc()
                .unix_timestamp(),
            nanos: 0,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two dates agree at the precision of the coarser one.
    pub fn agrees_with(&self, other: &Dtm) -> bool {
        let n = self.0.len().min(other.0.len());
        self.0[..n] == other.0[..n]
    }
}

// ---------------------------------------------------------------------------------------------
// Codes, authors.

/// A coded value: code, coding scheme, display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Code {
    pub code: String,
    pub scheme: String,
    pub display: String,
}

const HL7_DELIMITERS: [char; 5] = ['^', '&', '|', '~', '\\'];

fn check_text(field: &str, s: &str, what: &str) -> FResult<()> {
    if s.contains(HL7_DELIMITERS) {
        return Err(FieldError::new(
            field,
            format!("{what} must not contain the HL7 delimiters ^ & | ~ \\"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(())
}

impl Code {
    /// A required code: code, coding scheme and display name present.
    pub fn from_proto(field: &str, c: Option<&pb::Code>) -> FResult<Code> {
        let Some(c) = c.filter(|c| !c.code.is_empty() || !c.code_system.is_empty()) else {
            return Err(FieldError::new(field, "required"));
        };
        Code::from_parts(field, &c.code, &c.code_system, &c.display_name)
    }

    pub fn optional(field: &str, c: Option<&pb::Code>) -> FResult<Option<Code>> {
        match c {
            Some(c) if !(c.code.is_empty() && c.code_system.is_empty() && c.display_name.is_empty()) => {
                Code::from_proto(field, Some(c)).map(Some)
            }
            _ => Ok(None),
        }
    }

    pub fn from_parts(field: &str, code: &str, scheme: &str, display: &str) -> FResult<Code> {
        if code.trim().is_empty() {
            return Err(FieldError::new(format!("{field}.code"), "required"));
        }
        if scheme.trim().is_empty() {
            return Err(FieldError::new(
                format!("{field}.code_system"),
                "the coding scheme is required",
            ));
        }
        if display.trim().is_empty() {
            return Err(FieldError::new(
                format!("{field}.display_name"),
                "the display name is required",
            ));
        }
        check_text(&format!("{field}.code"), code, "a code")?;
        check_text(&format!("{field}.code_system"), scheme, "a coding scheme")?;
        check_text(&format!("{field}.display_name"), display, "a display name")?;
        Ok(Code {
            code: code.to_string(),
            scheme: scheme.to_string(),
            display: display.to_string(),
        })
    }

    pub fn to_proto(&self) -> pb::Code {
        pb::Code {
            code: self.code.clone(),
            code_system: self.scheme.clone(),
            display_name: self.display.clone(),
        }
    }

    /// `code^display^scheme` (authorSpecialty, authorRole).
    pub fn to_ce(&self) -> String {
        format!("{}^{}^{}", self.code, self.display, self.scheme)
    }

    /// `code^^scheme` as FindDocuments code parameters want it.
    pub fn to_query_value(&self) -> String {
        format!("{}^^{}", self.code, self.scheme)
    }

    fn classification(&self, id: String, scheme: &str, object: &str) -> Classification {
        Classification {
            id,
            scheme: Some(scheme.to_string()),
            node: None,
            classified_object: object.to_string(),
            node_representation: Some(self.code.clone()),
            slots: vec![Slot {
                name: "codingScheme".into(),
                values: vec![self.scheme.clone()],
            }],
            name: Some(self.display.clone()),
        }
    }
}

/// A health professional identified by an RPPS-based id (`8` + 11-digit RPPS number, or an
/// ADELI-based `0…`/other prefixed id) under [`RPPS_OID`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub id: String,
    pub family: String,
    pub given: String,
    pub role: Option<Code>,
    pub specialty: Option<Code>,
    pub institution: Option<Institution>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Institution {
    pub name: String,
    pub id: String,
}

/// Checks a professional identifier.
pub fn check_professional_id(field: &str, id: &str) -> FResult<()> {
    if id.is_empty() {
        return Err(FieldError::new(field, "the professional identifier is required"));
    }
    if id.len() > 20 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FieldError::new(
            field,
            format!("`{id}` is not a professional identifier (letters and digits, e.g. 810100000001)"),
        ));
    }
    if id.starts_with('8') && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit())) {
        return Err(FieldError::new(
            field,
            format!("`{id}` is not an RPPS-based identifier: `8` followed by the 11-digit RPPS number"),
        ));
    }
    Ok(())
}

impl Author {
    pub fn from_proto(field: &str, a: &pb::Author) -> FResult<Author> {
        check_professional_id(&format!("{field}.id"), &a.id)?;
        check_text(&format!("{field}.family_name"), &a.family_name, "a name")?;
        check_text(&format!("{field}.given_name"), &a.given_name, "a name")?;
        let institution = if a.institution_name.is_empty() && a.institution_id.is_empty() {
            None
        } else {
            if a.institution_name.is_empty() {
                return Err(FieldError::new(
                    format!("{field}.institution_name"),
                    "required with institution_id",
                ));
            }
            check_text(
                &format!("{field}.institution_name"),
                &a.institution_name,
                "a name",
            )?;
            if a.institution_id.is_empty() || !a.institution_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(FieldError::new(
                    format!("{field}.institution_id"),
                    "the structure identifier (letters and digits) is required with institution_name",
                ));
            }
            Some(Institution {
                name: a.institution_name.clone(),
                id: a.institution_id.clone(),
            })
        };
        Ok(Author {
            id: a.id.clone(),
            family: a.family_name.clone(),
            given: a.given_name.clone(),
            role: Code::optional(&format!("{field}.role"), a.role.as_ref())?,
            specialty: Code::optional(&format!("{field}.specialty"), a.specialty.as_ref())?,
            institution,
        })
    }

    pub fn to_proto(&self) -> pb::Author {
        pb::Author {
            id: self.id.clone(),
            family_name: self.family.clone(),
            given_name: self.given.clone(),
            role: self.role.as_ref().map(Code::to_proto),
            specialty: self.specialty.as_ref().map(Code::to_proto),
            institution_name: self
                .institution
                .as_ref()
                .map(|i| i.name.clone())
                .unwrap_or_default(),
            institution_id: self
                .institution
                .as_ref()
                .map(|i| i.id.clone())
                .unwrap_or_default(),
        }
    }

    /// HL7 XCN: `id^family^given^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS`.
    pub fn to_xcn(&self) -> String {
        format!(
            "{}^{}^{}^^^^^^&{RPPS_OID}&ISO^D^^^IDNPS",
            self.id, self.family, self.given
        )
    }

    /// Parses an XCN (lenient: used on what a registry returns).
    pub fn parse_xcn(xcn: &str) -> Option<Author> {
        let parts: Vec<&str> = xcn.split('^').collect();
        let id = parts.first().filter(|s| !s.is_empty())?;
        Some(Author {
            id: id.to_string(),
            family: parts.get(1).unwrap_or(&"").to_string(),
            given: parts.get(2).unwrap_or(&"").to_string(),
            role: None,
            specialty: None,
            institution: None,
        })
    }

    fn classification(&self, id: String, scheme: &str, object: &str) -> Classification {
        let mut slots = vec![Slot {
            name: "authorPerson".into(),
            values: vec![self.to_xcn()],
        }];
        if let Some(i) = &self.institution {
            slots.push(Slot {
                name: "authorInstitution".into(),
                values: vec![format!("{}^^^^^&{STRUCTURE_OID}&ISO^IDNST^^^{}", i.name, i.id)],
            });
        }
        if let Some(r) = &self.role {
            slots.push(Slot {
                name: "authorRole".into(),
                values: vec![r.to_ce()],
            });
        }
        if let Some(s) = &self.specialty {
            slots.push(Slot {
                name: "authorSpecialty".into(),
                values: vec![s.to_ce()],
            });
        }
        Classification {
            id,
            scheme: Some(scheme.to_string()),
            node: None,
            classified_object: object.to_string(),
            node_representation: Some(String::new()),
            slots,
            name: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Document entries and submission sets.

/// A validated DocumentEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentEntry {
    /// The ExtrinsicObject id: a symbolic id or `urn:uuid:…`.
    pub entry_id: String,
    pub unique_id: UniqueId,
    pub patient: Ins,
    pub title: String,
    pub comments: Option<String>,
    pub class_code: Code,
    pub type_code: Code,
    pub format_code: Code,
    pub confidentiality_codes: Vec<Code>,
    pub healthcare_facility_type_code: Code,
    pub practice_setting_code: Code,
    pub event_codes: Vec<Code>,
    pub language_code: String,
    pub mime_type: String,
    pub creation_time: Dtm,
    pub service_start_time: Option<Dtm>,
    pub service_stop_time: Option<Dtm>,
    pub authors: Vec<Author>,
    pub legal_authenticator: Option<Author>,
}

/// A validated SubmissionSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionSet {
    pub entry_id: String,
    pub unique_id: UniqueId,
    pub source_id: Oid,
    pub patient: Ins,
    pub submission_time: Dtm,
    pub title: Option<String>,
    pub comments: Option<String>,
    pub content_type_code: Code,
    pub author: Author,
}

/// Checks an ExtrinsicObject id given by the caller (`entry_uuid`).
pub fn check_entry_id(field: &str, id: &str) -> FResult<()> {
    let ok = match id.strip_prefix("urn:uuid:") {
        Some(u) => uuid::Uuid::parse_str(u).is_ok(),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("`{id}` is not an entryUUID (urn:uuid:…)"),
        ))
    }
}

/// Checks a language code (RFC 5646 shape, e.g. `fr-FR`).
pub fn check_language(field: &str, s: &str) -> FResult<()> {
    let ok = !s.is_empty()
        && s.len() <= 35
        && s.split('-')
            .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("`{s}` is not a language code like fr-FR"),
        ))
    }
}

fn slot(name: &str, value: impl Into<String>) -> Slot {
    Slot {
        name: name.into(),
        values: vec![value.into()],
    }
}

fn ext_id(id: String, scheme: &str, object: &str, value: String, name: &str) -> ExternalIdentifier {
    ExternalIdentifier {
        id,
        scheme: scheme.into(),
        registry_object: object.into(),
        value,
        name: Some(name.into()),
    }
}

impl DocumentEntry {
    /// Consistency rules that hold whatever the source of the values.
    pub fn check(&self, field: &str) -> FResult<()> {
        if self.confidentiality_codes.is_empty() {
            return Err(FieldError::new(
                format!("{field}.confidentiality_codes"),
                "at least one confidentialityCode is required",
            ));
        }
        if self.authors.is_empty() {
            return Err(FieldError::new(
                format!("{field}.authors"),
                "at least one author is required",
            ));
        }
        if let (Some(a), Some(b)) = (&self.service_start_time, &self.service_stop_time)
            && a > b
        {
            return Err(FieldError::new(
                format!("{field}.service_stop_time"),
                format!("{} is before service_start_time {}", b.as_str(), a.as_str()),
            ));
        }
        if self.title.trim().is_empty() {
            return Err(FieldError::new(
                format!("{field}.title"),
                "required (or a <title> in the CDA header)",
            ));
        }
        Ok(())
    }

    pub fn to_rim(&self) -> ExtrinsicObject {
        let id = &self.entry_id;
        let mut slots = vec![
            slot("creationTime", self.creation_time.as_str()),
            slot("languageCode", &self.language_code),
        ];
        if let Some(l) = &self.legal_authenticator {
            slots.push(slot("legalAuthenticator", l.to_xcn()));
        }
        if let Some(t) = &self.service_start_time {
            slots.push(slot("serviceStartTime", t.as_str()));
        }
        if let Some(t) = &self.service_stop_time {
            slots.push(slot("serviceStopTime", t.as_str()));
        }
        // **Decision** — sourcePatientId (required by XDS) is the INS itself: the gateway knows
        // no local patient id.
        slots.push(slot("sourcePatientId", self.patient.to_cx()));
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("{id}-cl{n}")
        };
        let mut classifications = Vec::new();
        for a in &self.authors {
            classifications.push(a.classification(next(), scheme::DOC_AUTHOR, id));
        }
        classifications.push(self.class_code.classification(next(), scheme::DOC_CLASS, id));
        classifications.push(self.type_code.classification(next(), scheme::DOC_TYPE, id));
        for c in &self.confidentiality_codes {
            classifications.push(c.classification(next(), scheme::DOC_CONFIDENTIALITY, id));
        }
        classifications.push(self.format_code.classification(next(), scheme::DOC_FORMAT, id));
        classifications.push(self.healthcare_facility_type_code.classification(
            next(),
            scheme::DOC_FACILITY_TYPE,
            id,
        ));
        classifications.push(self.practice_setting_code.classification(
            next(),
            scheme::DOC_PRACTICE_SETTING,
            id,
        ));
        for c in &self.event_codes {
            classifications.push(c.classification(next(), scheme::DOC_EVENT, id));
        }
        ExtrinsicObject {
            object: RegistryObject {
                id: id.clone(),
                lid: None,
                object_type: Some(scheme::DOCUMENT_ENTRY_OBJECT_TYPE.into()),
                status: None,
                slots,
                name: Some(self.title.clone()),
                description: self.comments.clone(),
                classifications,
                external_identifiers: vec![
                    ext_id(
                        format!("{id}-ei1"),
                        scheme::DOC_PATIENT_ID,
                        id,
                        self.patient.to_cx(),
                        "XDSDocumentEntry.patientId",
                    ),
                    ext_id(
                        format!("{id}-ei2"),
                        scheme::DOC_UNIQUE_ID,
                        id,
                        self.unique_id.to_string(),
                        "XDSDocumentEntry.uniqueId",
                    ),
                ],
            },
            mime_type: Some(self.mime_type.clone()),
        }
    }
}

impl SubmissionSet {
    pub fn to_rim(&self) -> RegistryObject {
        let id = &self.entry_id;
        RegistryObject {
            id: id.clone(),
            lid: None,
            object_type: None,
            status: None,
            slots: vec![slot("submissionTime", self.submission_time.as_str())],
            name: self.title.clone(),
            description: self.comments.clone(),
            classifications: vec![
                self.author
                    .classification(format!("{id}-cl1"), scheme::SS_AUTHOR, id),
                self.content_type_code
                    .classification(format!("{id}-cl2"), scheme::SS_CONTENT_TYPE, id),
                Classification {
                    id: format!("{id}-cl3"),
                    scheme: None,
                    node: Some(scheme::SUBMISSION_SET_NODE.into()),
                    classified_object: id.clone(),
                    node_representation: None,
                    slots: vec![],
                    name: None,
                },
            ],
            external_identifiers: vec![
                ext_id(
                    format!("{id}-ei1"),
                    scheme::SS_PATIENT_ID,
                    id,
                    self.patient.to_cx(),
                    "XDSSubmissionSet.patientId",
                ),
                ext_id(
                    format!("{id}-ei2"),
                    scheme::SS_SOURCE_ID,
                    id,
                    self.source_id.to_string(),
                    "XDSSubmissionSet.sourceId",
                ),
                ext_id(
                    format!("{id}-ei3"),
                    scheme::SS_UNIQUE_ID,
                    id,
                    self.unique_id.to_string(),
                    "XDSSubmissionSet.uniqueId",
                ),
            ],
        }
    }
}

/// A submission: the set, its document entries, and the signature document's entry (which
/// `signs` the submission set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub set: SubmissionSet,
    pub entries: Vec<DocumentEntry>,
    pub signature: Option<DocumentEntry>,
}

impl Submission {
    /// Consistency between the set and its entries.
    pub fn check(&self) -> FResult<()> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.patient != self.set.patient {
                return Err(FieldError::new(
                    format!("documents[{i}].patient"),
                    format!(
                        "{} differs from the submission set's patient {}",
                        e.patient, self.set.patient
                    ),
                ));
            }
            e.check(&format!("documents[{i}].metadata"))?;
            for (j, other) in self.entries.iter().enumerate().take(i) {
                if other.unique_id == e.unique_id {
                    return Err(FieldError::new(
                        format!("documents[{i}].metadata.unique_id"),
                        format!("`{}` is also the unique id of documents[{j}]", e.unique_id),
                    ));
                }
            }
            if e.unique_id == self.set.unique_id {
                return Err(FieldError::new(
                    format!("documents[{i}].metadata.unique_id"),
                    "equals the submission set's unique id",
                ));
            }
        }
        if self.entries.is_empty() {
            return Err(FieldError::new("documents", "at least one document is required"));
        }
        Ok(())
    }

    /// The ebRIM objects of the submission: set, entries, HasMember associations, and the
    /// signature's `signs` association.
    pub fn to_rim(&self) -> ObjectList {
        let set = self.set.to_rim();
        let mut list = ObjectList::default();
        let mut assoc = 0;
        let mut member = |target: &str, list: &mut ObjectList| {
            assoc += 1;
            list.associations.push(Association {
                id: format!("Association{assoc:02}"),
                association_type: association::HAS_MEMBER.into(),
                source: set.id.clone(),
                target: target.to_string(),
                status: None,
                slots: vec![slot("SubmissionSetStatus", "Original")],
            });
        };
        for e in &self.entries {
            member(&e.entry_id, &mut list);
            list.extrinsic_objects.push(e.to_rim());
        }
        if let Some(s) = &self.signature {
            member(&s.entry_id, &mut list);
            list.extrinsic_objects.push(s.to_rim());
            list.associations.push(Association {
                id: "AssociationSigns".into(),
                association_type: association::SIGNS.into(),
                source: s.entry_id.clone(),
                target: set.id.clone(),
                status: None,
                slots: vec![slot("SubmissionSetStatus", "Original")],
            });
        }
        list.packages.push(set);
        list
    }
}

// ---------------------------------------------------------------------------------------------
// Statuses.

pub fn status_to_urn(s: pb::DocumentStatus) -> Option<&'static str> {
    Some(match s {
        pb::DocumentStatus::Approved => status::APPROVED,
        pb::DocumentStatus::Deprecated => status::DEPRECATED,
        pb::DocumentStatus::Archived => status::ARCHIVED,
        pb::DocumentStatus::Deleted => status::DELETED,
        pb::DocumentStatus::Unspecified => return None,
    })
}

pub fn status_from_urn(s: &str) -> pb::DocumentStatus {
    match s {
        status::APPROVED => pb::DocumentStatus::Approved,
        status::DEPRECATED => pb::DocumentStatus::Deprecated,
        status::ARCHIVED => pb::DocumentStatus::Archived,
        status::DELETED => pb::DocumentStatus::Deleted,
        _ => pb::DocumentStatus::Unspecified,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading entries returned by the registry (lenient: the registry is the authority on what it
// stores; what cannot be read is left empty rather than failing the whole search).

fn code_of(c: &Classification) -> pb::Code {
    pb::Code {
        code: c.node_representation.clone().unwrap_or_default(),
        code_system: c.slot_value("codingScheme").unwrap_or_default().to_string(),
        display_name: c.name.clone().unwrap_or_default(),
    }
}

fn ts(o: &RegistryObject, name: &str) -> Option<prost_types::Timestamp> {
    o.slot_value(name)
        .and_then(|v| Dtm::parse(name, v).ok())
        .and_then(|d| d.to_timestamp())
}

fn author_of(c: &Classification) -> Option<pb::Author> {
    let mut a = Author::parse_xcn(c.slot_value("authorPerson")?)?.to_proto();
    let ce = |v: &str| {
        let p: Vec<&str> = v.split('^').collect();
        pb::Code {
            code: p.first().unwrap_or(&"").to_string(),
            display_name: p.get(1).unwrap_or(&"").to_string(),
            code_system: p.get(2).unwrap_or(&"").to_string(),
        }
    };
    a.specialty = c.slot_value("authorSpecialty").map(ce);
    a.role = c.slot_value("authorRole").map(ce);
    if let Some(inst) = c.slot_value("authorInstitution") {
        let p: Vec<&str> = inst.split('^').collect();
        a.institution_name = p.first().unwrap_or(&"").to_string();
        a.institution_id = p.get(9).unwrap_or(&"").to_string();
    }
    Some(a)
}

/// A registry's ExtrinsicObject as a `dmp.v1.DocumentEntry`.
pub fn entry_from_rim(e: &ExtrinsicObject) -> pb::DocumentEntry {
    let o = &e.object;
    let code = |scheme: &str| o.classifications_by_scheme(scheme).next().map(code_of);
    let codes = |scheme: &str| {
        o.classifications_by_scheme(scheme)
            .map(code_of)
            .collect::<Vec<_>>()
    };
    pb::DocumentEntry {
        unique_id: o
            .external_id(scheme::DOC_UNIQUE_ID)
            .map(|x| x.value.clone())
            .unwrap_or_default(),
        entry_uuid: o.id.clone(),
        title: o.name.clone().unwrap_or_default(),
        class_code: code(scheme::DOC_CLASS),
        type_code: code(scheme::DOC_TYPE),
        format_code: code(scheme::DOC_FORMAT),
        confidentiality_codes: codes(scheme::DOC_CONFIDENTIALITY),
        healthcare_facility_type_code: code(scheme::DOC_FACILITY_TYPE),
        practice_setting_code: code(scheme::DOC_PRACTICE_SETTING),
        event_codes: codes(scheme::DOC_EVENT),
        language_code: o.slot_value("languageCode").unwrap_or_default().to_string(),
        mime_type: e.mime_type.clone().unwrap_or_default(),
        creation_time: ts(o, "creationTime"),
        service_start_time: ts(o, "serviceStartTime"),
        service_stop_time: ts(o, "serviceStopTime"),
        authors: o
            .classifications_by_scheme(scheme::DOC_AUTHOR)
            .filter_map(author_of)
            .collect(),
        legal_authenticator: o
            .slot_value("legalAuthenticator")
            .and_then(Author::parse_xcn)
            .map(|a| a.to_proto()),
        comments: o.description.clone().unwrap_or_default(),
        status: status_from_urn(o.status.as_deref().unwrap_or_default()) as i32,
        repository_unique_id: o.slot_value("repositoryUniqueId").unwrap_or_default().to_string(),
        size: o
            .slot_value("size")
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        hash: o.slot_value("hash").unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ins_rules() {
        let ok =
            Ins::new("patient", "207058575627097", InsAuthority::TEST_NIR_OID).expect("official example INS");
        assert_eq!(ok.to_cx(), "207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH");
        assert_eq!(
            Ins::parse_cx("pid", "207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH^^20100907").expect("cx"),
            ok
        );
        // Corsica: 2A counts as 19 in the key.
        let n: u128 = "1850119001001".parse().expect("n");
        let key = 97 - n % 97;
        Ins::new("p", &format!("185012A001001{key:02}"), "").expect("corsican INS");
        for (v, oid, want) in [
            ("", "", "required"),
            ("20705857562709", "", "15 characters"),
            ("207058575627098", "", "does not match"),
            ("207058575627097", "1.2.250.1.213.1.4.9", "not an INS authority"),
            ("20705857562709X", "", "digits"),
            ("507058575627097", "", "starts with"),
        ] {
            let e = Ins::new("patient", v, oid).expect_err(v);
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(Ins::parse_cx("pid", "207058575627097^^^&1.2.250.1.213.1.4.10&ISO^PI").is_err());
    }

    #[test]
    fn oid_and_dates() {
        assert!(is_oid("1.2.250.1.213.1.4.8"));
        for bad in ["", "1", "3.1", "1..2", "1.02", "1.2.a"] {
            assert!(!is_oid(bad), "{bad}");
        }
        Dtm::parse("d", "20100319194535").expect("dtm");
        Dtm::parse("d", "2010").expect("year");
        for bad in [
            "2010-03-19",
            "201013",
            "20100230",
            "20100319250000",
            "2010031919453",
        ] {
            assert!(Dtm::parse("d", bad).is_err(), "{bad}");
        }
        let d = Dtm::from_timestamp(
            "t",
            &prost_types::Timestamp {
                seconds: 1_268_937_935,
                nanos: 0,
            },
        )
        .expect("ts");
        assert_eq!(d.as_str(), "20100318184535");
        assert_eq!(d.to_timestamp().map(|t| t.seconds), Some(1_268_937_935));
        UniqueId::parse("u", "1.2.250.1.999^abc").expect("uid with extension");
        assert!(UniqueId::parse("u", "abc").is_err());
    }
}
