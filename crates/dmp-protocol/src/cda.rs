//! The CDA R2 header, as far as XDS metadata depends on it (SPEC.md §2, issue "metadata that
//! the CDA header already states is taken from it when not given, and contradictions are
//! refused"): document id, creation time, title, type and confidentiality codes, language,
//! patient INS, authors, legal authenticator, service times.
//!
//! **Decision** — a CDA time without a UTC offset is taken as UTC (the CI-SIS requires an offset
//! whenever the time of day is given, so this only concerns non-conforming documents).

mod header_rules;

use crate::xds::{Author, Code, Dtm, FieldError, Ins, InsAuthority, RPPS_OID};
use crate::xml::{self, Element, XmlError, ns};

/// Why a document's header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdaError {
    /// No byte at all.
    #[error("the document is empty")]
    Empty,
    /// Bytes that do not start like XML.
    #[error("the document is not XML (a CDA R2 document is an XML ClinicalDocument)")]
    NotXml,
    /// XML that cannot be read.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Another XML document.
    #[error(
        "the root element is <{name}> in namespace `{ns}`, not a CDA <ClinicalDocument> in urn:hl7-org:v3"
    )]
    NotClinicalDocument {
        /// The root's local name.
        name: String,
        /// The root's namespace.
        ns: String,
    },
    /// A part of the header every CDA has.
    #[error("{0}")]
    Missing(&'static str),
    /// A time that is not an HL7 TS.
    #[error("`{value}` is not an HL7 TS date ({why})")]
    Time {
        /// The value read.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A coded element without its code or code system.
    #[error("<{0}> needs code and codeSystem attributes")]
    CodeAttributes(String),
    /// A code or an INS that breaks the XDS rules.
    #[error("{}", .0.reason)]
    Field(FieldError),
    /// A CI-SIS header rule the DMP enforces is broken (`element` is the header path).
    #[error("{element}: {rule}")]
    Rule {
        /// The header element, e.g. `ClinicalDocument/templateId`.
        element: String,
        /// What the rule asks and what the document has.
        rule: String,
    },
    /// Where in the header the inner error is.
    #[error("{at}: {source}")]
    In {
        /// Header path.
        at: &'static str,
        /// The error.
        source: Box<CdaError>,
    },
}

impl CdaError {
    fn at(self, at: &'static str) -> CdaError {
        CdaError::In {
            at,
            source: Box::new(self),
        }
    }
}

/// What the header says. Every field is optional: the header may be silent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdaHeader {
    /// `id@root`, or `root^extension`.
    pub unique_id: Option<String>,
    /// `effectiveTime`, in UTC.
    pub creation_time: Option<Dtm>,
    /// `title`.
    pub title: Option<String>,
    /// `code` (the LOINC document type).
    pub type_code: Option<Code>,
    /// `confidentialityCode`.
    pub confidentiality_code: Option<Code>,
    /// `languageCode`.
    pub language_code: Option<String>,
    /// The INS ids of `recordTarget/patientRole/id` (there should be exactly one).
    pub patient_ins: Vec<Ins>,
    /// Authors identified under the RPPS OID.
    pub authors: Vec<Author>,
    /// The legal authenticator, if identified under the RPPS OID.
    pub legal_authenticator: Option<Author>,
    /// `documentationOf/serviceEvent/effectiveTime/low`.
    pub service_start_time: Option<Dtm>,
    /// `documentationOf/serviceEvent/effectiveTime/high`.
    pub service_stop_time: Option<Dtm>,
}

/// Parses an HL7 V3 TS (`YYYYMMDD[HH[MM[SS[.S+]]]][+/-ZZZZ]`) into a UTC DTM.
pub fn parse_ts(s: &str) -> Result<Dtm, CdaError> {
    let bad = |why: &str| CdaError::Time {
        value: s.to_string(),
        why: why.to_string(),
    };
    let (body, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let body = match body.split_once('.') {
        Some((b, frac)) if !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit()) => b,
        Some(_) => return Err(bad("bad fraction of second")),
        None => body,
    };
    let dtm = Dtm::parse("ts", body).map_err(|e| bad(&e.reason))?;
    let Some(off) = offset else {
        return Ok(dtm);
    };
    if off.len() != 5 || !off[1..].bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("the offset must be +HHMM or -HHMM"));
    }
    if body.len() < 10 {
        // An offset on a date without time of day changes nothing XDS can express.
        return Ok(dtm);
    }
    let sign: i64 = if off.starts_with('-') { -1 } else { 1 };
    let h: i64 = off[1..3].parse().map_err(|_| bad("offset hours"))?;
    let m: i64 = off[3..5].parse().map_err(|_| bad("offset minutes"))?;
    if h > 14 || m > 59 {
        return Err(bad("offset out of range"));
    }
    let local = dtm.to_unix().ok_or_else(|| bad("not a calendar date"))?;
    let utc = local - sign * (h * 3600 + m * 60);
    let t = time::OffsetDateTime::from_unix_timestamp(utc).map_err(|_| bad("out of range"))?;
    let full = Dtm::from_offset_datetime(t);
    // Keep the precision of the source.
    Dtm::parse("ts", &full.as_str()[..body.len()]).map_err(|e| bad(&e.reason))
}

