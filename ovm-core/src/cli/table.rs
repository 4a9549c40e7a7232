//! Tables and JSON for the `ovm` command's output.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::*;
use crate::Result;

/// A table: a header and rows of cells, printed with columns aligned to their widest cell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&'static str]) -> Table {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (one cell a column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The text: columns separated by two spaces, the last one unpadded.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let n = cells.len();
            let mut s = String::new();
            for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
                if i + 1 == n {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s.trim_end().to_owned() + "\n"
        };
        let mut out = line(self.header.clone());
        for r in &self.rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// Pretty JSON of `v`, with a final newline.
pub fn json<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// The object inside an [`Object`], as JSON (without the `kind` wrapper).
pub fn object_json(o: &Object) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(o)?;
    Ok(v.get_mut("object").map(serde_json::Value::take).unwrap_or(v))
}

/// Names of objects by id, for showing references by name.
pub type Names = HashMap<uuid::Uuid, String>;

fn name_of(names: &Names, id: Option<uuid::Uuid>) -> String {
    match id {
        None => "-".into(),
        Some(id) => names.get(&id).cloned().unwrap_or_else(|| id.to_string()),
    }
}

fn ownership(o: &Ownership) -> String {
    match o {
        Ownership::Unowned => "unowned".into(),
        Ownership::Owned => "owned".into(),
        Ownership::OwnedByOther(m) => format!("owned by {m}"),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The table of a list of objects of one kind; `names` resolves references.
pub fn objects(kind: ObjectKind, objs: &[Object], names: &Names) -> Table {
    match kind {
        ObjectKind::Server => {
            let mut t = Table::new(&[
                "NAME",
                "ID",
                "ADDRESS",
                "POWER",
                "OWNERSHIP",
                "POOL",
                "CPUS",
                "MEMORY_MIB",
                "MAINTENANCE",
            ]);
            for o in objs {
                if let Object::Server(s) = o {
                    t.row(vec![
                        s.name.clone(),
                        s.id.to_string(),
                        s.address.clone(),
                        s.power_state.to_string(),
                        ownership(&s.ownership),
                        name_of(names, s.pool.map(|p| p.0)),
                        s.hardware.cpus.to_string(),
                        s.hardware.memory_mib.to_string(),
                        yes_no(s.maintenance_mode),
                    ]);
                }
            }
            t
        }
        ObjectKind::ServerPool => {
            let mut t = Table::new(&["NAME", "ID", "SERVERS", "MASTER", "CLUSTERED", "START_POLICY"]);
            for o in objs {
                if let Object::ServerPool(p) = o {
                    t.row(vec![
                        p.name.clone(),
                        p.id.to_string(),
                        p.servers.len().to_string(),
                        name_of(names, p.master.map(|s| s.0)),
                        yes_no(p.clustered),
                        format!("{:?}", p.start_policy),
                    ]);
                }
            }
            t
        }
        ObjectKind::Vm => {
            let mut t = Table::new(&["NAME", "ID", "STATE", "POOL", "SERVER", "VCPUS", "MEMORY_MIB", "HA"]);
            for o in objs {
                if let Object::Vm(v) = o {
                    t.row(vec![
                        v.name.clone(),
                        v.id.to_string(),
                        v.power_state.to_string(),
                        name_of(names, v.pool.map(|p| p.0)),
                        name_of(names, v.server.map(|s| s.0)),
                        v.config.vcpus.to_string(),
                        v.config.memory_mib.to_string(),
                        yes_no(v.config.high_availability),
                    ]);
                }
            }
            t
        }
        ObjectKind::Repository => {
            let mut t = Table::new(&["NAME", "ID", "POOL", "INITIALIZED", "CAPACITY_BYTES", "USED_BYTES"]);
            for o in objs {
                if let Object::Repository(r) = o {
                    t.row(vec![
                        r.name.clone(),
                        r.id.to_string(),
                        name_of(names, r.owner_pool.map(|p| p.0)),
                        yes_no(r.initialized),
                        r.capacity_bytes.to_string(),
                        r.used_bytes.to_string(),
                    ]);
                }
            }
            t
        }
        _ => {
            let mut t = Table::new(&["NAME", "ID"]);
            for o in objs {
                t.row(vec![o.name().to_owned(), o.uuid().to_string()]);
            }
            t
        }
    }
}

/// The table of jobs.
pub fn jobs(jobs: &[Job]) -> Table {
    let mut t = Table::new(&["ID", "KIND", "STATE", "PROGRESS", "SUMMARY"]);
    for j in jobs {
        t.row(vec![
            j.id.to_string(),
            j.kind.clone(),
            j.state.to_string(),
            format!("{:.0}%", j.progress * 100.0),
            j.summary.clone(),
        ]);
    }
    t
}

/// The table of events.
pub fn events(events: &[Event], names: &Names) -> Table {
    let mut t = Table::new(&["ID", "SEVERITY", "TYPE", "OBJECT", "ACKNOWLEDGED", "SUMMARY"]);
    for e in events {
        t.row(vec![
            e.id.to_string(),
            e.severity.to_string(),
            e.event_type.clone(),
            format!("{} {}", e.object.kind, name_of(names, Some(e.object.id))),
            yes_no(e.acknowledged.is_some()),
            e.summary.clone(),
        ]);
    }
    t
}

/// One object as a two-column table of its fields (from its JSON).
pub fn fields(v: &serde_json::Value) -> Table {
    let mut t = Table::new(&["FIELD", "VALUE"]);
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            let cell = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            t.row(vec![k.clone(), cell]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_unpadded() {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["web01".into(), "Running".into()]);
        t.row(vec!["a".into(), "Stopped".into()]);
        assert_eq!(t.render(), "NAME   STATE\nweb01  Running\na      Stopped\n");
        assert_eq!(Table::new(&["ID"]).render(), "ID\n");
    }

    #[test]
    fn fields_show_strings_bare_and_the_rest_as_json() {
        let t = fields(&serde_json::json!({"name": "x", "pool": null, "cpus": 4}));
        assert_eq!(t.render(), "FIELD  VALUE\ncpus   4\nname   x\npool   -\n");
    }
}
