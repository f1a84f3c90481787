//! The ebXML Registry Information Model 3.0 objects that XDS.b metadata is made of
//! (`rim.xsd` of the DMP schema annex): a generic, lenient reader and a writer whose output
//! validates against the schema. The typed XDS model ([`crate::xds`]) is built on top; the DMP
//! simulator validates these objects the way a registry does.

use std::fmt::Write as _;

use crate::xml::{Element, esc, esc_attr, ns};

/// ebRS `RegistryResponse` status: Success.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success";
/// XDS.b `RegistryResponse` status: PartialSuccess (IHE's URN).
pub const STATUS_PARTIAL_SUCCESS: &str = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess";
/// ebRS `RegistryResponse` status: Failure.
pub const STATUS_FAILURE: &str = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure";
/// `RegistryError` severity: Error.
pub const SEVERITY_ERROR: &str = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error";
/// `RegistryError` severity: Warning.
pub const SEVERITY_WARNING: &str = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning";

/// The status of a `RegistryResponse` (or of a response extending it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    /// Every request was carried out.
    Success,
    /// Some were (the errors say which were not).
    PartialSuccess,
    /// None was.
    Failure,
}

impl ResponseStatus {
    /// Reads a status URN; PartialSuccess is accepted under IHE's and ebRS's URN.
    pub fn from_urn(urn: &str) -> Option<ResponseStatus> {
        match urn {
            STATUS_SUCCESS => Some(ResponseStatus::Success),
            STATUS_PARTIAL_SUCCESS | "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:PartialSuccess" => {
                Some(ResponseStatus::PartialSuccess)
            }
            STATUS_FAILURE => Some(ResponseStatus::Failure),
            _ => None,
        }
    }
}

/// A named list of values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slot {
    /// The slot's name (`creationTime`, `$XDSDocumentEntryPatientId`, …).
    pub name: String,
    /// Its values, in order.
    pub values: Vec<String>,
}

/// A classification of a registry object: by a scheme (with a coded value) or by a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classification {
    /// The classification's own id.
    pub id: String,
    /// `classificationScheme` (an XDS scheme UUID).
    pub scheme: Option<String>,
    /// `classificationNode` (e.g. the submission-set node).
    pub node: Option<String>,
    /// The object classified.
    pub classified_object: String,
    /// The code.
    pub node_representation: Option<String>,
    /// Slots (`codingScheme`, `authorPerson`, …).
    pub slots: Vec<Slot>,
    /// The display name.
    pub name: Option<String>,
}

/// An identifier of a registry object in an identification scheme.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalIdentifier {
    /// The identifier's own id.
    pub id: String,
    /// `identificationScheme` (an XDS scheme UUID).
    pub scheme: String,
    /// The object identified.
    pub registry_object: String,
    /// The identifier.
    pub value: String,
    /// Its name (`XDSDocumentEntry.uniqueId`, …).
    pub name: Option<String>,
}

/// What ExtrinsicObject (document entry) and RegistryPackage (submission set, folder) share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryObject {
    /// A symbolic id in a submission, `urn:uuid:…` in the registry.
    pub id: String,
    /// The logical id.
    pub lid: Option<String>,
    /// `objectType`.
    pub object_type: Option<String>,
    /// The availability status URN.
    pub status: Option<String>,
    /// Slots.
    pub slots: Vec<Slot>,
    /// The `Name` (first localized string).
    pub name: Option<String>,
    /// The `Description` (first localized string).
    pub description: Option<String>,
    /// Classifications nested in the object.
    pub classifications: Vec<Classification>,
    /// External identifiers nested in the object.
    pub external_identifiers: Vec<ExternalIdentifier>,
}

/// A document entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtrinsicObject {
    /// What every registry object has.
    pub object: RegistryObject,
    /// `mimeType`.
    pub mime_type: Option<String>,
}

/// A link between two registry objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Association {
    /// The association's own id.
    pub id: String,
    /// `associationType` URN.
    pub association_type: String,
    /// `sourceObject`.
    pub source: String,
    /// `targetObject`.
    pub target: String,
    /// The availability status URN.
    pub status: Option<String>,
    /// Slots (`SubmissionSetStatus`, `OriginalStatus`, `NewStatus`).
    pub slots: Vec<Slot>,
}

