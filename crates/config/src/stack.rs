//! Stack settings kept in `<config>/stack.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, fs};

/// The stack settings file. Unknown keys are kept out: the file is small and fully typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackFile {
    /// The public base URL (see [`crate::PublicUrl`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl StackFile {
    /// Reads the file; a missing file is the default.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        fs::load_json(path, "stack settings")
    }

    /// Writes the file (0600, atomically).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        fs::save_json(path, self)
    }
}
