//! The ebXML Registry Information Model 3.0 objects that XDS.b metadata is made of
//! (`rim.xsd` of the DMP schema annex): a generic, lenient reader and a writer whose output
//! validates against the schema. The typed XDS model ([`crate::xds`]) is built on top; the DMP
//! simulator validates these objects the way a registry does.

use std::fmt::Write as _;

use crate::xml::{Element, esc, esc_attr, ns};

/// ebRS response status URNs.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success";
pub const STATUS_PARTIAL_SUCCESS: &str = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess";
pub const STATUS_FAILURE: &str = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure";
pub const SEVERITY_ERROR: &str = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error";
pub const SEVERITY_WARNING: &str = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slot {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classification {
    pub id: String,
    pub scheme: Option<String>,
    pub node: Option<String>,
    pub classified_object: String,
    pub node_representation: Option<String>,
    pub slots: Vec<Slot>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalIdentifier {
    pub id: String,
    pub scheme: String,
    pub registry_object: String,
    pub value: String,
    pub name: Option<String>,
}

/// What ExtrinsicObject (document entry) and RegistryPackage (submission set, folder) share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryObject {
    pub id: String,
    pub lid: Option<String>,
    pub object_type: Option<String>,
    pub status: Option<String>,
    pub slots: Vec<Slot>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub classifications: Vec<Classification>,
    pub external_identifiers: Vec<ExternalIdentifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtrinsicObject {
    pub object: RegistryObject,
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Association {
    pub id: String,
    pub association_type: String,
    pub source: String,
    pub target: String,
    pub status: Option<String>,
    pub slots: Vec<Slot>,
}

/// A `RegistryObjectList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectList {
    pub extrinsic_objects: Vec<ExtrinsicObject>,
    pub packages: Vec<RegistryObject>,
    pub associations: Vec<Association>,
    /// Classifications standing alone in the list (e.g. the submission-set marker).
    pub classifications: Vec<Classification>,
    pub object_refs: Vec<String>,
}

impl RegistryObject {
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    pub fn slot_value(&self, name: &str) -> Option<&str> {
        self.slot(name).and_then(|s| s.values.first()).map(String::as_str)
    }

    pub fn classifications_by_scheme<'a>(
        &'a self,
        scheme: &'a str,
    ) -> impl Iterator<Item = &'a Classification> + 'a {
        self.classifications
            .iter()
            .filter(move |c| c.scheme.as_deref() == Some(scheme))
    }

    pub fn external_id(&self, scheme: &str) -> Option<&ExternalIdentifier> {
        self.external_identifiers.iter().find(|e| e.scheme == scheme)
    }
}

impl Classification {
    pub fn slot_value(&self, name: &str) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.values.first())
            .map(String::as_str)
    }
}

impl Association {
    pub fn slot_value(&self, name: &str) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.values.first())
            .map(String::as_str)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading.

fn localized(e: Option<&Element>) -> Option<String> {
    e.and_then(|n| n.child(ns::RIM, "LocalizedString"))
        .and_then(|l| l.attr("value"))
        .map(str::to_string)
}

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
    pub code: String,
    pub context: String,
    pub severity: String,
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

pub fn write_slots(out: &mut String, slots: &[Slot]) {
    for s in slots {
        let _ = write!(out, r#"<rim:Slot name="{}"><rim:ValueList>"#, esc_attr(&s.name));
        for v in &s.values {
            let _ = write!(out, "<rim:Value>{}</rim:Value>", esc(v));
        }
        out.push_str("</rim:ValueList></rim:Slot>");
    }
}

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

pub fn write_package(out: &mut String, p: &RegistryObject) {
    out.push_str("<rim:RegistryPackage");
    write_common_attrs(out, p);
    out.push('>');
    write_object_body(out, p);
    out.push_str("</rim:RegistryPackage>");
}

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
