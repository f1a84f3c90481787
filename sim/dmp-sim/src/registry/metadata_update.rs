//! ITI-57 metadata updates of a DocumentEntry, as the DMP uses them for TD3.3a/b: the entry is
//! submitted again with `lid` = the entryUUID of the Approved document it updates and a
//! HasMember association carrying `PreviousVersion`; of its metadata, the simulator applies
//! the visibility codes (confidentialityCode), checked against the DMP's rules.
//!
//! **Decision:** the stored entry keeps its entryUUID (the simulator keeps no version chain),
//! so what callers found stays addressable.

use dmp_protocol::ebrim::{ObjectList, RegistryErrorEntry, RegistryObject};
use dmp_protocol::xds::visibility::{self, Restriction};
use dmp_protocol::xds::{association, scheme, status};

use super::{Registry, codes, err};
use crate::Call;

impl Registry {
    /// Applies every entry update of `list`, or none when one is refused.
    pub(super) fn update_metadata(
        &mut self,
        list: &ObjectList,
        ss: &RegistryObject,
        call: &Call<'_>,
    ) -> Vec<RegistryErrorEntry> {
        let mut errors = Vec::new();
        let mut changes = Vec::new();
        for e in &list.extrinsic_objects {
            let id = &e.object.id;
            let Some(lid) = e.object.lid.as_deref() else {
                errors.push(err(
                    codes::METADATA,
                    format!("{id}: a metadata update needs the lid of the entry it updates"),
                    id,
                ));
                continue;
            };
            let member = list.associations.iter().any(|a| {
                a.association_type == association::HAS_MEMBER
                    && a.source == ss.id
                    && a.target == *id
                    && a.slot_value("PreviousVersion").is_some()
            });
            if !member {
                errors.push(err(
                    codes::METADATA,
                    format!("{id}: no HasMember association with PreviousVersion from the submission set"),
                    id,
                ));
                continue;
            }
            let Some(target) = self.visible(call).find(|s| s.object.object.id == lid) else {
                errors.push(err(
                    codes::METADATA_UPDATE,
                    format!("{id}: no document entry {lid}"),
                    id,
                ));
                continue;
            };
            if target.status() != status::APPROVED {
                errors.push(err(
                    codes::METADATA_UPDATE,
                    format!(
                        "{id}: the document {lid} is {}; only an Approved entry is updated",
                        target.status()
                    ),
                    id,
                ));
                continue;
            }
            let new: Vec<Restriction> = visibility::of_codes(
                e.object
                    .classifications_by_scheme(scheme::DOC_CONFIDENTIALITY)
                    .map(|c| {
                        (
                            c.node_representation.as_deref().unwrap_or_default(),
                            c.slot_value("codingScheme").unwrap_or_default(),
                        )
                    }),
            );
            if let Err(rule) = visibility::check_change(&target.restrictions(), &new) {
                errors.push(err(codes::METADATA_UPDATE, format!("{id}: {rule}"), id));
                continue;
            }
            let confidentiality: Vec<_> = e
                .object
                .classifications
                .iter()
                .filter(|c| c.scheme.as_deref() == Some(scheme::DOC_CONFIDENTIALITY))
                .cloned()
                .collect();
            changes.push((lid.to_string(), confidentiality));
        }
        if errors.is_empty() {
            for (lid, confidentiality) in changes {
                if let Some(s) = self.entries.iter_mut().find(|s| s.object.object.id == lid) {
                    let o = &mut s.object.object;
                    o.classifications
                        .retain(|c| c.scheme.as_deref() != Some(scheme::DOC_CONFIDENTIALITY));
                    o.classifications.extend(confidentiality.into_iter().map(|mut c| {
                        c.classified_object = lid.clone();
                        c
                    }));
                }
            }
        }
        errors
    }
}
