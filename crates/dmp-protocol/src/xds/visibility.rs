//! Who may see a document in the DMP, written as confidentialityCodes of the DMP's own coding
//! scheme (`1.2.250.1.213.1.1.4.13`, next to the HL7 `N`): masked to professionals
//! (`MASQUE_PS`), not visible to the patient (`INVISIBLE_PATIENT`), not visible to the
//! patient's legal representatives (`INVISIBLE_REPRESENTANTS_LEGAUX`, the code the DMP
//! integration guide's requirements EX_2.1-1050 and EX_3.2-1025 and DevBox-Santé's
//! `CONFIDENTIALITY_CODE` value set name).
//!
//! **The combination rules** the gateway checks before sending, from the DMP integration guide
//! (SEL-MP-037) requirements as DevBox-Santé's homologation checklist quotes them:
//! - [`Rule::NoOneButTheAuthor`] (EX_2.1-1050): a document cannot be both hidden from the
//!   patient and masked to professionals while the DMP's parameter
//!   `cumul-invisible_patient-masque_ps` is false, as it is (only the submission's technical
//!   signature document is written so);
//! - [`Rule::PatientVisibilityIsFinal`] and [`Rule::RepresentativesVisibilityIsFinal`]
//!   (EX_3.3-1045, TD3.3b): making a document visible to the patient, or to their legal
//!   representatives, cannot be undone;
//! - [`Rule::Repeated`]: a restriction named twice.
//!
//! Hidden from the patient *and* from the legal representatives is allowed: the guide forbids
//! no such combination, and in a secret connection for a minor (EX_0.1-1100) every document
//! must be hidden from the legal representatives, whatever its visibility to the patient.

use super::Code;

/// The DMP's coding scheme of visibility codes.
pub const SCHEME: &str = "1.2.250.1.213.1.1.4.13";

/// One restriction on who sees a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Restriction {
    /// `MASQUE_PS`: only the authors among professionals see it (the patient still does).
    MaskedToProfessionals,
    /// `INVISIBLE_PATIENT`: the patient does not see it (until a professional makes it visible).
    HiddenFromPatient,
    /// `INVISIBLE_REPRESENTANTS_LEGAUX`: the patient's legal representatives do not see it.
    HiddenFromLegalRepresentatives,
}

impl Restriction {
    /// Every restriction.
    pub const ALL: [Restriction; 3] = [
        Restriction::MaskedToProfessionals,
        Restriction::HiddenFromPatient,
        Restriction::HiddenFromLegalRepresentatives,
    ];

    /// The confidentialityCode's code.
    pub fn code_value(self) -> &'static str {
        match self {
            Restriction::MaskedToProfessionals => "MASQUE_PS",
            Restriction::HiddenFromPatient => "INVISIBLE_PATIENT",
            Restriction::HiddenFromLegalRepresentatives => "INVISIBLE_REPRESENTANTS_LEGAUX",
        }
    }

    /// The confidentialityCode.
    pub fn code(self) -> Code {
        let display = match self {
            Restriction::MaskedToProfessionals => "Masqué aux professionnels de santé",
            Restriction::HiddenFromPatient => "Non visible par le patient",
            Restriction::HiddenFromLegalRepresentatives => {
                "Non visible par les représentants légaux du patient"
            }
        };
        Code {
            code: self.code_value().into(),
            scheme: SCHEME.into(),
            display: display.into(),
        }
    }

    /// The restriction a confidentialityCode states, if it is one.
    pub fn from_code(code: &str, scheme: &str) -> Option<Restriction> {
        if scheme != SCHEME {
            return None;
        }
        Restriction::ALL.into_iter().find(|r| r.code_value() == code)
    }
}

