//! What a professional may see of a patient's DMP: the patient's entries, except those masked
//! to professionals (`MASQUE_PS`), which only their authors see — in FindDocuments,
//! GetDocuments, GetAssociations and RetrieveDocument alike (a masked document is answered as
//! an unknown one).

use dmp_protocol::ebrim::{ExtrinsicObject, RegistryErrorEntry, RegistryObject};
use dmp_protocol::xades;
use dmp_protocol::xds::scheme;
use dmp_protocol::xds::visibility::{self, Restriction};

use super::{Registry, Stored, author_ids, codes, err};
use crate::Call;

/// At submission, a clinical document's visibility codes keep to the DMP's combination rules;
/// the submission's signature document (typeCode E1762, XML-DSig format), which no one reads,
/// is written masked and invisible to the patient on purpose.
pub(super) fn check_submitted(e: &ExtrinsicObject, errors: &mut Vec<RegistryErrorEntry>) {
    let o = &e.object;
    if is_signature_document(o) {
        return;
    }
    let restrictions: Vec<Restriction> = o
        .classifications_by_scheme(scheme::DOC_CONFIDENTIALITY)
        .filter_map(|c| {
            Restriction::from_code(
                c.node_representation.as_deref().unwrap_or_default(),
                c.slot_value("codingScheme").unwrap_or_default(),
            )
        })
        .collect();
    if let Err(rule) = visibility::check(&restrictions) {
        errors.push(err(codes::METADATA, format!("{}: {rule}", o.id), &o.id));
    }
}

/// A submission's signature document (typeCode E1762, XML-DSig formatCode): stored and
/// retrievable, but not a clinical document — FindDocuments leaves it out, as the official TD3.1
/// answer (21 entries, none a signature) shows.
pub(super) fn is_signature_document(o: &RegistryObject) -> bool {
    let has = |sch: &str, value: &str| {
        o.classifications_by_scheme(sch)
            .any(|c| c.node_representation.as_deref() == Some(value))
    };
    has(scheme::DOC_TYPE, xades::TYPE_CODE.0) && has(scheme::DOC_FORMAT, xades::FORMAT_CODE.0)
}

impl Stored {
    /// The document's visibility restrictions (its confidentialityCodes).
    pub(super) fn restrictions(&self) -> Vec<Restriction> {
        self.object
            .object
            .classifications_by_scheme(scheme::DOC_CONFIDENTIALITY)
            .filter_map(|c| {
                Restriction::from_code(
                    c.node_representation.as_deref().unwrap_or_default(),
                    c.slot_value("codingScheme").unwrap_or_default(),
                )
            })
            .collect()
    }

    fn visible_to(&self, professional: &str) -> bool {
        !self.restrictions().contains(&Restriction::MaskedToProfessionals)
            || author_ids(&self.object.object, scheme::DOC_AUTHOR)
                .iter()
                .any(|a| a == professional)
    }
}

impl Registry {
    /// The entries of the call's patient the call's professional may see.
    pub(super) fn visible<'a>(&'a self, call: &'a Call<'_>) -> impl Iterator<Item = &'a Stored> + 'a {
        self.entries
            .iter()
            .filter(move |s| s.patient == *call.vihf_patient && s.visible_to(&call.vihf.name_id))
    }
}
