//! The `AORTA-ID` header (SPEC.md §3.2): `AORTA-ID: initialRequestID=<uuid>; requestID=<uuid>`.
//!
//! **Decision** — a received header is kept as is (a malformed one is an invalid request); when
//! none is received both ids are created. Every outgoing call carries the same
//! `initialRequestID` and a fresh `requestID` of its own, so each hop can be found in the logs
//! of both sides; both ids go into every audit event.

use uuid::Uuid;

pub(crate) const HEADER: &str = "aorta-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AortaId {
    pub(crate) initial_request_id: Uuid,
    pub(crate) request_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AORTA-ID moet de vorm \"initialRequestID=<uuid>; requestID=<uuid>\" hebben")]
pub(crate) struct MalformedAortaId;

impl AortaId {
    pub(crate) fn new() -> Self {
        let id = Uuid::new_v4();
        AortaId {
            initial_request_id: id,
            request_id: id,
        }
    }

    /// From a received header value; `None` creates a new chain.
    pub(crate) fn accept(header: Option<&str>) -> Result<Self, MalformedAortaId> {
        let Some(value) = header else {
            return Ok(AortaId::new());
        };
        let (mut initial, mut request) = (None, None);
        for part in value.split(';') {
            let (k, v) = part.trim().split_once('=').ok_or(MalformedAortaId)?;
            let v = Uuid::parse_str(v.trim()).map_err(|_| MalformedAortaId)?;
            match k.trim() {
                "initialRequestID" if initial.is_none() => initial = Some(v),
                "requestID" if request.is_none() => request = Some(v),
                _ => return Err(MalformedAortaId),
            }
        }
        match (initial, request) {
            (Some(initial_request_id), Some(request_id)) => Ok(AortaId {
                initial_request_id,
                request_id,
            }),
            _ => Err(MalformedAortaId),
        }
    }

    /// The id of a request this service sends: same chain, new request id.
    pub(crate) fn outgoing(&self) -> AortaId {
        AortaId {
            initial_request_id: self.initial_request_id,
            request_id: Uuid::new_v4(),
        }
    }

    pub(crate) fn header_value(&self) -> String {
        format!(
            "initialRequestID={}; requestID={}",
            self.initial_request_id, self.request_id
        )
    }
}

impl Default for AortaId {
    fn default() -> Self {
        AortaId::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_creates_and_passes_on() {
        let v = "initialRequestID=6f1c1e0e-6f0a-4a57-9d43-0b8a3c1f0a11; requestID=0d5a2c8b-1f1e-4f3e-8a8e-9b2b9a1c2d3e";
        let id = AortaId::accept(Some(v)).expect("valid");
        assert_eq!(id.header_value(), v);
        let out = id.outgoing();
        assert_eq!(out.initial_request_id, id.initial_request_id);
        assert_ne!(out.request_id, id.request_id);
        let fresh = AortaId::accept(None).expect("created");
        assert_eq!(fresh.initial_request_id, fresh.request_id);
        for bad in [
            "",
            "requestID=x",
            "initialRequestID=6f1c1e0e-6f0a-4a57-9d43-0b8a3c1f0a11",
            "a=b; c=d",
        ] {
            assert_eq!(AortaId::accept(Some(bad)), Err(MalformedAortaId), "{bad}");
        }
    }
}
