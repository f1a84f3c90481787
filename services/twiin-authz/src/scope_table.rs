//! The AORTA interaction table (SPEC.md §3.2 step 8): translates SMART-on-FHIR scopes into the
//! AORTA interactions of a GetTokenRequest scope.
//!
//! Accepted scope forms, per space-separated item:
//! - SMART v2 `context/Resource.perms` with perms a subset of `cruds` in that order
//!   (`system/Task.c`, `system/Task.cu`): every letter must have a row;
//! - SMART v1 `context/Resource.read|write|*` (`user/Task.write`): read = `rs`, write = `cud`,
//!   `*` = `cruds`; **Decision** — letters of a v1 form without a row are left out, but the item
//!   must translate to at least one interaction.
//!
//! `context` is `patient`, `user` or `system`. Anything else (e.g. `openid`) cannot be
//! translated: the seed requires that the whole scope is supported.

pub(crate) use crate::config::InteractionRow;

pub(crate) fn default_rows() -> Vec<InteractionRow> {
    let row = |resource: &str, permission, interaction: &str, pull, notification| InteractionRow {
        resource: resource.into(),
        permission,
        interaction: interaction.into(),
        pull,
        notification,
    };
    vec![
        row("Task", 'c', "create:Task:1.0:notification", false, true),
        row("Task", 'u', "update:Task:1.0:notification", false, true),
        row("Task", 'r', "read:Task:1.0:workflow", true, false),
        row("Task", 's', "search:Task:1.0:workflow", true, false),
        row("Patient", 'r', "read:Patient:1.0:request", true, false),
        row("Patient", 's', "search:Patient:1.0:request", true, false),
        row(
            "DocumentReference",
            's',
            "search:DocumentReference:1.0:request",
            true,
            false,
        ),
        row("Binary", 'r', "read:Binary:1.0:request", true, false),
    ]
}

#[derive(Debug, Clone)]
pub(crate) struct ScopeTable {
    rows: Vec<InteractionRow>,
}

/// Why a scope does not translate (the item, for the description).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Untranslatable(pub(crate) String);

impl ScopeTable {
    pub(crate) fn new(rows: Vec<InteractionRow>) -> Result<Self, String> {
        for r in &rows {
            if !"cruds".contains(r.permission) {
                return Err(format!(
                    "{}.{}: permission must be one of c r u d s",
                    r.resource, r.permission
                ));
            }
            if r.pull && r.notification {
                return Err(format!("{}: a notification is a push interaction", r.interaction));
            }
            if r.interaction.split(':').count() != 4 {
                return Err(format!(
                    "{}: an interaction is operation:Resource:version:kind",
                    r.interaction
                ));
            }
        }
        Ok(ScopeTable { rows })
    }

    fn row(&self, resource: &str, permission: char) -> Option<&InteractionRow> {
        self.rows
            .iter()
            .find(|r| r.resource == resource && r.permission == permission)
    }

    /// The interactions of a SMART scope, without duplicates, in table order of appearance.
    pub(crate) fn translate(&self, scope: &str) -> Result<Vec<&InteractionRow>, Untranslatable> {
        let mut out: Vec<&InteractionRow> = Vec::new();
        let mut any = false;
        for item in scope.split_ascii_whitespace() {
            any = true;
            let bad = || Untranslatable(item.to_owned());
            let (context, rest) = item.split_once('/').ok_or_else(bad)?;
            if !matches!(context, "patient" | "user" | "system") {
                return Err(bad());
            }
            let (resource, perms) = rest.split_once('.').ok_or_else(bad)?;
            if resource.is_empty() || !resource.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            let rows: Vec<&InteractionRow> = match perms {
                "read" | "write" | "*" => {
                    let letters = match perms {
                        "read" => "rs",
                        "write" => "cud",
                        _ => "cruds",
                    };
                    letters.chars().filter_map(|p| self.row(resource, p)).collect()
                }
                v2 => {
                    // Letters in `cruds` order, no repeats.
                    let mut last = None;
                    let mut rows = Vec::new();
                    for p in v2.chars() {
                        let pos = "cruds".find(p).ok_or_else(bad)?;
                        if last.is_some_and(|l| pos <= l) {
                            return Err(bad());
                        }
                        last = Some(pos);
                        rows.push(self.row(resource, p).ok_or_else(bad)?);
                    }
                    rows
                }
            };
            if rows.is_empty() {
                return Err(bad());
            }
            for r in rows {
                if !out.iter().any(|o| o.interaction == r.interaction) {
                    out.push(r);
                }
            }
        }
        if !any {
            return Err(Untranslatable(String::new()));
        }
        Ok(out)
    }

    /// Every interaction id in the table (RFC 8414 `scopes_supported` is built from the rows).
    pub(crate) fn rows(&self) -> &[InteractionRow] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ScopeTable {
        ScopeTable::new(default_rows()).expect("default table is valid")
    }

    fn ids(scope: &str) -> Vec<String> {
        table()
            .translate(scope)
            .expect("translates")
            .iter()
            .map(|r| r.interaction.clone())
            .collect()
    }

    #[test]
    fn v2_and_v1_forms() {
        assert_eq!(ids("system/Task.c"), ["create:Task:1.0:notification"]);
        assert_eq!(
            ids("system/Task.cu"),
            ["create:Task:1.0:notification", "update:Task:1.0:notification"]
        );
        assert_eq!(
            ids("user/Task.write"),
            ["create:Task:1.0:notification", "update:Task:1.0:notification"]
        );
        assert_eq!(ids("system/Task.c user/Task.write"), ids("user/Task.write"));
        assert_eq!(
            ids("patient/Patient.read"),
            ["read:Patient:1.0:request", "search:Patient:1.0:request"]
        );
    }

    #[test]
    fn untranslatable_scopes() {
        for s in [
            "",
            "openid",
            "system/Task.x",
            "system/Task.uc",
            "system/Task.cc",
            "system/Observation.c",
            "admin/Task.c",
            "system/.c",
            "system/Task",
            "user/Observation.write",
            "system/Task.d",
        ] {
            assert!(table().translate(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn bad_rows_are_refused() {
        let mut rows = default_rows();
        rows[0].permission = 'x';
        assert!(ScopeTable::new(rows).is_err());
    }
}
