//! The authorizations of professionals on patients' DMPs, as the DMP keeps them: TD0.3
//! `setAuthorization` changes them, TD0.2 reports them, TD1.6 lists them, and every XDS
//! transaction checks them. A professional without an entry has the patient's configured
//! authorization (`SimPatient::authorization`).

use std::collections::HashMap;

use dmp_protocol::habilitations::{self, AuthorizationAction, ListMode, NS, ProfessionalAuthorization};
use dmp_protocol::patients::{self, DateType, ListedPatient};
use dmp_protocol::transactions::action;
use dmp_protocol::vihf;
use dmp_protocol::xds::{Dtm, Ins};
use ehealth_proto::dmp::v1::Authorization;

use crate::{Answer, Call, Fault, SimPatient, sender};

/// What the DMP records of one professional on one DMP.
#[derive(Debug, Clone)]
struct Grant {
    authorization: Authorization,
    treating_doctor: bool,
    family: String,
    given: String,
    specialty: String,
    start: String,
    last_action: String,
}

/// Authorizations per patient and professional id.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    by_patient: HashMap<Ins, HashMap<String, Grant>>,
}

impl Grants {
    /// The authorization of `professional` on `patient`'s DMP, and whether they are its
    /// treating doctor.
    pub(crate) fn of(&self, patient: &SimPatient, professional: &str) -> (Authorization, bool) {
        match self
            .by_patient
            .get(&patient.ins)
            .and_then(|g| g.get(professional))
        {
            Some(g) => (g.authorization, g.treating_doctor),
            None => (patient.authorization, false),
        }
    }

    /// TD0.3. A professional the patient blocked cannot authorize themselves.
    pub(crate) fn set(&mut self, patient: &SimPatient, call: &Call<'_>) -> Result<Answer, Fault> {
        let req = crate::registry::payload(call, NS, "setAuthorization")?;
        let text = |name: &str| req.child(NS, name).map(|e| e.text_trimmed().to_string());
        let code = text("action").unwrap_or_default();
        let action = AuthorizationAction::from_code(&code).ok_or_else(|| {
            sender(
                "DMPInvalidRequest",
                format!("setAuthorization action `{code}`: AJOUT or SUPPRESSION"),
            )
        })?;
        let role = text("role");
        if let Some(r) = &role
            && r != habilitations::ROLE_TREATING_DOCTOR
        {
            return Err(sender(
                "DMPInvalidRequest",
                format!("setAuthorization role `{r}`: only MEDECIN_TRAITANT"),
            ));
        }
        let card = call.card;
        let (current, treating) = self.of(patient, &card.id);
        if current == Authorization::Interdit {
            return Err(sender(
                "DMPAccessDenied",
                format!(
                    "the patient blocked the professional {} on this DMP; only the patient can lift it",
                    card.id
                ),
            ));
        }
        let now = Dtm::from_offset_datetime(time::OffsetDateTime::now_utc())
            .as_str()
            .to_string();
        let entry = self
            .by_patient
            .entry(patient.ins.clone())
            .or_default()
            .entry(card.id.clone())
            .or_insert_with(|| Grant {
                authorization: current,
                treating_doctor: false,
                family: card.family.clone(),
                given: card.given.clone(),
                specialty: specialty(call),
                start: now.clone(),
                last_action: now.clone(),
            });
        let context = match action {
            AuthorizationAction::Ajout
                if current == Authorization::Valide && (role.is_none() || treating) =>
            {
                "Autorisation déjà présente aucune action effectuée"
            }
            AuthorizationAction::Ajout => {
                if current != Authorization::Valide {
                    entry.start = now.clone();
                }
                entry.authorization = Authorization::Valide;
                entry.treating_doctor |= role.is_some();
                entry.last_action = now;
                "Autorisation ajoutée"
            }
            AuthorizationAction::Suppression if role.is_some() => {
                entry.treating_doctor = false;
                entry.last_action = now;
                "Statut de médecin traitant supprimé"
            }
            AuthorizationAction::Suppression => {
                entry.authorization = Authorization::NonExiste;
                entry.treating_doctor = false;
                entry.last_action = now;
                "Autorisation supprimée"
            }
        };
        Ok(Answer {
            action: action::TD03_RESPONSE,
            body: habilitations::answer::set_authorization(habilitations::DMP_OK, context),
            attachments: Vec::new(),
        })
    }

