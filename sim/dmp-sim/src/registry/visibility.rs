//! What a professional may see of a patient's DMP: the patient's entries, except those masked
//! to professionals (`MASQUE_PS`), which only their authors see — in FindDocuments,
//! GetDocuments, GetAssociations and RetrieveDocument alike (a masked document is answered as
//! an unknown one).

use dmp_protocol::xds::scheme;
use dmp_protocol::xds::visibility::Restriction;

use super::{Registry, Stored, author_ids};
use crate::Call;

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
