//! Simulated migration by ticket: the destination reserves the domain's memory and issues a ticket;
//! the source sends the domain, which the destination admits in place of the reservation.
//!
//! The same moves as a byte stream ([`MigrationStreams`]): the source writes the domain's
//! description as one JSON line and waits for the destination's one-byte verdict; the destination
//! admits only the domain it was told to expect.
//!
//! A cold move ([`MigrationMode::Cold`]) leaves the source domain paused (as `xl save -p` does)
//! and the destination runs the domain; the caller destroys the paused copy. Its stream line is
//! the description behind [`SAVED`], so a receiver prepared for one mode refuses the other.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{HostState, SimConnection, SimOp, SimWorld};
use crate::driver::migration::{MigrationOps, MigrationStreams, MigrationTicket};
use crate::driver::{lock, DomainChange, DomainRunState, DomainSpec};
use crate::model::{MigrationMode, VmId};
use crate::{Error, Result};

/// The sim stream's verdict byte: the domain runs at the destination.
const ADMITTED: u8 = 0;
/// The longest domain description a sim stream carries.
const MAX_DESCRIPTION: u64 = 1 << 20;
/// What a saved domain's line starts with.
const SAVED: &str = "saved:";

/// A migration under way between two simulated hosts, counted on both until dropped.
struct InFlight<'a> {
    world: &'a SimWorld,
    hosts: [String; 2],
}

