//! The typed XDS.b metadata model for French DMP documents (SPEC.md §2 "XDS metadata"):
//! INS patient ids, RPPS authors, codes, HL7 DTM dates, document entries and submission sets,
//! validated *before* anything leaves a sender, with errors naming the field they came from
//! ([`FieldError`]). Entries and sets map to and from ebRIM objects ([`crate::ebrim`]).
//!
//! Types here can only be built valid: an [`Ins`], an [`Oid`], a [`Dtm`] or a [`UniqueId`] that
//! exists has passed its checks.

use std::fmt;

mod ins;
mod metadata;
pub mod visibility;

pub use ins::{Ins, InsAuthority};
pub use metadata::{DocumentEntry, RegistryEntry, Submission, SubmissionSet};

/// Classification and identification schemes of XDS.b (IHE ITI TF-3 4.2.5).
pub mod scheme {
    /// `objectType` of a stable DocumentEntry.
    pub const DOCUMENT_ENTRY_OBJECT_TYPE: &str = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1";
    /// DocumentEntry.author.
    pub const DOC_AUTHOR: &str = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d";
    /// DocumentEntry.classCode.
    pub const DOC_CLASS: &str = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a";
    /// DocumentEntry.confidentialityCode.
    pub const DOC_CONFIDENTIALITY: &str = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f";
    /// DocumentEntry.eventCodeList.
    pub const DOC_EVENT: &str = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4";
    /// DocumentEntry.formatCode.
    pub const DOC_FORMAT: &str = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d";
    /// DocumentEntry.healthcareFacilityTypeCode.
    pub const DOC_FACILITY_TYPE: &str = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1";
    /// DocumentEntry.practiceSettingCode.
    pub const DOC_PRACTICE_SETTING: &str = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead";
    /// DocumentEntry.typeCode.
    pub const DOC_TYPE: &str = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983";
    /// DocumentEntry.patientId.
    pub const DOC_PATIENT_ID: &str = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427";
    /// DocumentEntry.uniqueId.
    pub const DOC_UNIQUE_ID: &str = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab";
    /// The classification node that makes a RegistryPackage a SubmissionSet.
    pub const SUBMISSION_SET_NODE: &str = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd";
    /// SubmissionSet.author.
    pub const SS_AUTHOR: &str = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d";
    /// SubmissionSet.contentTypeCode.
    pub const SS_CONTENT_TYPE: &str = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500";
    /// SubmissionSet.patientId.
    pub const SS_PATIENT_ID: &str = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446";
    /// SubmissionSet.sourceId.
    pub const SS_SOURCE_ID: &str = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832";
    /// SubmissionSet.uniqueId.
    pub const SS_UNIQUE_ID: &str = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8";
}

/// Association types.
pub mod association {
    /// A submission set contains an entry.
    pub const HAS_MEMBER: &str = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember";
    /// The signature document signs the submission set.
    pub const SIGNS: &str = "urn:ihe:iti:2007:AssociationType:signs";
    /// ITI-57: change an entry's availability status.
    pub const UPDATE_AVAILABILITY_STATUS: &str = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus";
    /// ITI-42: the source entry replaces the target entry, which becomes Deprecated.
    pub const RPLC: &str = "urn:ihe:iti:2007:AssociationType:RPLC";
}

/// Document availability status URNs (the two French ones come from the CI-SIS).
pub mod status {
    /// Available.
    pub const APPROVED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved";
    /// Replaced by another document.
    pub const DEPRECATED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated";
    /// Archived (CI-SIS).
    pub const ARCHIVED: &str = "urn:asip:ci-sis:2010:StatusType:Archived";
    /// Deleted (CI-SIS).
    pub const DELETED: &str = "urn:asip:ci-sis:2010:StatusType:Deleted";
    /// Submitted, not yet available.
    pub const SUBMITTED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Submitted";
}

/// The availability status of a document in the DMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvailabilityStatus {
    /// [`status::APPROVED`].
    Approved,
    /// [`status::DEPRECATED`].
    Deprecated,
    /// [`status::ARCHIVED`].
    Archived,
    /// [`status::DELETED`].
    Deleted,
}

