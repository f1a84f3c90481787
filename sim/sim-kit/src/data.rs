//! Simulator data files: TOML, unknown keys refused (each data struct uses
//! `deny_unknown_fields`). Relative paths inside are relative to the working directory.

use std::path::Path;

/// Reads the TOML data file at `path` into `C`; errors name the file and the key.
pub fn load<C: serde::de::DeserializeOwned>(path: &Path) -> Result<C, String> {
    use figment::providers::Format;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    figment::Figment::from(figment::providers::Toml::string(&text))
        .extract::<C>()
        .map_err(|e| format!("{}: {e}", path.display()))
}