fn hl7<'a>(e: &'a Element, path: &[&str]) -> Option<&'a Element> {
    e.path(ns::HL7, path)
}

fn code_of(e: &Element, what: &str) -> Result<Option<Code>, CdaError> {
    let (Some(code), Some(system)) = (e.attr("code"), e.attr("codeSystem")) else {
        if e.attr("nullFlavor").is_some() {
            return Ok(None);
        }
        return Err(CdaError::CodeAttributes(what.to_string()));
    };
    Code::from_parts(what, code, system, e.attr("displayName").unwrap_or(code))
        .map(Some)
        .map_err(CdaError::Field)
}

fn person(entity: &Element, person_element: &str, what: &str) -> Result<Option<Author>, CdaError> {
    let Some(id) = entity
        .children_named(ns::HL7, "id")
        .find(|i| i.attr("root") == Some(RPPS_OID))
        .and_then(|i| i.attr("extension"))
    else {
        return Ok(None);
    };
    let name = hl7(entity, &[person_element, "name"]);
    let part = |p: &str| {
        name.and_then(|n| n.child(ns::HL7, p))
            .map(|e| e.text.trim().to_string())
            .unwrap_or_default()
    };
    let specialty = match entity.child(ns::HL7, "code") {
        Some(c) => code_of(c, &format!("{what}/code"))?,
        None => None,
    };
    Ok(Some(Author {
        id: id.to_string(),
        family: part("family"),
        given: part("given"),
        role: None,
        specialty,
        institution: None,
    }))
}

/// Parses a CDA R2 document down to its header: the root `ClinicalDocument`, whose body
/// (`component`) is checked for well-formedness but not kept.
fn parse(bytes: &[u8]) -> Result<Element, CdaError> {
    if bytes.is_empty() {
        return Err(CdaError::Empty);
    }
    let start = bytes
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(bytes)
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    if start != Some(&b'<') {
        return Err(CdaError::NotXml);
    }
    // The body (`component`, after every header element) is checked for well-formedness but
    // not kept: a 1 MiB document costs a scan, not a tree.
    let root = xml::parse_skipping(bytes, &|depth, ns_, name| {
        depth == 1 && ns_ == ns::HL7 && name == "component"
    })?;
    if !root.is(ns::HL7, "ClinicalDocument") {
        return Err(CdaError::NotClinicalDocument {
            name: root.name,
            ns: root.ns,
        });
    }
    Ok(root)
}

/// Reads the header of a CDA R2 document.
pub fn read_header(bytes: &[u8]) -> Result<CdaHeader, CdaError> {
    header_of(&parse(bytes)?)
}

/// Reads the header of a CDA R2 document that the DMP would accept: besides being readable, it
/// follows the CI-SIS header rules the DMP enforces (`header_rules`: templateIds, typeId,
/// effectiveTime to the second with its offset, confidentiality code system, one patient with
/// an INS, authors and custodian under the national identifier OIDs); a broken rule is
/// [`CdaError::Rule`] naming the element.
pub fn read_conforming_header(bytes: &[u8]) -> Result<CdaHeader, CdaError> {
    let root = parse(bytes)?;
    // What cannot be read is reported as such first; then the rules.
    let header = header_of(&root)?;
    header_rules::check(&root)?;
    Ok(header)
}

