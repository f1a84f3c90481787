//! The fixed names of the DMP transactions (DMP LPS interface specification; the official
//! examples show each): WS-Addressing actions, the three web services and their default paths,
//! and the stored query ids.
//!
//! | transaction | profile | web service |
//! |---|---|---|
//! | TD2.1 submit | ITI-41 ProvideAndRegisterDocumentSet-b, MTOM | repository |
//! | TD3.1 search | ITI-18 RegistryStoredQuery FindDocuments | registry |
//! | TD3.2 retrieve | ITI-43 RetrieveDocumentSet, MTOM | repository |
//! | TD0.2 test of existence | HL7v3 PRPA_IN201307UV02 → PRPA_IN201308UV02 | patients |
//! | TD3.3c/d delete, archive | ITI-57 UpdateDocumentSet | registry |
//! | TD0.3 authorization | `setAuthorization` | habilitations |
//! | TD1.6 professionals on a DMP | `listAuthorizationByPatient` | habilitations |
//! | TD0.4 the professional's DMPs | `patientList` | patients |

/// WS-Addressing actions of the requests and of their answers.
pub mod action {
    /// TD2.1 request.
    pub const ITI41: &str = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b";
    /// TD2.1 answer.
    pub const ITI41_RESPONSE: &str = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse";
    /// TD3.1 request.
    pub const ITI18: &str = "urn:ihe:iti:2007:RegistryStoredQuery";
    /// TD3.1 answer.
    pub const ITI18_RESPONSE: &str = "urn:ihe:iti:2007:RegistryStoredQueryResponse";
    /// TD3.2 request.
    pub const ITI43: &str = "urn:ihe:iti:2007:RetrieveDocumentSet";
    /// TD3.2 answer.
    pub const ITI43_RESPONSE: &str = "urn:ihe:iti:2007:RetrieveDocumentSetResponse";
    /// TD3.3c/d request.
    pub const ITI57: &str = "urn:ihe:iti:2010:UpdateDocumentSet";
    /// TD3.3c/d answer.
    pub const ITI57_RESPONSE: &str = "urn:ihe:iti:2010:UpdateDocumentSet-Response";
    /// TD0.2 request.
    pub const TD02: &str = "urn:hl7-org:v3:PRPA_IN201307UV02";
    /// TD0.2 answer.
    pub const TD02_RESPONSE: &str = "urn:hl7-org:v3:PRPA_IN201308UV02";
    /// TD0.3 request.
    pub const TD03: &str = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization";
    /// TD0.3 answer.
    pub const TD03_RESPONSE: &str = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorizationResponse";
    /// TD0.4 request.
    pub const TD04: &str = "urn:si-dmp-patients:PatientSpecificEndPoint:patientList";
    /// TD0.4 answer.
    pub const TD04_RESPONSE: &str = "urn:si-dmp-patients:PatientSpecificEndPoint:patientListResponse";
    /// TD1.6 request.
    pub const TD16: &str = "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatient";
    /// TD1.6 answer.
    pub const TD16_RESPONSE: &str =
        "urn:si-dmp-habilitations:HabilitationsEndPoint:listAuthorizationByPatientResponse";
}

/// Default paths of the DMP web services under the DMP's base URL (the simulator serves them).
pub mod default_paths {
    /// ITI-41 and ITI-43.
    pub const REPOSITORY: &str = "/si-dmp-server/v2/services/repository";
    /// ITI-18 and ITI-57.
    pub const REGISTRY: &str = "/si-dmp-server/v2/services/registry";
    /// TD0.2, TD0.4.
    pub const PATIENTS: &str = "/si-dmp-server/v2/services/patients";
    /// TD0.3, TD1.6.
    pub const HABILITATIONS: &str = "/si-dmp-server/v2/services/habilitations";
}

/// The FindDocuments stored query id (ITI-18).
pub const FIND_DOCUMENTS: &str = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d";

/// The GetDocuments stored query id (ITI-18): entries by entryUUID or by uniqueId.
pub const GET_DOCUMENTS: &str = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4";

/// The GetAssociations stored query id (ITI-18): the associations of entries (RPLC…).
pub const GET_ASSOCIATIONS: &str = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155";

/// The DMP web service a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebService {
    /// The XDS.b repository: ITI-41, ITI-43.
    Repository,
    /// The XDS.b registry: ITI-18, ITI-57.
    Registry,
    /// The patient service: TD0.2.
    Patients,
    /// The authorization service: TD0.3, TD1.6.
    Habilitations,
}