impl<'a> InFlight<'a> {
    /// Count a migration from `source` to `dest`, and take the time set for either
    /// ([`SimWorld::set_migration_time`]).
    fn begin(world: &'a SimWorld, source: &str, dest: &str) -> InFlight<'a> {
        let hosts = [source.to_owned(), dest.to_owned()];
        {
            let mut m = lock(&world.inner.migrating);
            for h in &hosts {
                let e = m.entry(h.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
        }
        let time = {
            let t = lock(&world.inner.migration_time);
            hosts.iter().filter_map(|h| t.get(h).copied()).max()
        };
        if let Some(t) = time {
            std::thread::sleep(t);
        }
        InFlight { world, hosts }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = lock(&self.world.inner.migrating);
        for h in &self.hosts {
            if let Some(e) = m.get_mut(h) {
                e.0 = e.0.saturating_sub(1);
            }
        }
    }
}

impl SimWorld {
    /// Make every migration from or to `host` take at least `time` (zero: no longer than it needs).
    pub fn set_migration_time(&self, host: &str, time: std::time::Duration) {
        let mut t = lock(&self.inner.migration_time);
        if time.is_zero() {
            t.remove(host);
        } else {
            t.insert(host.to_owned(), time);
        }
    }

    /// How many migrations from or to `host` are under way now.
    pub fn migrations_under_way(&self, host: &str) -> u32 {
        lock(&self.inner.migrating).get(host).map(|e| e.0).unwrap_or(0)
    }

    /// The most migrations from or to `host` that were ever under way at once.
    pub fn most_concurrent_migrations(&self, host: &str) -> u32 {
        lock(&self.inner.migrating).get(host).map(|e| e.1).unwrap_or(0)
    }
}

impl SimConnection {
    /// Whether `spec` may come here: not already resident, and its memory free.
    fn fits_incoming(st: &HostState, spec: &DomainSpec) -> Result<()> {
        if st.domains.contains_key(&spec.uuid) {
            return Err(Error::invalid("destination", "a domain cannot migrate to its own server"));
        }
        Self::memory_fits(st, spec)
    }

    /// Whether this host can send `spec`'s domain: a live migration tracks the pages the guest
    /// dirties, which for a PV guest takes shadow paging (as Xen's log-dirty mode does).
    fn can_send(st: &HostState, spec: &DomainSpec, live: bool) -> Result<()> {
        match st.virt.cannot_live_migrate(spec.domain_type) {
            Some(why) if live => Err(Error::Unsupported {
                what: format!("live migration of {} from {}: {why}", spec.name, st.name),
            }),
            _ => Ok(()),
        }
    }
}

impl MigrationStreams for SimConnection {
    fn check_incoming(&self, spec: &DomainSpec) -> Result<()> {
        self.op(SimOp::Migrate, |st| Self::fits_incoming(st, spec))
    }

    fn receive_stream(&self, spec: &DomainSpec, mode: MigrationMode, stream: UnixStream) -> Result<u32> {
        let mut line = String::new();
        let mut rd = BufReader::new((&stream).take(MAX_DESCRIPTION));
        rd.read_line(&mut line).map_err(|e| Error::backend("sim", format!("migration stream: {e}")))?;
        let line = match (mode, line.strip_prefix(SAVED)) {
            (MigrationMode::Live, None) => line.as_str(),
            (MigrationMode::Cold, Some(saved)) => saved,
            (MigrationMode::Live, Some(_)) => {
                let _ = (&stream).write_all(&[1]);
                return Err(Error::invalid(
                    "migration stream",
                    "a saved domain, not a live migration stream",
                ));
            }
            (MigrationMode::Cold, None) => {
                let _ = (&stream).write_all(&[1]);
                return Err(Error::invalid("migration stream", "not a saved domain"));
            }
        };
        let sent: DomainSpec = serde_json::from_str(line.trim_end())
            .map_err(|e| Error::invalid("migration stream", format!("not a domain description: {e}")))?;
        if sent != *spec {
            let _ = (&stream).write_all(&[1]);
            return Err(Error::invalid(
                "migration stream",
                format!(
                    "the stream carries domain {}, not the domain {} this server expects",
                    sent.uuid, spec.uuid
                ),
            ));
        }
        let domid = self.op(SimOp::Migrate, |st| self.admit(st, spec)).inspect_err(|_| {
            let _ = (&stream).write_all(&[1]);
        })?;
        (&stream)
            .write_all(&[ADMITTED])
            .map_err(|e| Error::backend("sim", format!("migration stream: {e}")))?;
        self.emit(DomainChange::Appeared { uuid: Some(spec.uuid), domid });
        Ok(domid)
    }

    fn send_stream(&self, vm: VmId, live: bool, mode: MigrationMode, mut stream: UnixStream) -> Result<()> {
        let (spec, domid) = self.op(SimOp::Migrate, |st| {
            let d = Self::domain(st, vm)?;
            let (spec, domid) = (d.spec.clone(), d.domid);
            // A cold move saves the paused domain: no dirty-page tracking needed.
            Self::can_send(st, &spec, live && mode == MigrationMode::Live)?;
            let d = Self::domain(st, vm)?;
            if mode == MigrationMode::Cold {
                d.state = DomainRunState::Paused;
            }
            Ok((spec, domid))
        })?;
        if mode == MigrationMode::Cold {
            self.emit(DomainChange::StateChanged { uuid: Some(vm), domid, state: DomainRunState::Paused });
        }
        let mut line = serde_json::to_string(&spec)?;
        if mode == MigrationMode::Cold {
            line.insert_str(0, SAVED);
        }
        line.push('\n');
        let io = |e: std::io::Error| Error::backend("sim", format!("migration stream: {e}"));
        stream.write_all(line.as_bytes()).map_err(io)?;
        let mut verdict = [0u8; 1];
        stream.read_exact(&mut verdict).map_err(io)?;
        if verdict[0] != ADMITTED {
            return Err(Error::backend(
                "sim",
                format!("the destination refused domain {vm}; it is still here"),
            ));
        }
        if mode == MigrationMode::Cold {
            // The saved domain stays paused here until the caller destroys it.
            return Ok(());
        }
        lock(&self.host.state).domains.remove(&vm);
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid });
        Ok(())
    }
}

impl MigrationOps for SimConnection {
    fn identity(&self) -> Result<String> {
        Ok(format!("sim:{}", lock(&self.host.state).name))
    }

    fn prepare_incoming(
        &self,
        spec: &DomainSpec,
        _source: &str,
        mode: MigrationMode,
    ) -> Result<MigrationTicket> {
        self.op(SimOp::Migrate, |st| {
            Self::fits_incoming(st, spec)?;
            let n = self.world.inner.next_ticket.fetch_add(1, Ordering::Relaxed) + 1;
            let token = format!("{}-{n}", st.name);
            let ticket = MigrationTicket {
                vm: spec.uuid,
                destination: format!("sim://{}", st.name),
                token: token.clone(),
                peer: format!("sim:{}", st.name),
                mode,
            };
            st.incoming.insert(token.clone(), (spec.uuid, spec.memory_mib));
            lock(&self.world.inner.tickets).insert(token, (st.name.clone(), ticket.clone()));
            Ok(ticket)
        })
    }

