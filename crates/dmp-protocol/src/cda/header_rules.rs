//! The CI-SIS rules of a CDA R2 header that the DMP enforces at TD2.1 (ANS, CI-SIS "Volet
//! Structuration minimale des documents de santé" and the HL7 France CDA header profile), checked
//! before anything is sent so that a refusal names the element instead of coming back as a
//! registry error. The official examples (`TD2.1-DocumentME2.xml`) follow every rule.
//!
//! | element | rule |
//! |---|---|
//! | `ClinicalDocument/typeId` | root `2.16.840.1.113883.1.3`, extension `POCD_HD000040` (CDA R2) |
//! | `ClinicalDocument/templateId` | both `2.16.840.1.113883.2.8.2.1` (HL7 France header) and `1.2.250.1.213.1.1.1.1` (CI-SIS) |
//! | `ClinicalDocument/effectiveTime` | `YYYYMMDDHHMMSS±HHMM`: to the second, with the UTC offset |
//! | `ClinicalDocument/confidentialityCode` | code system `2.16.840.1.113883.5.25` (HL7 Confidentiality), code `N`, `R` or `V` |
//! | `recordTarget` | exactly one, whose `patientRole/id` holds an INS (root `1.2.250.1.213.1.4.8`, or `.10`/`.11` for test identities) |
//! | `author[i]/assignedAuthor/id` | at least one author; each identified under `1.2.250.1.71.4.2.1` (national professional id, RPPS/ADELI based), or, for an authoring device, also `1.2.250.1.71.4.2.2` (structure) |
//! | `custodian/assignedCustodian/representedCustodianOrganization/id` | the custodian identified under `1.2.250.1.71.4.2.2` (national structure id) |
//!
//! That the INS is the request's patient is the gateway's check (it knows the request).

use super::CdaError;
use crate::xds::{InsAuthority, RPPS_OID, STRUCTURE_OID};
use crate::xml::{Element, ns};

/// CDA R2's typeId.
const CDA_TYPE_ROOT: &str = "2.16.840.1.113883.1.3";
const CDA_TYPE_EXTENSION: &str = "POCD_HD000040";
/// Header templates every CI-SIS document declares.
const HL7_FRANCE_TEMPLATE: &str = "2.16.840.1.113883.2.8.2.1";
const CI_SIS_TEMPLATE: &str = "1.2.250.1.213.1.1.1.1";
/// HL7 Confidentiality (v3 code system) and the codes the CI-SIS allows.
const CONFIDENTIALITY_SYSTEM: &str = "2.16.840.1.113883.5.25";
const CONFIDENTIALITY_CODES: [&str; 3] = ["N", "R", "V"];

fn broken(element: impl Into<String>, rule: impl Into<String>) -> CdaError {
    CdaError::Rule {
        element: element.into(),
        rule: rule.into(),
    }
}

/// Every rule of the table above, in document order; the first broken one is returned.
pub(super) fn check(root: &Element) -> Result<(), CdaError> {
    type_id(root)?;
    template_ids(root)?;
    effective_time(root)?;
    confidentiality(root)?;
    record_target(root)?;
    authors(root)?;
    custodian(root)
}