fn header_of(root: &Element) -> Result<CdaHeader, CdaError> {
    let mut h = CdaHeader::default();
    let id = root
        .child(ns::HL7, "id")
        .ok_or(CdaError::Missing("the header has no <id> (ClinicalDocument/id)"))?;
    let id_root = id
        .attr("root")
        .ok_or(CdaError::Missing("ClinicalDocument/id has no root attribute"))?;
    h.unique_id = Some(match id.attr("extension") {
        Some(ext) if !ext.is_empty() => format!("{id_root}^{ext}"),
        _ => id_root.to_string(),
    });
    if let Some(t) = root.child(ns::HL7, "effectiveTime") {
        let v = t
            .attr("value")
            .ok_or(CdaError::Missing("ClinicalDocument/effectiveTime has no value"))?;
        h.creation_time = Some(parse_ts(v).map_err(|e| e.at("ClinicalDocument/effectiveTime"))?);
    }
    h.title = root
        .child(ns::HL7, "title")
        .map(|t| t.text.trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(c) = root.child(ns::HL7, "code") {
        h.type_code = code_of(c, "ClinicalDocument/code")?;
    }
    if let Some(c) = root.child(ns::HL7, "confidentialityCode") {
        h.confidentiality_code = code_of(c, "ClinicalDocument/confidentialityCode")?;
    }
    h.language_code = root
        .child(ns::HL7, "languageCode")
        .and_then(|l| l.attr("code"))
        .map(str::to_string);
    for rt in root.children_named(ns::HL7, "recordTarget") {
        let Some(role) = rt.child(ns::HL7, "patientRole") else {
            return Err(CdaError::Missing("recordTarget has no patientRole"));
        };
        for pid in role.children_named(ns::HL7, "id") {
            let Some(r) = pid.attr("root") else { continue };
            if InsAuthority::from_oid(r).is_some() {
                let ext = pid.attr("extension").unwrap_or_default();
                let ins = Ins::new("recordTarget/patientRole/id", ext, r)
                    .map_err(|e| CdaError::Field(e).at("recordTarget/patientRole/id"))?;
                h.patient_ins.push(ins);
            }
        }
    }
    for a in root.children_named(ns::HL7, "author") {
        if let Some(aa) = a.child(ns::HL7, "assignedAuthor")
            && let Some(p) = person(aa, "assignedPerson", "author/assignedAuthor")?
        {
            h.authors.push(p);
        }
    }
    if let Some(aa) = hl7(root, &["legalAuthenticator", "assignedEntity"]) {
        h.legal_authenticator = person(aa, "assignedPerson", "legalAuthenticator/assignedEntity")?;
    }
    if let Some(t) = hl7(root, &["documentationOf", "serviceEvent", "effectiveTime"]) {
        if let Some(v) = t.child(ns::HL7, "low").and_then(|l| l.attr("value")) {
            h.service_start_time = Some(parse_ts(v).map_err(|e| e.at("serviceEvent/effectiveTime/low"))?);
        }
        if let Some(v) = t.child(ns::HL7, "high").and_then(|l| l.attr("value")) {
            h.service_stop_time = Some(parse_ts(v).map_err(|e| e.at("serviceEvent/effectiveTime/high"))?);
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME2: &str = include_str!("../../../tests/fixtures/dmp-package/examples/TD2.1-DocumentME2.xml");

    #[test]
    fn reads_the_official_example_header() {
        let h = read_header(ME2.as_bytes()).expect("header");
        assert_eq!(
            h.unique_id.as_deref(),
            Some("1.2.250.1.999.1.1.7898.4.9956570902")
        );
        // 13:34:45 at +01:00 is 12:34:45 UTC.
        assert_eq!(h.creation_time.as_ref().map(Dtm::as_str), Some("20190221123445"));
        assert_eq!(h.patient_ins.len(), 1);
        assert_eq!(h.patient_ins[0].value(), "207058575627097");
        assert_eq!(h.authors[0].id, "899900063480");
        assert_eq!(h.type_code.as_ref().map(|c| c.code.as_str()), Some("27899-4"));
        assert_eq!(
            h.legal_authenticator.as_ref().map(|a| a.id.as_str()),
            Some("899900063480")
        );
        assert_eq!(h.service_start_time.as_ref().map(Dtm::as_str), Some("20190221"));
    }

    #[test]
    fn refuses_malformed_documents() {
        for (doc, want) in [
            ("", "empty"),
            ("<ClinicalDocument>", "not closed"),
            ("<html/>", "not a CDA"),
            (r#"<ClinicalDocument xmlns="urn:hl7-org:v3"/>"#, "no <id>"),
            (
                r#"<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3"/><effectiveTime value="2019-02-21"/></ClinicalDocument>"#,
                "effectiveTime",
            ),
        ] {
            let e = read_header(doc.as_bytes()).expect_err(doc);
            assert!(e.to_string().contains(want), "{e} should mention {want}");
        }
    }
}
