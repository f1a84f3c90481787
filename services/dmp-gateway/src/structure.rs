//! Which structure a call acts for (issue 16): the VIHF's `Identifiant_Structure` and
//! `Secteur_Activite` come from the configuration of the caller's authenticated identity
//! (`callers.<identity>`), never from what a request claims. A request may repeat them; one
//! that says otherwise is refused (`INVALID_ARGUMENT` naming the field). A caller without a
//! configured structure is refused outside development (`PERMISSION_DENIED`); in development the
//! request's values are used, as before.

use std::collections::BTreeMap;

use dmp_protocol::xds::FieldError;
use ehealth_proto::dmp::v1 as pb;

use crate::config::CallerStructure;
use crate::error::DmpError;

/// The configured structures, by caller identity.
#[derive(Debug, Clone, Default)]
pub struct CallerStructures {
    by_caller: BTreeMap<String, CallerStructure>,
    required: bool,
}

impl CallerStructures {
    /// `callers` of the configuration; `required` outside development.
    pub fn new(by_caller: BTreeMap<String, CallerStructure>, required: bool) -> Self {
        CallerStructures { by_caller, required }
    }

    /// Writes `caller`'s structure into `auth`, refusing a request that contradicts it.
    pub(crate) fn apply(
        &self,
        caller: &str,
        auth: Option<&mut pb::AuthenticationContext>,
    ) -> Result<(), DmpError> {
        let Some(auth) = auth else {
            // The transaction's own validation names the missing auth_context.
            return Ok(());
        };
        let Some(configured) = self.by_caller.get(caller) else {
            return if self.required {
                Err(DmpError::CallerNotConfigured {
                    caller: caller.to_owned(),
                })
            } else {
                Ok(())
            };
        };
        for (field, asked, own, key) in [
            (
                "auth_context.structure_id",
                &mut auth.structure_id,
                &configured.structure_id,
                "structure_id",
            ),
            (
                "auth_context.activity_sector",
                &mut auth.activity_sector,
                &configured.activity_sector,
                "activity_sector",
            ),
        ] {
            if !asked.is_empty() && asked != own {
                return Err(FieldError::new(
                    field,
                    format!(
                        "`{asked}` contradicts the structure configured for caller {caller} \
                         (callers.\"{caller}\".{key} = `{own}`)"
                    ),
                )
                .into());
            }
            own.clone_into(asked);
        }
        Ok(())
    }
}