fn type_id(root: &Element) -> Result<(), CdaError> {
    const AT: &str = "ClinicalDocument/typeId";
    let t = root.child(ns::HL7, "typeId").ok_or_else(|| {
        broken(
            AT,
            format!("required: root {CDA_TYPE_ROOT}, extension {CDA_TYPE_EXTENSION}"),
        )
    })?;
    if t.attr("root") != Some(CDA_TYPE_ROOT) || t.attr("extension") != Some(CDA_TYPE_EXTENSION) {
        return Err(broken(
            AT,
            format!(
                "must be root {CDA_TYPE_ROOT}, extension {CDA_TYPE_EXTENSION} (CDA R2), not root `{}`, extension `{}`",
                t.attr("root").unwrap_or_default(),
                t.attr("extension").unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn template_ids(root: &Element) -> Result<(), CdaError> {
    let declared: Vec<&str> = root
        .children_named(ns::HL7, "templateId")
        .filter_map(|t| t.attr("root"))
        .collect();
    for (template, what) in [
        (HL7_FRANCE_TEMPLATE, "the HL7 France CDA header"),
        (CI_SIS_TEMPLATE, "the CI-SIS header (structuration minimale)"),
    ] {
        if !declared.contains(&template) {
            return Err(broken(
                "ClinicalDocument/templateId",
                format!(
                    "{template} ({what}) is missing; the document declares [{}]",
                    declared.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `YYYYMMDDHHMMSS±HHMM`; the calendar values themselves are checked when the header is read.
fn is_second_with_offset(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 19
        && b[..14].iter().all(u8::is_ascii_digit)
        && matches!(b[14], b'+' | b'-')
        && b[15..].iter().all(u8::is_ascii_digit)
}

fn effective_time(root: &Element) -> Result<(), CdaError> {
    const AT: &str = "ClinicalDocument/effectiveTime";
    let value = root
        .child(ns::HL7, "effectiveTime")
        .and_then(|t| t.attr("value"))
        .ok_or_else(|| broken(AT, "required: the document's creation time, YYYYMMDDHHMMSS+HHMM"))?;
    if !is_second_with_offset(value) {
        return Err(broken(
            AT,
            format!("`{value}` must be YYYYMMDDHHMMSS±HHMM (to the second, with the UTC offset)"),
        ));
    }
    Ok(())
}

fn confidentiality(root: &Element) -> Result<(), CdaError> {
    const AT: &str = "ClinicalDocument/confidentialityCode";
    let c = root.child(ns::HL7, "confidentialityCode").ok_or_else(|| {
        broken(
            AT,
            format!("required (code N, R or V of {CONFIDENTIALITY_SYSTEM})"),
        )
    })?;
    let system = c.attr("codeSystem").unwrap_or_default();
    if system != CONFIDENTIALITY_SYSTEM {
        return Err(broken(
            AT,
            format!("codeSystem must be {CONFIDENTIALITY_SYSTEM} (HL7 Confidentiality), not `{system}`"),
        ));
    }
    let code = c.attr("code").unwrap_or_default();
    if !CONFIDENTIALITY_CODES.contains(&code) {
        return Err(broken(AT, format!("code must be N, R or V, not `{code}`")));
    }
    Ok(())
}

fn record_target(root: &Element) -> Result<(), CdaError> {
    let targets: Vec<&Element> = root.children_named(ns::HL7, "recordTarget").collect();
    let [target] = targets.as_slice() else {
        return Err(broken(
            "recordTarget",
            format!(
                "exactly one patient is required, the document has {}",
                targets.len()
            ),
        ));
    };
    let has_ins = target
        .path(ns::HL7, &["patientRole"])
        .into_iter()
        .flat_map(|r| r.children_named(ns::HL7, "id"))
        .any(|id| {
            id.attr("root")
                .is_some_and(|r| InsAuthority::from_oid(r).is_some())
        });
    if !has_ins {
        return Err(broken(
            "recordTarget/patientRole/id",
            format!(
                "no INS: an id with root {} ({} or {} for test identities) is required",
                InsAuthority::NIR_OID,
                InsAuthority::TEST_NIR_OID,
                InsAuthority::TEST_NIA_OID
            ),
        ));
    }
    Ok(())
}

/// The first id of `entity` under one of `roots`, with an extension.
fn identified(entity: &Element, roots: &[&str]) -> bool {
    entity.children_named(ns::HL7, "id").any(|id| {
        id.attr("root").is_some_and(|r| roots.contains(&r))
            && id.attr("extension").is_some_and(|e| !e.trim().is_empty())
    })
}

fn authors(root: &Element) -> Result<(), CdaError> {
    let authors: Vec<&Element> = root.children_named(ns::HL7, "author").collect();
    if authors.is_empty() {
        return Err(broken("author", "at least one author is required"));
    }
    for (i, a) in authors.iter().enumerate() {
        let at = format!("author[{i}]/assignedAuthor/id");
        let assigned = a
            .child(ns::HL7, "assignedAuthor")
            .ok_or_else(|| broken(format!("author[{i}]/assignedAuthor"), "required"))?;
        let device = assigned.child(ns::HL7, "assignedAuthoringDevice").is_some();
        let roots: &[&str] = if device {
            &[RPPS_OID, STRUCTURE_OID]
        } else {
            &[RPPS_OID]
        };
        if !identified(assigned, roots) {
            return Err(broken(
                at,
                if device {
                    format!(
                        "an authoring device is identified under {RPPS_OID} or {STRUCTURE_OID}, with an extension"
                    )
                } else {
                    format!(
                        "the author is identified under {RPPS_OID} (national professional identifier), with an extension"
                    )
                },
            ));
        }
    }
    Ok(())
}

fn custodian(root: &Element) -> Result<(), CdaError> {
    const AT: &str = "custodian/assignedCustodian/representedCustodianOrganization/id";
    let org = root
        .path(
            ns::HL7,
            &[
                "custodian",
                "assignedCustodian",
                "representedCustodianOrganization",
            ],
        )
        .ok_or_else(|| broken("custodian", "required: the organisation keeping the document"))?;
    if !identified(org, &[STRUCTURE_OID]) {
        return Err(broken(
            AT,
            format!(
                "the custodian is identified under {STRUCTURE_OID} (national structure identifier), with an extension"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{read_conforming_header, read_header};
    use super::*;

    const ME2: &str = include_str!("../../../../tests/fixtures/dmp-package/examples/TD2.1-DocumentME2.xml");

    /// The official example with `from` replaced by `to` (which must occur).
    fn with(from: &str, to: &str) -> String {
        assert!(ME2.contains(from), "the example has {from}");
        ME2.replacen(from, to, 1)
    }

    /// Expects the rule of `element` to be broken, its message naming `why`.
    fn refused(doc: &str, element: &str, why: &str) {
        match read_conforming_header(doc.as_bytes()) {
            Err(CdaError::Rule { element: e, rule }) => {
                assert_eq!(e, element, "{rule}");
                assert!(rule.contains(why), "{rule} should mention {why}");
            }
            other => panic!("{element}: expected a broken rule, got {other:?}"),
        }
        // The plain reader still reads it: these are the DMP's rules, not CDA's.
        assert!(read_header(doc.as_bytes()).is_ok(), "{element}");
    }

    #[test]
    fn the_official_example_follows_every_rule() {
        let h = read_conforming_header(ME2.as_bytes()).expect("the official example conforms");
        assert_eq!(h, read_header(ME2.as_bytes()).expect("header"));
    }

    #[test]
    fn type_id() {
        refused(
            &with(r#"extension="POCD_HD000040""#, r#"extension="POCD_HD000030""#),
            "ClinicalDocument/typeId",
            "POCD_HD000030",
        );
        refused(
            &with(
                r#"<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040" />"#,
                "",
            ),
            "ClinicalDocument/typeId",
            "required",
        );
    }

    #[test]
    fn template_ids() {
        refused(
            &with(
                r#"<templateId root="1.2.250.1.213.1.1.1.1" assigningAuthorityName="CI-SIS" />"#,
                "",
            ),
            "ClinicalDocument/templateId",
            "1.2.250.1.213.1.1.1.1 (the CI-SIS header",
        );
        refused(
            &with(
                r#"root="2.16.840.1.113883.2.8.2.1""#,
                r#"root="2.16.840.1.113883.2.8.2.9""#,
            ),
            "ClinicalDocument/templateId",
            "2.16.840.1.113883.2.8.2.1 (the HL7 France CDA header",
        );
    }

    #[test]
    fn effective_time_is_to_the_second_with_an_offset() {
        for bad in [
            "20190221133445",
            "201902211334+0100",
            "20190221",
            "20190221133445.5+0100",
        ] {
            refused(
                &with(
                    r#"<effectiveTime value="20190221133445+0100" />"#,
                    &format!(r#"<effectiveTime value="{bad}" />"#),
                ),
                "ClinicalDocument/effectiveTime",
                bad,
            );
        }
        refused(
            &with(r#"<effectiveTime value="20190221133445+0100" />"#, ""),
            "ClinicalDocument/effectiveTime",
            "required",
        );
        assert!(is_second_with_offset("20190221133445-0500"));
    }

    #[test]
    fn confidentiality_code_system() {
        refused(
            &with(
                r#"codeSystem="2.16.840.1.113883.5.25""#,
                r#"codeSystem="1.2.250.1.213.1.1.4.13""#,
            ),
            "ClinicalDocument/confidentialityCode",
            "codeSystem must be 2.16.840.1.113883.5.25",
        );
        refused(
            &with(
                r#"<confidentialityCode code="N""#,
                r#"<confidentialityCode code="U""#,
            ),
            "ClinicalDocument/confidentialityCode",
            "not `U`",
        );
    }

    #[test]
    fn one_patient_with_an_ins() {
        refused(
            &with(r#"root="1.2.250.1.213.1.4.10""#, r#"root="1.2.250.1.213.1.4.2""#),
            "recordTarget/patientRole/id",
            "no INS",
        );
        let start = ME2.find("<recordTarget>").expect("recordTarget");
        let end = ME2.find("</recordTarget>").expect("end") + "</recordTarget>".len();
        let twice = format!("{}{}{}", &ME2[..end], &ME2[start..end], &ME2[end..]);
        refused(&twice, "recordTarget", "has 2");
    }

    #[test]
    fn authors_under_the_national_professional_identifier() {
        // The first such id is the author's (the legal authenticator's comes later).
        let author =
            r#"<id root="1.2.250.1.71.4.2.1" extension="899900063480" assigningAuthorityName="GIP-CPS" />"#;
        refused(
            &with(author, r#"<id root="1.2.250.1.999" extension="899900063480" />"#),
            "author[0]/assignedAuthor/id",
            "1.2.250.1.71.4.2.1",
        );
        refused(
            &with(author, r#"<id root="1.2.250.1.71.4.2.1" extension="" />"#),
            "author[0]/assignedAuthor/id",
            "with an extension",
        );
        let start = ME2.find("<author>").expect("author");
        let end = ME2.find("</author>").expect("end") + "</author>".len();
        let none = format!("{}{}", &ME2[..start], &ME2[end..]);
        assert!(matches!(
            read_conforming_header(none.as_bytes()),
            Err(CdaError::Rule { element, .. }) if element == "author"
        ));
        // An authoring device may be identified by its structure.
        let device = with(
            author,
            r#"<id root="1.2.250.1.71.4.2.2" extension="499900063480001" /><assignedAuthoringDevice><softwareName>LPS</softwareName></assignedAuthoringDevice>"#,
        );
        assert!(read_conforming_header(device.as_bytes()).is_ok());
    }

    #[test]
    fn custodian_under_the_national_structure_identifier() {
        refused(
            &with(
                r#"<id root="1.2.250.1.71.4.2.2" extension="499900063480001""#,
                r#"<id root="1.2.250.1.71.4.2.1" extension="499900063480001""#,
            ),
            "custodian/assignedCustodian/representedCustodianOrganization/id",
            "1.2.250.1.71.4.2.2",
        );
        let start = ME2.find("<custodian>").expect("custodian");
        let end = ME2.find("</custodian>").expect("end") + "</custodian>".len();
        let none = format!("{}{}", &ME2[..start], &ME2[end..]);
        refused(&none, "custodian", "required");
    }
}