impl AvailabilityStatus {
    /// The status URN.
    pub fn urn(self) -> &'static str {
        match self {
            AvailabilityStatus::Approved => status::APPROVED,
            AvailabilityStatus::Deprecated => status::DEPRECATED,
            AvailabilityStatus::Archived => status::ARCHIVED,
            AvailabilityStatus::Deleted => status::DELETED,
        }
    }

    /// Reads a status URN (`None` for any other status).
    pub fn from_urn(urn: &str) -> Option<AvailabilityStatus> {
        Some(match urn {
            status::APPROVED => AvailabilityStatus::Approved,
            status::DEPRECATED => AvailabilityStatus::Deprecated,
            status::ARCHIVED => AvailabilityStatus::Archived,
            status::DELETED => AvailabilityStatus::Deleted,
            _ => return None,
        })
    }

    /// Whether the DMP allows an ITI-57 change from `self` to `new`: archive
    /// (APPROVED→ARCHIVED), unarchive (ARCHIVED→APPROVED), delete (APPROVED or
    /// ARCHIVED→DELETED).
    pub fn may_become(self, new: AvailabilityStatus) -> bool {
        use AvailabilityStatus as S;
        matches!(
            (self, new),
            (S::Approved, S::Archived) | (S::Archived, S::Approved) | (S::Approved | S::Archived, S::Deleted)
        )
    }
}

/// OID of the RPPS-based professional identifiers (authorPerson, legalAuthenticator).
pub const RPPS_OID: &str = "1.2.250.1.71.4.2.1";
/// OID of structure identifiers (authorInstitution).
pub const STRUCTURE_OID: &str = "1.2.250.1.71.4.2.2";

/// A validation failure naming the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field, as the caller named it (`documents[0].metadata.type_code`).
    pub field: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl FieldError {
    /// A failure of `field`.
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
    /// Checks `s`; `field` names it in the error.
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

    /// The dotted form.
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

/// Whether `s` is a dotted OID of at most 64 characters.
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
    /// Checks `s`; `field` names it in the error.
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

    /// A fresh unique id (an OID under `2.25`).
    pub fn generate() -> UniqueId {
        UniqueId(Oid::generate().0)
    }

    /// The id as written in metadata.
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
// Dates.

/// An HL7 V2 DTM date in UTC as XDS uses it: `YYYY[MM[DD[hh[mm[ss]]]]]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dtm(String);

impl Dtm {
    /// Checks `s`; `field` names it in the error.
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

    /// The instant to the second, in UTC.
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

    /// A Unix time (seconds and nanoseconds, as protobuf timestamps carry it), checked:
    /// nanoseconds in range, a year between 1900 and 9999.
    pub fn from_unix(field: &str, seconds: i64, nanos: i32) -> FResult<Dtm> {
        if !(0..1_000_000_000).contains(&nanos) {
            return Err(FieldError::new(field, format!("nanos {nanos} out of range")));
        }
        let t = time::OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|_| FieldError::new(field, format!("{seconds} seconds is not a date")))?;
        if !(1900..=9999).contains(&t.year()) {
            return Err(FieldError::new(
                field,
                format!("year {} is outside 1900..9999", t.year()),
            ));
        }
        Ok(Dtm::from_offset_datetime(t))
    }

    /// The Unix time of the date's first second (missing components are the first month, day,
    /// hour…), or `None` if the date does not exist in the calendar.
    pub fn to_unix(&self) -> Option<i64> {
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
        Some(
            time::PrimitiveDateTime::new(date, t)
                .assume_utc()
                .unix_timestamp(),
        )
    }

    /// The DTM as written in metadata.
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
    /// The code.
    pub code: String,
    /// The coding scheme (an OID, or a name such as `URN`).
    pub scheme: String,
    /// The display name.
    pub display: String,
}

const HL7_DELIMITERS: [char; 5] = ['^', '&', '|', '~', '\\'];

/// Checks free text that goes into an HL7 V2 data type (no delimiters, no control characters);
/// `what` says what it is in the error (`a name`).
pub fn check_text(field: &str, s: &str, what: &str) -> FResult<()> {
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
    /// A code with its coding scheme and display name, all three present; errors name
    /// `{field}.code`, `{field}.code_system` or `{field}.display_name`.
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

    /// `code^display^scheme` (authorSpecialty, authorRole).
    pub fn to_ce(&self) -> String {
        format!("{}^{}^{}", self.code, self.display, self.scheme)
    }

    /// `code^^scheme` as FindDocuments code parameters want it.
    pub fn to_query_value(&self) -> String {
        format!("{}^^{}", self.code, self.scheme)
    }
}

/// A health professional identified by an RPPS-based id (`8` + 11-digit RPPS number, or an
/// ADELI-based `0…`/other prefixed id) under [`RPPS_OID`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The professional identifier.
    pub id: String,
    /// Family name.
    pub family: String,
    /// Given name.
    pub given: String,
    /// authorRole.
    pub role: Option<Code>,
    /// authorSpecialty.
    pub specialty: Option<Code>,
    /// authorInstitution.
    pub institution: Option<Institution>,
}

/// The structure an author acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Institution {
    /// The structure's name.
    pub name: String,
    /// Its identifier under [`STRUCTURE_OID`].
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
}

/// Checks an ExtrinsicObject id given by a caller (`urn:uuid:…`).
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

#[cfg(test)]
mod tests;
