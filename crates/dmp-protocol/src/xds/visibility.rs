//! Who may see a document in the DMP, written as confidentialityCodes of the DMP's own coding
//! scheme (`1.2.250.1.213.1.1.4.13`, next to the HL7 `N`): masked to professionals
//! (`MASQUE_PS`), not visible to the patient (`INVISIBLE_PATIENT`), not visible to the
//! patient's legal representatives (`INVISIBLE_REP_LEGAUX`).
//!
//! **Decision — the combination rules** the gateway checks before sending, as the DMP applies
//! them to clinical documents:
//! - [`Rule::NoOneButTheAuthor`]: masked to professionals *and* hidden from the patient would
//!   leave the document to its author alone (only the submission's technical signature document
//!   is written so);
//! - [`Rule::RepresentativesFollowThePatient`]: a document hidden from the patient is hidden
//!   from their legal representatives already; saying both is refused rather than guessed;
//! - [`Rule::PatientVisibilityIsFinal`]: once a document is visible to the patient it cannot be
//!   hidden from them afterwards (TD3.3b only makes documents visible);
//! - [`Rule::Repeated`]: a restriction named twice.

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
    /// `INVISIBLE_REP_LEGAUX`: the patient's legal representatives do not see it.
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
            Restriction::HiddenFromLegalRepresentatives => "INVISIBLE_REP_LEGAUX",
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
    /// Hidden from the patient and from the legal representatives.
    #[error(
        "rule RepresentativesFollowThePatient: a document hidden from the patient is hidden from their legal representatives already; name only HIDDEN_FROM_PATIENT"
    )]
    RepresentativesFollowThePatient,
    /// Hiding from the patient a document they could see.
    #[error(
        "rule PatientVisibilityIsFinal: a document visible to the patient cannot be hidden from them afterwards"
    )]
    PatientVisibilityIsFinal,
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
    if has(Restriction::HiddenFromPatient) && has(Restriction::HiddenFromLegalRepresentatives) {
        return Err(Rule::RepresentativesFollowThePatient);
    }
    Ok(())
}

/// Checks a change of a document's restrictions after submission (TD3.3a/b).
pub fn check_change(current: &[Restriction], new: &[Restriction]) -> Result<(), Rule> {
    check(new)?;
    if new.contains(&Restriction::HiddenFromPatient) && !current.contains(&Restriction::HiddenFromPatient) {
        return Err(Rule::PatientVisibilityIsFinal);
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
            Err(Rule::RepresentativesFollowThePatient)
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
