//! The ITI-18 stored queries besides FindDocuments: GetDocuments (entries by entryUUID or by
//! uniqueId) and GetAssociations (the replacements, `RPLC`, of given entries). Both answer
//! only what the caller's patient holds.

use dmp_protocol::ebrim::{self, Association, RegistryErrorEntry, RegistryObject};
use dmp_protocol::xds::{Ins, association, scheme};

use super::{Registry, codes, err};
use crate::{Call, SlotMap, query_values};

impl Registry {
    /// The latest creationTime of the documents of `patient`'s DMP (TD0.4's lastAddDate).
    pub(crate) fn last_added(&self, patient: &Ins) -> Option<String> {
        self.entries
            .iter()
            .filter(|s| &s.patient == patient)
            .filter_map(|s| {
                s.object
                    .object
                    .slot_value("creationTime")
                    .map(|t| format!("{t:0<14}"))
            })
            .max()
    }

    /// GetDocuments: `$XDSDocumentEntryEntryUUID` or `$XDSDocumentEntryUniqueId`, not both.
    pub(super) fn get_documents(
        &self,
        slots: &SlotMap,
        call: &Call<'_>,
    ) -> (Vec<RegistryErrorEntry>, String) {
        let values = |n: &str| slots.get(n).map(|v| query_values(v)).unwrap_or_default();
        let (uuids, uids) = (
            values("$XDSDocumentEntryEntryUUID"),
            values("$XDSDocumentEntryUniqueId"),
        );
        if uuids.is_empty() == uids.is_empty() {
            return (
                vec![err(
                    codes::PARAM_NUMBER,
                    "GetDocuments: $XDSDocumentEntryEntryUUID or $XDSDocumentEntryUniqueId, exactly one of them",
                    "",
                )],
                String::new(),
            );
        }
        let mut objects = String::from("<rim:RegistryObjectList>");
        for s in self.visible(call) {
            if uuids.contains(&s.object.object.id) || uids.contains(&s.unique_id) {
                ebrim::write_extrinsic_object(&mut objects, &s.object);
            }
        }
        objects.push_str("</rim:RegistryObjectList>");
        (Vec::new(), objects)
    }

    /// GetAssociations: the `RPLC` associations whose source or target is one of `$uuid`.
    pub(super) fn get_associations(
        &self,
        slots: &SlotMap,
        call: &Call<'_>,
    ) -> (Vec<RegistryErrorEntry>, String) {
        let uuids = slots.get("$uuid").map(|v| query_values(v)).unwrap_or_default();
        if uuids.is_empty() {
            return (
                vec![err(codes::PARAM_NUMBER, "GetAssociations: $uuid is required", "")],
                String::new(),
            );
        }
        let mut objects = String::from("<rim:RegistryObjectList>");
        for s in self.visible(call) {
            let Some(target) = &s.replaces else { continue };
            let source = &s.object.object.id;
            if uuids.contains(source) || uuids.contains(target) {
                ebrim::write_association(
                    &mut objects,
                    &Association {
                        id: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                        association_type: association::RPLC.into(),
                        source: source.clone(),
                        target: target.clone(),
                        status: None,
                        slots: Vec::new(),
                    },
                );
            }
        }
        objects.push_str("</rim:RegistryObjectList>");
        (Vec::new(), objects)
    }
}

/// `$XDSDocumentEntryAuthorPerson`: one of the patterns (SQL LIKE, `%` any run, `_` any
/// character) matches one of the entry's authorPerson values; no pattern, no filter.
pub(super) fn author_matches(o: &RegistryObject, patterns: &[String]) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let people: Vec<&str> = o
        .classifications_by_scheme(scheme::DOC_AUTHOR)
        .filter_map(|c| c.slot_value("authorPerson"))
        .collect();
    patterns
        .iter()
        .any(|p| people.iter().any(|v| like(p.as_bytes(), v.as_bytes())))
}

/// SQL LIKE without backtracking: `matched[j]` says whether the pattern read so far matches
/// the first `j` bytes of the value.
fn like(p: &[u8], v: &[u8]) -> bool {
    let mut matched = vec![false; v.len() + 1];
    matched[0] = true;
    for &c in p {
        let mut next = vec![false; v.len() + 1];
        for j in 0..=v.len() {
            next[j] = match c {
                b'%' => matched[j] || (j > 0 && next[j - 1]),
                b'_' => j > 0 && matched[j - 1],
                _ => j > 0 && matched[j - 1] && v[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[v.len()]
}
