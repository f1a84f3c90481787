//! What a professional may see of a patient's DMP: the patient's entries, except those masked
//! to professionals, which only their authors see.

use super::{Registry, Stored};
use crate::Call;

impl Registry {
    /// The entries of the call's patient the call's professional may see.
    pub(super) fn visible<'a>(&'a self, call: &'a Call<'_>) -> impl Iterator<Item = &'a Stored> + 'a {
        self.entries
            .iter()
            .filter(move |s| s.patient == *call.vihf_patient)
    }
}