/// A combination or change of restrictions the DMP refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// Masked to professionals and hidden from the patient.
    #[error(
        "rule NoOneButTheAuthor: a document cannot be both masked to professionals and hidden from the patient"
    )]
    NoOneButTheAuthor,
    /// Hiding from the patient a document they could see.
    #[error(
        "rule PatientVisibilityIsFinal: a document visible to the patient cannot be hidden from them afterwards"
    )]
    PatientVisibilityIsFinal,
    /// Hiding from the legal representatives a document they could see.
    #[error(
        "rule RepresentativesVisibilityIsFinal: a document visible to the patient's legal representatives cannot be hidden from them afterwards"
    )]
    RepresentativesVisibilityIsFinal,
    /// A restriction named twice.
    #[error("rule Repeated: each restriction may be named once")]
    Repeated,
}

/// Checks a set of restrictions (at submission, or the result of a change).
pub fn check(restrictions: &[Restriction]) -> Result<(), Rule> {
    let has = |r| restrictions.contains(&r);
    for (i, r) in restrictions.iter().enumerate() {
        if restrictions[..i].contains(r) {
            return Err(Rule::Repeated);
        }
    }
    if has(Restriction::MaskedToProfessionals) && has(Restriction::HiddenFromPatient) {
        return Err(Rule::NoOneButTheAuthor);
    }
    Ok(())
}

/// Checks a change of a document's restrictions after submission (TD3.3a/b).
pub fn check_change(current: &[Restriction], new: &[Restriction]) -> Result<(), Rule> {
    check(new)?;
    let hides = |r| new.contains(&r) && !current.contains(&r);
    if hides(Restriction::HiddenFromPatient) {
        return Err(Rule::PatientVisibilityIsFinal);
    }
    if hides(Restriction::HiddenFromLegalRepresentatives) {
        return Err(Rule::RepresentativesVisibilityIsFinal);
    }
    Ok(())
}

/// The restrictions a list of confidentialityCodes states.
pub fn of_codes<'a>(codes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Restriction> {
    let mut out: Vec<Restriction> = codes
        .into_iter()
        .filter_map(|(code, scheme)| Restriction::from_code(code, scheme))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::Restriction::*;
    use super::*;

    #[test]
    fn combinations() {
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(
            check(&[MaskedToProfessionals, HiddenFromLegalRepresentatives]),
            Ok(())
        );
        assert_eq!(check(&[HiddenFromPatient]), Ok(()));
        assert_eq!(
            check(&[MaskedToProfessionals, HiddenFromPatient]),
            Err(Rule::NoOneButTheAuthor)
        );
        assert_eq!(
            check(&[HiddenFromPatient, HiddenFromLegalRepresentatives]),
            Ok(())
        );
        assert_eq!(
            check(&[HiddenFromPatient, HiddenFromPatient]),
            Err(Rule::Repeated)
        );
        assert_eq!(check_change(&[HiddenFromPatient], &[]), Ok(()));
        assert_eq!(check_change(&[], &[MaskedToProfessionals]), Ok(()));
        assert_eq!(
            check_change(&[], &[HiddenFromPatient]),
            Err(Rule::PatientVisibilityIsFinal)
        );
        assert_eq!(
            check_change(&[MaskedToProfessionals], &[HiddenFromLegalRepresentatives]),
            Err(Rule::RepresentativesVisibilityIsFinal)
        );
        assert_eq!(
            check_change(
                &[HiddenFromLegalRepresentatives],
                &[HiddenFromLegalRepresentatives]
            ),
            Ok(())
        );
        assert_eq!(
            Restriction::HiddenFromLegalRepresentatives.code_value(),
            "INVISIBLE_REPRESENTANTS_LEGAUX"
        );
        assert!(
            Rule::NoOneButTheAuthor
                .to_string()
                .starts_with("rule NoOneButTheAuthor:")
        );
    }

    #[test]
    fn codes_round_trip() {
        for r in Restriction::ALL {
            let c = r.code();
            assert_eq!(Restriction::from_code(&c.code, &c.scheme), Some(r));
        }
        assert_eq!(Restriction::from_code("N", "2.16.840.1.113883.5.25"), None);
        assert_eq!(
            of_codes([
                ("MASQUE_PS", SCHEME),
                ("N", "2.16.840.1.113883.5.25"),
                ("MASQUE_PS", SCHEME)
            ]),
            vec![MaskedToProfessionals]
        );
    }
}
