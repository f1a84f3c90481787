//! Replacement (ITI-42 `RPLC`): a submitted entry replaces an Approved entry of the same
//! patient, which becomes Deprecated once the submission is stored. The DMP lets only the
//! replaced document's author (the VIHF's professional) replace it, and a Deprecated document
//! cannot be replaced a second time.

use std::collections::{HashMap, HashSet};

use dmp_protocol::ebrim::{Association, RegistryErrorEntry};
use dmp_protocol::xds::{association, scheme, status};

use super::{Registry, author_ids, codes, err};
use crate::Call;

impl Registry {
    /// The registry error an `RPLC` association of a submission deserves, if any.
    pub(super) fn check_replacement(
        &self,
        a: &Association,
        submitted: &HashSet<&str>,
        replaced: &mut HashSet<String>,
        call: &Call<'_>,
    ) -> Option<RegistryErrorEntry> {
        if !submitted.contains(a.source.as_str()) {
            return Some(err(
                codes::METADATA,
                format!("{}: RPLC must start from an entry of the submission", a.id),
                &a.id,
            ));
        }
        let Some(target) = self.entries.iter().find(|s| s.object.object.id == a.target) else {
            return Some(err(
                codes::UNRESOLVED_REFERENCE,
                format!(
                    "{}: the replaced document {} is not in the registry",
                    a.id, a.target
                ),
                &a.id,
            ));
        };
        if target.patient != *call.vihf_patient {
            return Some(err(
                codes::PATIENT_MISMATCH,
                format!(
                    "{}: the replaced document {} is another patient's",
                    a.id, a.target
                ),
                &a.id,
            ));
        }
        match target.status() {
            status::APPROVED => {}
            status::DEPRECATED => {
                return Some(err(
                    codes::DEPRECATED_DOCUMENT,
                    format!(
                        "{}: the document {} is already replaced (Deprecated)",
                        a.id, a.target
                    ),
                    &a.id,
                ));
            }
            other => {
                return Some(err(
                    codes::REGISTRY_ERROR,
                    format!(
                        "{}: the document {} is {other}; only an Approved document can be replaced",
                        a.id, a.target
                    ),
                    &a.id,
                ));
            }
        }
        if !author_ids(&target.object.object, scheme::DOC_AUTHOR).contains(&call.vihf.name_id) {
            return Some(err(
                codes::REGISTRY_ERROR,
                format!(
                    "{}: the professional {} is not an author of {}; only its author can replace it",
                    a.id, call.vihf.name_id, a.target
                ),
                &a.id,
            ));
        }
        if !replaced.insert(a.target.clone()) {
            return Some(err(
                codes::METADATA,
                format!("{}: {} is replaced twice in the submission", a.id, a.target),
                &a.id,
            ));
        }
        None
    }

    /// Once the submission is stored: each replaced entry becomes Deprecated, and its
    /// replacement remembers it. `new_ids` maps the submission's entry ids to the stored ones.
    pub(super) fn apply_replacements(
        &mut self,
        associations: &[Association],
        new_ids: &HashMap<String, String>,
    ) {
        for a in associations
            .iter()
            .filter(|a| a.association_type == association::RPLC)
        {
            let Some(new) = new_ids.get(&a.source) else {
                continue;
            };
            for s in &mut self.entries {
                if s.object.object.id == a.target {
                    s.object.object.status = Some(status::DEPRECATED.into());
                } else if &s.object.object.id == new {
                    s.replaces = Some(a.target.clone());
                }
            }
        }
    }
}
