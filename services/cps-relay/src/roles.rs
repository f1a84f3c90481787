//! Who may call what (issue 13): callers are named by their caller identity
//! (`service_kit::tls::caller_identity` of their client certificate) and hold roles from
//! `[access]`: the card holder's own UI (`holders`) opens and closes the card session and
//! grants it; gateways (`gateways`) use the card, each only for the professionals listed for
//! it. Nobody else gets anything, and the gateway can never enter the PIN.

use std::collections::{HashMap, HashSet};

use crate::access::Caller;
use crate::config::AccessSettings;
use crate::error::RelayError;

/// The RPCs of `cps.v1.CpsRelay`, by the role they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    GetAuthenticationCertificate,
    SignForAuthentication,
    GetSignatureCertificate,
    SignXadesSignedInfo,
    WatchSession,
    GetStatus,
    Login,
    Logout,
    IssueSessionGrant,
    RevokeSessionGrants,
}

impl Rpc {
    fn name(self) -> &'static str {
        match self {
            Rpc::GetAuthenticationCertificate => "GetAuthenticationCertificate",
            Rpc::SignForAuthentication => "SignForAuthentication",
            Rpc::GetSignatureCertificate => "GetSignatureCertificate",
            Rpc::SignXadesSignedInfo => "SignXadesSignedInfo",
            Rpc::WatchSession => "WatchSession",
            Rpc::GetStatus => "GetStatus",
            Rpc::Login => "Login",
            Rpc::Logout => "Logout",
            Rpc::IssueSessionGrant => "IssueSessionGrant",
            Rpc::RevokeSessionGrants => "RevokeSessionGrants",
        }
    }

    fn for_holder(self) -> bool {
        matches!(
            self,
            Rpc::Login | Rpc::Logout | Rpc::IssueSessionGrant | Rpc::RevokeSessionGrants | Rpc::GetStatus
        )
    }

    fn for_gateway(self) -> bool {
        matches!(
            self,
            Rpc::GetAuthenticationCertificate
                | Rpc::SignForAuthentication
                | Rpc::GetSignatureCertificate
                | Rpc::SignXadesSignedInfo
                | Rpc::WatchSession
                | Rpc::GetStatus
        )
    }
}

/// The role a call was admitted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Holder,
    Gateway,
}

enum Professionals {
    Any,
    Only(HashSet<String>),
}

pub(crate) struct Roles {
    holders: HashSet<String>,
    gateways: HashMap<String, Professionals>,
    grant_callers: HashSet<String>,
}

impl Roles {
    /// The roles of `access` (already [`AccessSettings::effective`]).
    pub(crate) fn new(access: &AccessSettings) -> Self {
        let mut gateways: HashMap<String, Professionals> = HashMap::new();
        for g in &access.gateways {
            let entry = gateways
                .entry(g.identity.clone())
                .or_insert_with(|| Professionals::Only(HashSet::new()));
            for p in &g.professionals {
                match entry {
                    Professionals::Any => {}
                    _ if p == "*" => *entry = Professionals::Any,
                    Professionals::Only(set) => {
                        set.insert(p.clone());
                    }
                }
            }
        }
        Roles {
            holders: access.holders.iter().cloned().collect(),
            gateways,
            grant_callers: access.grant_callers.iter().cloned().collect(),
        }
    }

    /// Admits `caller` to `rpc`, or says which configuration list it is missing from.
    pub(crate) fn authorise(&self, caller: &Caller, rpc: Rpc) -> Result<Role, RelayError> {
        let holder = self.holders.contains(&caller.identity);
        let gateway = self.gateways.contains_key(&caller.identity);
        if rpc.for_holder() && holder {
            return Ok(Role::Holder);
        }
        if rpc.for_gateway() && gateway {
            return Ok(Role::Gateway);
        }
        Err(RelayError::CallerNotAllowed(if !holder && !gateway {
            format!(
                "caller {} is in neither access.holders nor access.gateways",
                caller.identity
            )
        } else if rpc.for_holder() {
            format!(
                "{} is reserved to the card holder's UI (access.holders); {} is a gateway",
                rpc.name(),
                caller.identity
            )
        } else {
            format!(
                "{} is reserved to gateways (access.gateways); {} is the card holder's UI",
                rpc.name(),
                caller.identity
            )
        }))
    }

    /// A gateway may act only for the professionals listed for it.
    pub(crate) fn check_professional(
        &self,
        caller: &Caller,
        role: Role,
        professional_id: &str,
    ) -> Result<(), RelayError> {
        if role == Role::Holder {
            return Ok(());
        }
        match self.gateways.get(&caller.identity) {
            Some(Professionals::Any) => Ok(()),
            Some(Professionals::Only(set)) if set.contains(professional_id) => Ok(()),
            _ => Err(RelayError::CallerNotAllowed(format!(
                "gateway {} may not act for professional {professional_id} (access.gateways)",
                caller.identity
            ))),
        }
    }

    /// Grants go only to configured integrator backends.
    pub(crate) fn check_grantee(&self, grantee: &str) -> Result<(), RelayError> {
        if self.grant_callers.contains(grantee) {
            Ok(())
        } else {
            Err(RelayError::UnknownGrantee(grantee.chars().take(200).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayAccess;

    fn caller(identity: &str) -> Caller {
        Caller {
            fingerprint: "00".into(),
            subject: format!("CN={identity}"),
            identity: identity.into(),
        }
    }

    fn roles() -> Roles {
        Roles::new(&AccessSettings {
            holders: vec!["holder-ui".into()],
            gateways: vec![
                GatewayAccess {
                    identity: "gw-a".into(),
                    professionals: vec!["810100000001".into()],
                },
                GatewayAccess {
                    identity: "gw-any".into(),
                    professionals: vec!["*".into()],
                },
            ],
            grant_callers: vec!["integrator".into()],
            ..AccessSettings::default()
        })
    }

    #[test]
    fn each_role_gets_its_rpcs_only() {
        let r = roles();
        assert_eq!(
            r.authorise(&caller("holder-ui"), Rpc::Login).ok(),
            Some(Role::Holder)
        );
        assert_eq!(
            r.authorise(&caller("holder-ui"), Rpc::GetStatus).ok(),
            Some(Role::Holder)
        );
        assert_eq!(
            r.authorise(&caller("gw-a"), Rpc::SignForAuthentication).ok(),
            Some(Role::Gateway)
        );
        let err = r
            .authorise(&caller("gw-a"), Rpc::Login)
            .expect_err("gateway login");
        assert!(
            err.to_string()
                .contains("Login is reserved to the card holder's UI (access.holders)")
        );
        let err = r
            .authorise(&caller("holder-ui"), Rpc::SignForAuthentication)
            .expect_err("holder signs");
        assert!(err.to_string().contains("reserved to gateways"));
        let err = r
            .authorise(&caller("stranger"), Rpc::GetStatus)
            .expect_err("stranger");
        assert!(err.to_string().contains("neither"));
    }

    #[test]
    fn gateways_act_for_their_professionals() {
        let r = roles();
        let ok = |c: &str, p: &str| r.check_professional(&caller(c), Role::Gateway, p).is_ok();
        assert!(ok("gw-a", "810100000001"));
        assert!(!ok("gw-a", "810100000002"));
        assert!(ok("gw-any", "810100000002"));
        assert!(r.check_grantee("integrator").is_ok());
        assert!(r.check_grantee("gw-a").is_err());
    }
}