/// A `RegistryObjectList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectList {
    /// Document entries.
    pub extrinsic_objects: Vec<ExtrinsicObject>,
    /// Submission sets and folders.
    pub packages: Vec<RegistryObject>,
    /// Associations.
    pub associations: Vec<Association>,
    /// Classifications standing alone in the list (e.g. the submission-set marker).
    pub classifications: Vec<Classification>,
    /// Ids of `ObjectRef`s.
    pub object_refs: Vec<String>,
}

fn first_value<'a>(slots: &'a [Slot], name: &str) -> Option<&'a str> {
    slots
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.values.first())
        .map(String::as_str)
}

impl RegistryObject {
    /// The slot named `name`.
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// The first value of the slot named `name`.
    pub fn slot_value(&self, name: &str) -> Option<&str> {
        first_value(&self.slots, name)
    }

    /// The classifications of one scheme.
    pub fn classifications_by_scheme<'a>(
        &'a self,
        scheme: &'a str,
    ) -> impl Iterator<Item = &'a Classification> + 'a {
        self.classifications
            .iter()
            .filter(move |c| c.scheme.as_deref() == Some(scheme))
    }

    /// The external identifier of one scheme.
    pub fn external_id(&self, scheme: &str) -> Option<&ExternalIdentifier> {
        self.external_identifiers.iter().find(|e| e.scheme == scheme)
    }
}

impl Classification {
    /// The first value of the slot named `name`.
    pub fn slot_value(&self, name: &str) -> Option<&str> {
        first_value(&self.slots, name)
    }
}