    /// TD1.6: the professionals with an entry on the DMP, authorized or blocked.
    pub(crate) fn list(&self, patient: &SimPatient, call: &Call<'_>) -> Result<Answer, Fault> {
        let req = crate::registry::payload(call, NS, "listAuthorizationByPatient")?;
        let code = req
            .child(NS, "mode")
            .map(|m| m.text_trimmed().to_string())
            .unwrap_or_else(|| "TOUTE".into());
        let mode = ListMode::from_code(&code).ok_or_else(|| {
            sender(
                "DMPInvalidRequest",
                format!("listAuthorizationByPatient mode `{code}`"),
            )
        })?;
        let mut professionals: Vec<ProfessionalAuthorization> = self
            .by_patient
            .get(&patient.ins)
            .into_iter()
            .flatten()
            .filter_map(|(id, g)| {
                let state = match g.authorization {
                    Authorization::Valide => ListMode::Active,
                    Authorization::Interdit => ListMode::Interdite,
                    _ => return None,
                };
                (mode == ListMode::Toute || mode == state).then(|| ProfessionalAuthorization {
                    national_id: id.clone(),
                    national_id_type: "1.2.250.1.71.4.2.1".into(),
                    first_name: g.given.clone(),
                    last_name: g.family.clone(),
                    specialty_codes: vec![g.specialty.clone()]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect(),
                    specialty_labels: Vec::new(),
                    start: g.start.clone(),
                    last_action: g.last_action.clone(),
                    mode: state,
                    treating_doctor: g.treating_doctor,
                })
            })
            .collect();
        professionals.sort_by(|a, b| a.national_id.cmp(&b.national_id));
        Ok(Answer {
            action: action::TD16_RESPONSE,
            body: habilitations::answer::authorization_list(&professionals),
            attachments: Vec::new(),
        })
    }
}

/// `G15_<profession>/<specialty>` from the VIHF roles, as TD1.6 answers name specialties.
fn specialty(call: &Call<'_>) -> String {
    let roles = call
        .vihf
        .attributes
        .get(vihf::attr::ROLE)
        .cloned()
        .unwrap_or_default();
    match roles.as_slice() {
        [profession, specialty, ..] => format!("G15_{profession}/{specialty}"),
        [profession] => format!("G15_{profession}"),
        [] => String::new(),
    }
}

impl Grants {
    /// TD0.4: the DMPs the professional is authorized on, changed since `startDate`
    /// (`last_add` gives the latest document date of a patient's DMP).
    pub(crate) fn patient_list(
        &self,
        patients: &[SimPatient],
        last_add: &dyn Fn(&Ins) -> Option<String>,
        call: &Call<'_>,
    ) -> Result<Answer, Fault> {
        let req = crate::registry::payload(call, patients::NS, "patientList")?;
        let text = |name: &str| {
            req.child(patients::NS, name)
                .map(|e| e.text_trimmed().to_string())
                .unwrap_or_default()
        };
        let start = Dtm::parse("startDate", &text("startDate"))
            .map_err(|e| sender("DMPInvalidRequest", format!("patientList: {}", e.reason)))?;
        let code = text("dateType");
        let date_type = DateType::from_code(&code)
            .ok_or_else(|| sender("DMPInvalidRequest", format!("patientList dateType `{code}`")))?;
        let full = |d: &str| format!("{d:0<14}");
        let since = full(start.as_str());
        let mut listed = Vec::new();
        for p in patients {
            let (authorization, treating_doctor) = self.of(p, &call.card.id);
            if authorization != Authorization::Valide {
                continue;
            }
            let grant = self.by_patient.get(&p.ins).and_then(|g| g.get(&call.card.id));
            let added = last_add(&p.ins).unwrap_or_default();
            let changed = match date_type {
                DateType::LastDocument => added.as_str(),
                DateType::LastAuthorization => grant.map(|g| g.start.as_str()).unwrap_or_default(),
            };
            if changed.is_empty() || full(changed) < since {
                continue;
            }
            listed.push(ListedPatient {
                ids: vec![(p.ins.value().to_string(), p.ins.authority().oid().to_string())],
                last_name: p.family.clone(),
                first_name: p.given.clone(),
                birth_date: p.birth_date.clone(),
                treating_doctor,
                message: false,
                last_access: grant.map(|g| g.last_action.clone()).unwrap_or_default(),
                last_update: added.clone(),
                last_add: added,
            });
        }
        Ok(Answer {
            action: action::TD04_RESPONSE,
            body: patients::answer(&listed),
            attachments: Vec::new(),
        })
    }
}
