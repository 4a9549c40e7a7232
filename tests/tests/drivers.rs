//! Drivers are registered, not named: a manager with no drivers reaches no server, a registered
//! driver gets a namespaced persistent state in the manager database, and the agent driver reads
//! the keys databases already have.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ovm_core::agent::Identity;
use ovm_core::driver::sim::{SimDriver, SimWorld, DEFAULT_PASSWORD};
use ovm_core::driver::{Driver, DriverContext, DriverState, ServerConnection};
use ovm_core::manager::{DatabaseLocation, ManagerBuilder};
use ovm_core::store::{Batch, Durability, SqliteStore, Store};
use ovm_core::{ErrorKind, Manager, Result};

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ovm-test-{}-{}", name, ovm_core::uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("manager.db")
}

/// A driver that handles `note://` addresses and only records what it persists.
#[derive(Debug, Default)]
struct NoteDriver {
    state: Mutex<Option<Arc<dyn DriverState>>>,
    manager_id: Mutex<String>,
}

impl Driver for NoteDriver {
    fn name(&self) -> &'static str {
        "note"
    }
    fn handles(&self, address: &str) -> bool {
        address.starts_with("note://")
    }
    fn attach(&self, ctx: DriverContext) -> Result<()> {
        *self.manager_id.lock().unwrap() = ctx.manager_id;
        *self.state.lock().unwrap() = Some(ctx.state);
        Ok(())
    }
    fn connect(&self, address: &str, _: &str, _: &str) -> Result<Arc<dyn ServerConnection>> {
        Err(ovm_core::Error::Unsupported { what: format!("connecting to {address}") })
    }
    fn reconnect(&self, address: &str, m: &str) -> Result<Arc<dyn ServerConnection>> {
        self.connect(address, "", m)
    }
    fn release(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn a_manager_reaches_only_the_servers_of_registered_drivers() {
    let bare = ManagerBuilder::new().recurring_jobs(false).open().unwrap();
    let e = bare.discover_server("sim://xen1", DEFAULT_PASSWORD).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(bare.drivers().is_empty());
    assert_eq!(bare.certificate_fingerprint().unwrap_err().kind(), ErrorKind::Unsupported);

    // The test keeps its own world and registers a sim driver on it.
    let world = SimWorld::new();
    let mgr = ManagerBuilder::new()
        .driver(Arc::new(SimDriver::new(world.clone())))
        .recurring_jobs(false)
        .open()
        .unwrap();
    let s = mgr.discover_server("sim://xen1", DEFAULT_PASSWORD).unwrap().wait(WAIT).unwrap();
    assert!(s.result.is_some());
    assert_eq!(world.host_names(), vec!["xen1".to_owned()]);
    assert_eq!(mgr.agent_fingerprint(ovm_core::model::ServerId(s.result.unwrap().id)).unwrap(), None);
    let e = mgr.discover_server("10.0.0.9", "pw").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "no agent driver registered: {e}");

    // The default set has both, and sim_world swaps in the caller's world.
    let world2 = SimWorld::new();
    let mgr = Manager::builder().sim_world(world2.clone()).recurring_jobs(false).open().unwrap();
    let names: Vec<&str> = mgr.drivers().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["sim", "agent"]);
    mgr.discover_server("sim://xen2", DEFAULT_PASSWORD).unwrap().wait(WAIT).unwrap();
    assert_eq!(world2.host_names(), vec!["xen2".to_owned()]);
    assert_eq!(mgr.sim().host_names(), vec!["xen2".to_owned()]);
}

#[test]
fn driver_state_is_namespaced_and_persisted_in_the_manager_database() {
    let path = temp_db("driverstate");
    let open = |d: Arc<NoteDriver>| {
        ManagerBuilder::new()
            .database(DatabaseLocation::File(path.clone()))
            .driver(d)
            .recurring_jobs(false)
            .open()
            .unwrap()
    };
    let d = Arc::new(NoteDriver::default());
    let mgr = open(d.clone());
    assert_eq!(*d.manager_id.lock().unwrap(), mgr.id());
    let st = d.state.lock().unwrap().clone().unwrap();
    assert_eq!(st.get("a").unwrap(), None);
    st.put("a", "1").unwrap();
    st.put("p:x", "2").unwrap();
    st.put("p:y", "3").unwrap();
    st.delete("p:y").unwrap();
    st.delete("never").unwrap();
    mgr.close(Duration::from_secs(5)).unwrap();
    drop((mgr, st));

    let d = Arc::new(NoteDriver::default());
    let mgr = open(d.clone());
    let st = d.state.lock().unwrap().clone().unwrap();
    assert_eq!(st.get("a").unwrap().as_deref(), Some("1"));
    assert_eq!(st.list("p:").unwrap(), vec![("p:x".to_owned(), "2".to_owned())]);
    mgr.close(Duration::from_secs(5)).unwrap();
    drop((mgr, st));
    // Under the driver's namespace in the meta table.
    let db = SqliteStore::open(&path, Durability::Normal).unwrap();
    assert_eq!(db.meta("note.a").unwrap().as_deref(), Some("1"));
    assert_eq!(db.meta("a").unwrap(), None);
}

#[test]
fn the_agent_driver_reads_the_keys_existing_databases_have() {
    let path = temp_db("agentkeys");
    let identity = Identity::generate("ovm-manager-old").unwrap();
    {
        let mut db = SqliteStore::open(&path, Durability::Normal).unwrap();
        let mut b = Batch::default();
        b.meta.push(("agent.identity".into(), serde_json::to_string(&identity).unwrap()));
        b.meta.push(("agent.pin:10.0.0.7".into(), "AB:CD".into()));
        db.commit(&b, 0).unwrap();
    }
    let mgr = Manager::builder()
        .database(DatabaseLocation::File(path.clone()))
        .recurring_jobs(false)
        .open()
        .unwrap();
    assert_eq!(mgr.certificate_fingerprint().unwrap(), identity.fingerprint().unwrap());
    let agent = mgr
        .drivers()
        .iter()
        .find_map(|d| d.downcast_ref::<ovm_core::agent::AgentDriver>())
        .expect("the default set has the agent driver");
    assert_eq!(agent.pinned("10.0.0.7").as_deref(), Some("AB:CD"));
    // A new pin lands under the same key scheme.
    agent.pin("10.0.0.8", "EF:01");
    agent.forget("10.0.0.7");
    mgr.close(Duration::from_secs(5)).unwrap();
    drop(mgr);
    let db = SqliteStore::open(&path, Durability::Normal).unwrap();
    assert_eq!(db.meta("agent.pin:10.0.0.8").unwrap().as_deref(), Some("EF:01"));
    assert_eq!(db.meta("agent.pin:10.0.0.7").unwrap().as_deref(), Some(""), "deleted");
}