impl Association {
    /// The first value of the slot named `name`.
    pub fn slot_value(&self, name: &str) -> Option<&str> {
        first_value(&self.slots, name)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading.

fn localized(e: Option<&Element>) -> Option<String> {
    e.and_then(|n| n.child(ns::RIM, "LocalizedString"))
        .and_then(|l| l.attr("value"))
        .map(str::to_string)
}

/// Reads the `rim:Slot` children of `e`.
pub fn read_slots(e: &Element) -> Vec<Slot> {
    e.children_named(ns::RIM, "Slot")
        .map(|s| Slot {
            name: s.attr("name").unwrap_or_default().to_string(),
            values: s
                .child(ns::RIM, "ValueList")
                .map(|vl| {
                    vl.children_named(ns::RIM, "Value")
                        .map(|v| v.text.trim().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Reads a `rim:Classification`.
pub fn read_classification(c: &Element) -> Classification {
    Classification {
        id: c.attr("id").unwrap_or_default().to_string(),
        scheme: c.attr("classificationScheme").map(str::to_string),
        node: c.attr("classificationNode").map(str::to_string),
        classified_object: c.attr("classifiedObject").unwrap_or_default().to_string(),
        node_representation: c.attr("nodeRepresentation").map(str::to_string),
        slots: read_slots(c),
        name: localized(c.child(ns::RIM, "Name")),
    }
}

fn read_object(e: &Element) -> RegistryObject {
    RegistryObject {
        id: e.attr("id").unwrap_or_default().to_string(),
        lid: e.attr("lid").map(str::to_string),
        object_type: e.attr("objectType").map(str::to_string),
        status: e.attr("status").map(str::to_string),
        slots: read_slots(e),
        name: localized(e.child(ns::RIM, "Name")),
        description: localized(e.child(ns::RIM, "Description")),
        classifications: e
            .children_named(ns::RIM, "Classification")
            .map(read_classification)
            .collect(),
        external_identifiers: e
            .children_named(ns::RIM, "ExternalIdentifier")
            .map(|x| ExternalIdentifier {
                id: x.attr("id").unwrap_or_default().to_string(),
                scheme: x.attr("identificationScheme").unwrap_or_default().to_string(),
                registry_object: x.attr("registryObject").unwrap_or_default().to_string(),
                value: x.attr("value").unwrap_or_default().to_string(),
                name: localized(x.child(ns::RIM, "Name")),
            })
            .collect(),
    }
}

/// Reads a `rim:RegistryObjectList` (unknown children are ignored, as a registry does).
pub fn read_object_list(list: &Element) -> ObjectList {
    let mut out = ObjectList::default();
    for c in &list.children {
        if c.ns != ns::RIM {
            continue;
        }
        match c.name.as_str() {
            "ExtrinsicObject" => out.extrinsic_objects.push(ExtrinsicObject {
                object: read_object(c),
                mime_type: c.attr("mimeType").map(str::to_string),
            }),
            "RegistryPackage" => out.packages.push(read_object(c)),
            "Association" => out.associations.push(Association {
                id: c.attr("id").unwrap_or_default().to_string(),
                association_type: c.attr("associationType").unwrap_or_default().to_string(),
                source: c.attr("sourceObject").unwrap_or_default().to_string(),
                target: c.attr("targetObject").unwrap_or_default().to_string(),
                status: c.attr("status").map(str::to_string),
                slots: read_slots(c),
            }),
            "Classification" => out.classifications.push(read_classification(c)),
            "ObjectRef" => out.object_refs.push(c.attr("id").unwrap_or_default().to_string()),
            _ => {}
        }
    }
    out
}

/// One `rs:RegistryError`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryErrorEntry {
    /// `errorCode` (`XDSDuplicateUniqueIdInRegistry`, …).
    pub code: String,
    /// `codeContext`: what a person can act on.
    pub context: String,
    /// The severity URN.
    pub severity: String,
    /// `location`, empty when absent.
    pub location: String,
}

/// Reads the `rs:RegistryErrorList` under `parent`, if any.
pub fn read_errors(parent: &Element) -> Vec<RegistryErrorEntry> {
    parent
        .child(ns::RS, "RegistryErrorList")
        .map(|l| {
            l.children_named(ns::RS, "RegistryError")
                .map(|e| RegistryErrorEntry {
                    code: e.attr("errorCode").unwrap_or_default().to_string(),
                    // codeContext is the attribute; some registries put the text in the element.
                    context: e
                        .attr("codeContext")
                        .map(str::to_string)
                        .unwrap_or_else(|| e.text.trim().to_string()),
                    severity: e.attr("severity").unwrap_or(SEVERITY_ERROR).to_string(),
                    location: e.attr("location").unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Writing. Elements use the `rim:` prefix; the caller declares it (see [`RIM_XMLNS`]).

/// The declaration of the `rim:` prefix the writers use.
pub const RIM_XMLNS: &str = r#"xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0""#;

fn write_localized(out: &mut String, element: &str, text: &Option<String>) {
    if let Some(t) = text {
        let _ = write!(
            out,
            r#"<rim:{element}><rim:LocalizedString xml:lang="fr-FR" charset="UTF-8" value="{}"/></rim:{element}>"#,
            esc_attr(t)
        );
    }
}

/// Writes slots.
pub fn write_slots(out: &mut String, slots: &[Slot]) {
    for s in slots {
        let _ = write!(out, r#"<rim:Slot name="{}"><rim:ValueList>"#, esc_attr(&s.name));
        for v in &s.values {
            let _ = write!(out, "<rim:Value>{}</rim:Value>", esc(v));
        }
        out.push_str("</rim:ValueList></rim:Slot>");
    }
}

/// Writes a classification.
pub fn write_classification(out: &mut String, c: &Classification) {
    let _ = write!(out, r#"<rim:Classification id="{}""#, esc_attr(&c.id));
    if let Some(s) = &c.scheme {
        let _ = write!(out, r#" classificationScheme="{}""#, esc_attr(s));
    }
    if let Some(n) = &c.node {
        let _ = write!(out, r#" classificationNode="{}""#, esc_attr(n));
    }
    let _ = write!(out, r#" classifiedObject="{}""#, esc_attr(&c.classified_object));
    if let Some(n) = &c.node_representation {
        let _ = write!(out, r#" nodeRepresentation="{}""#, esc_attr(n));
    }
    out.push('>');
    write_slots(out, &c.slots);
    write_localized(out, "Name", &c.name);
    out.push_str("</rim:Classification>");
}

fn write_object_body(out: &mut String, o: &RegistryObject) {
    write_slots(out, &o.slots);
    write_localized(out, "Name", &o.name);
    write_localized(out, "Description", &o.description);
    for c in &o.classifications {
        write_classification(out, c);
    }
    for x in &o.external_identifiers {
        let _ = write!(
            out,
            r#"<rim:ExternalIdentifier id="{}" registryObject="{}" identificationScheme="{}" value="{}">"#,
            esc_attr(&x.id),
            esc_attr(&x.registry_object),
            esc_attr(&x.scheme),
            esc_attr(&x.value)
        );
        write_localized(out, "Name", &x.name);
        out.push_str("</rim:ExternalIdentifier>");
    }
}

fn write_common_attrs(out: &mut String, o: &RegistryObject) {
    let _ = write!(out, r#" id="{}""#, esc_attr(&o.id));
    if let Some(l) = &o.lid {
        let _ = write!(out, r#" lid="{}""#, esc_attr(l));
    }
    if let Some(t) = &o.object_type {
        let _ = write!(out, r#" objectType="{}""#, esc_attr(t));
    }
    if let Some(s) = &o.status {
        let _ = write!(out, r#" status="{}""#, esc_attr(s));
    }
}

/// Writes a document entry.
pub fn write_extrinsic_object(out: &mut String, e: &ExtrinsicObject) {
    out.push_str("<rim:ExtrinsicObject");
    write_common_attrs(out, &e.object);
    if let Some(m) = &e.mime_type {
        let _ = write!(out, r#" mimeType="{}""#, esc_attr(m));
    }
    out.push('>');
    write_object_body(out, &e.object);
    out.push_str("</rim:ExtrinsicObject>");
}

/// Writes a `rim:RegistryPackage`.
pub fn write_package(out: &mut String, p: &RegistryObject) {
    out.push_str("<rim:RegistryPackage");
    write_common_attrs(out, p);
    out.push('>');
    write_object_body(out, p);
    out.push_str("</rim:RegistryPackage>");
}

/// Writes an association.
pub fn write_association(out: &mut String, a: &Association) {
    let _ = write!(
        out,
        r#"<rim:Association id="{}" associationType="{}" sourceObject="{}" targetObject="{}""#,
        esc_attr(&a.id),
        esc_attr(&a.association_type),
        esc_attr(&a.source),
        esc_attr(&a.target)
    );
    if let Some(s) = &a.status {
        let _ = write!(out, r#" status="{}""#, esc_attr(s));
    }
    out.push('>');
    write_slots(out, &a.slots);
    out.push_str("</rim:Association>");
}

/// Writes `<rim:RegistryObjectList>` with every object of the list.
pub fn write_object_list(out: &mut String, list: &ObjectList) {
    out.push_str("<rim:RegistryObjectList>");
    for p in &list.packages {
        write_package(out, p);
    }
    for e in &list.extrinsic_objects {
        write_extrinsic_object(out, e);
    }
    for c in &list.classifications {
        write_classification(out, c);
    }
    for a in &list.associations {
        write_association(out, a);
    }
    for r in &list.object_refs {
        let _ = write!(out, r#"<rim:ObjectRef id="{}"/>"#, esc_attr(r));
    }
    out.push_str("</rim:RegistryObjectList>");
}

/// Writes an `rs:RegistryErrorList` (nothing when `errors` is empty). The caller declares
/// the `rs:` prefix.
pub fn write_errors(out: &mut String, errors: &[RegistryErrorEntry]) {
    if errors.is_empty() {
        return;
    }
    out.push_str("<rs:RegistryErrorList>");
    for e in errors {
        let _ = write!(
            out,
            r#"<rs:RegistryError errorCode="{}" codeContext="{}" severity="{}""#,
            esc_attr(&e.code),
            esc_attr(&e.context),
            esc_attr(&e.severity)
        );
        if !e.location.is_empty() {
            let _ = write!(out, r#" location="{}""#, esc_attr(&e.location));
        }
        out.push_str("/>");
    }
    out.push_str("</rs:RegistryErrorList>");
}

/// An ITI-18 `AdhocQueryRequest` for the stored query `query_id`, returning `LeafClass`
/// objects: each slot is written as one `Value` (a query list `('a','b')` or a single value).
pub fn adhoc_query(query_id: &str, slots: &[(String, String)]) -> String {
    let mut body = format!(
        r#"<query:AdhocQueryRequest xmlns:query="{}" {RIM_XMLNS}><query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/><rim:AdhocQuery id="{}">"#,
        ns::QUERY,
        esc_attr(query_id)
    );
    for (name, value) in slots {
        body.push_str(&format!(
            r#"<rim:Slot name="{}"><rim:ValueList><rim:Value>{}</rim:Value></rim:ValueList></rim:Slot>"#,
            esc_attr(name),
            esc(value)
        ));
    }
    body.push_str("</rim:AdhocQuery></query:AdhocQueryRequest>");
    body
}

/// `('a','b')`: a stored query's list of values, quotes doubled inside values.
pub fn query_list(values: &[String]) -> String {
    let inner: Vec<String> = values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect();
    format!("({})", inner.join(","))
}
