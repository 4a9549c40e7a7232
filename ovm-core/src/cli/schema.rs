//! `ovm schema`: the JSON Schema (draft 2020-12) of each record `--json` prints, generated from the
//! Rust types themselves, so it cannot drift from what the command writes.

use schemars::{schema_for, JsonSchema};

use crate::model::*;
use crate::{Error, Result};

/// The records with a schema, by the name `ovm schema NAME` takes: every object kind (`Server`,
/// `Vm`, …, `Job`, `Event`) and `Change` (a line of `ovm event watch`).
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = ObjectKind::ALL.iter().map(|k| k.name()).collect();
    v.push("Change");
    v
}

fn of<T: JsonSchema>() -> serde_json::Value {
    schema_for!(T).to_value()
}

/// The schema of the record named `name` (see [`names`]); a list prints an array of them.
pub fn schema(name: &str) -> Result<serde_json::Value> {
    Ok(match name {
        "Server" => of::<Server>(),
        "ServerPool" => of::<ServerPool>(),
        "FileServer" => of::<FileServer>(),
        "StorageArray" => of::<StorageArray>(),
        "FileSystem" => of::<FileSystem>(),
        "PhysicalDisk" => of::<PhysicalDisk>(),
        "AccessGroup" => of::<AccessGroup>(),
        "Repository" => of::<Repository>(),
        "VirtualDisk" => of::<VirtualDisk>(),
        "VirtualCdrom" => of::<VirtualCdrom>(),
        "Template" => of::<Template>(),
        "Assembly" => of::<Assembly>(),
        "Network" => of::<Network>(),
        "Port" => of::<Port>(),
        "BondPort" => of::<BondPort>(),
        "VlanInterface" => of::<VlanInterface>(),
        "Vm" => of::<Vm>(),
        "AntiAffinityGroup" => of::<AntiAffinityGroup>(),
        "Tag" => of::<Tag>(),
        "Job" => of::<Job>(),
        "Event" => of::<Event>(),
        "Change" => of::<Change>(),
        _ => {
            return Err(Error::invalid(
                "record",
                format!("{name:?} has no schema; one of {}", names().join(", ")),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_has_a_schema_of_an_object() {
        for n in names() {
            let s = schema(n).unwrap();
            assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema", "{n}");
            assert!(s.get("properties").is_some() || s.get("oneOf").is_some(), "{n}: {s}");
        }
        assert_eq!(schema("Nope").unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
    }
}