    fn cancel_incoming(&self, ticket: &MigrationTicket) -> Result<()> {
        lock(&self.world.inner.tickets).remove(&ticket.token);
        lock(&self.host.state).incoming.remove(&ticket.token);
        Ok(())
    }

    fn send(&self, vm: VmId, ticket: &MigrationTicket, live: bool) -> Result<()> {
        let (dest_name, issued) = lock(&self.world.inner.tickets)
            .get(&ticket.token)
            .cloned()
            .ok_or_else(|| Error::invalid("ticket", "no destination issued this migration ticket"))?;
        if issued != *ticket || ticket.vm != vm {
            return Err(Error::invalid("ticket", format!("the ticket admits {}, not {vm}", issued.vm)));
        }
        let dest_host = self.world.host(&dest_name)?;
        if Arc::ptr_eq(&dest_host, &self.host) {
            return Err(Error::invalid("destination", "a domain cannot migrate to its own server"));
        }
        let dest = SimConnection { host: dest_host, world: self.world.clone() };
        let source_name = lock(&self.host.state).name.clone();
        let _in_flight = InFlight::begin(&self.world, &source_name, &dest_name);
        let cold = ticket.mode == MigrationMode::Cold;
        let (spec, old_domid) = self.op(SimOp::Migrate, |st| {
            let d = Self::domain(st, vm)?;
            let (spec, domid) = (d.spec.clone(), d.domid);
            Self::can_send(st, &spec, live && !cold)?;
            let d = Self::domain(st, vm)?;
            if cold {
                // Saved paused, as `xl save -p` leaves it.
                d.state = DomainRunState::Paused;
            }
            Ok((spec, domid))
        })?;
        if cold {
            self.emit(DomainChange::StateChanged {
                uuid: Some(vm),
                domid: old_domid,
                state: DomainRunState::Paused,
            });
        }
        let new_domid = dest.op(SimOp::Query, |st| {
            let reservation = st.incoming.remove(&ticket.token);
            let admitted = dest.admit(st, &spec);
            if admitted.is_err() {
                if let Some(r) = reservation {
                    st.incoming.insert(ticket.token.clone(), r);
                }
            }
            admitted
        })?;
        lock(&self.world.inner.tickets).remove(&ticket.token);
        dest.emit(DomainChange::Appeared { uuid: Some(vm), domid: new_domid });
        if cold {
            return Ok(());
        }
        lock(&self.host.state).domains.remove(&vm);
        self.emit(DomainChange::Disappeared { uuid: Some(vm), domid: old_domid });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::sim::tests::spec;
    use crate::driver::sim::{SimDriver, SimOp, DEFAULT_PASSWORD};
    use crate::driver::{DomainRunState, Driver};
    use crate::model::MigrationMode;

    #[test]
    fn migration_by_ticket() {
        let d = SimDriver::default();
        let src = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let dst = d.connect("sim://s2?memory_mib=4096", DEFAULT_PASSWORD, "m").unwrap();
        let s = spec(2048);
        src.create_domain(&s).unwrap();
        let (ms, md) = (src.migration().unwrap(), dst.migration().unwrap());
        let t = md.prepare_incoming(&s, "sim:s1", MigrationMode::Live).unwrap();
        assert_eq!(t.destination, "sim://s2");
        // The reservation holds the memory: 4096 - 1024 dom0 - 2048 reserved leaves 1024.
        assert_eq!(
            dst.create_domain(&spec(2048)).unwrap_err().kind(),
            crate::ErrorKind::InsufficientResources
        );
        assert!(ms.send(crate::model::VmId::new(), &t, true).is_err(), "the ticket is for another VM");
        d.world().fail_next(SimOp::Migrate, Some("s1"), 1);
        assert!(ms.send(s.uuid, &t, true).is_err());
        ms.send(s.uuid, &t, true).unwrap();
        assert_eq!(src.list_domains().unwrap().len(), 1);
        assert!(dst.list_domains().unwrap().iter().any(|x| x.uuid == Some(s.uuid)));
        assert!(ms.send(s.uuid, &t, true).is_err(), "a ticket is used once");
        // Back, and a cancelled ticket frees its reservation.
        let back = ms.prepare_incoming(&s, "sim:s2", MigrationMode::Live).unwrap();
        md.send(s.uuid, &back, true).unwrap();
        let t = md.prepare_incoming(&spec(3072), "sim:s1", MigrationMode::Live).unwrap();
        md.cancel_incoming(&t).unwrap();
        dst.create_domain(&spec(3072)).unwrap();
        assert_eq!(
            md.prepare_incoming(&spec(1024), "sim:s1", MigrationMode::Live).unwrap_err().kind(),
            crate::ErrorKind::InsufficientResources
        );
    }

    #[test]
    fn a_cold_move_leaves_the_source_paused_and_runs_the_domain_at_the_destination() {
        let d = SimDriver::default();
        let src = d.connect("sim://s1", DEFAULT_PASSWORD, "m").unwrap();
        let dst = d.connect("sim://s2", DEFAULT_PASSWORD, "m").unwrap();
        let s = spec(1024);
        src.create_domain(&s).unwrap();
        let (ms, md) = (src.migration().unwrap(), dst.migration().unwrap());
        let t = md.prepare_incoming(&s, "sim:s1", MigrationMode::Cold).unwrap();
        assert_eq!(t.mode, MigrationMode::Cold);
        ms.send(s.uuid, &t, true).unwrap();
        let here = src.list_domains().unwrap().into_iter().find(|x| x.uuid == Some(s.uuid)).unwrap();
        assert_eq!(here.state, DomainRunState::Paused, "the saved copy waits, paused");
        let there = dst.list_domains().unwrap().into_iter().find(|x| x.uuid == Some(s.uuid)).unwrap();
        assert_eq!(there.state, DomainRunState::Running);

        // As a stream: a receiver prepared for one mode refuses the other's stream.
        let (ss, sd) = (dst.migration_streams().unwrap(), src.migration_streams().unwrap());
        src.destroy(s.uuid).unwrap();
        for (sent, expected) in
            [(MigrationMode::Live, MigrationMode::Cold), (MigrationMode::Cold, MigrationMode::Live)]
        {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            std::thread::scope(|sc| {
                let rx = sc.spawn(|| sd.receive_stream(&s, expected, b).map(drop));
                assert!(ss.send_stream(s.uuid, true, sent, a).is_err());
                assert!(rx.join().unwrap().is_err());
            });
            // A refused cold move leaves the domain paused for the caller to unpause.
            dst.unpause(s.uuid).unwrap();
            assert!(src.list_domains().unwrap().iter().all(|x| x.uuid != Some(s.uuid)));
        }
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        std::thread::scope(|sc| {
            let rx = sc.spawn(|| sd.receive_stream(&s, MigrationMode::Cold, b));
            ss.send_stream(s.uuid, true, MigrationMode::Cold, a).unwrap();
            rx.join().unwrap().unwrap();
        });
        assert!(src
            .list_domains()
            .unwrap()
            .iter()
            .any(|x| x.uuid == Some(s.uuid) && x.state == DomainRunState::Running));
        assert!(dst
            .list_domains()
            .unwrap()
            .iter()
            .any(|x| x.uuid == Some(s.uuid) && x.state == DomainRunState::Paused));
    }

    #[test]
    fn a_host_without_shadow_paging_cannot_live_migrate_pv_domains() {
        let d = SimDriver::default();
        let src = d.connect("sim://s1?caps=pv,hvm,hap", DEFAULT_PASSWORD, "m").unwrap();
        let dst = d.connect("sim://s2", DEFAULT_PASSWORD, "m").unwrap();
        let s = spec(1024);
        src.create_domain(&s).unwrap();
        let (ms, md) = (src.migration().unwrap(), dst.migration().unwrap());
        let t = md.prepare_incoming(&s, "sim:s1", MigrationMode::Live).unwrap();
        let err = ms.send(s.uuid, &t, true).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
        assert!(err.to_string().contains("shadow paging"), "{err}");
        assert!(src.list_domains().unwrap().iter().any(|x| x.uuid == Some(s.uuid)), "still at the source");
        // Not live (a suspended copy), it goes; so does a cold move.
        ms.send(s.uuid, &t, false).unwrap();
        assert!(dst.list_domains().unwrap().iter().any(|x| x.uuid == Some(s.uuid)));
    }
}
