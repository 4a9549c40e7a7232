//! Small serde helpers for the API's input types.

use serde::{Deserialize, Deserializer};

/// For an `Option<Option<T>>` field with `#[serde(default)]`: a field that is present decodes as
/// `Some` (so `null` is `Some(None)`, "clear it"), an absent one stays `None` ("leave it").
pub(crate) fn some<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}
