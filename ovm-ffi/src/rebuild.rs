//! Rebuilding a lost manager database from the servers: `ovm_manager_rebuild_from_servers` and the
//! `ovm_rebuild_report` it hands back.

use std::ffi::c_char;

use ovm_core::manager::ServerLogin;

use crate::boundary::{copy_out_checked, entry, out_arg, put, str_list, with_mgr};
use crate::handles::{ovm_manager, ovm_rebuild_report, report_arg, Tagged};
use crate::result::{ovm_result, FfiError};

/// The lists of an `ovm_rebuild_report`, for `ovm_rebuild_report_count` and
/// `ovm_rebuild_report_item`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_rebuild_list {
    /// The ids of the servers taken over.
    OVM_REBUILD_SERVERS = 0,
    /// The ids of the repositories recovered.
    OVM_REBUILD_REPOSITORIES = 1,
    /// The ids of the VMs found running; item `i` runs on item `i` of `OVM_REBUILD_RUNNING_SERVERS`.
    OVM_REBUILD_RUNNING_VMS = 2,
    /// The ids of the servers the VMs of `OVM_REBUILD_RUNNING_VMS` run on, in the same order.
    OVM_REBUILD_RUNNING_SERVERS = 3,
    /// What could not be recovered, one sentence each.
    OVM_REBUILD_NOT_RECOVERED = 4,
}

/// The items of one list of a report, as strings.
fn items(r: &ovm_core::manager::RebuildReport, list: u32) -> Result<Vec<String>, FfiError> {
    use ovm_rebuild_list::*;
    fn ids<T: ToString>(v: impl Iterator<Item = T>) -> Vec<String> {
        v.map(|id| id.to_string()).collect()
    }
    Ok(match list {
        l if l == OVM_REBUILD_SERVERS as u32 => ids(r.servers.iter()),
        l if l == OVM_REBUILD_REPOSITORIES as u32 => ids(r.repositories.iter()),
        l if l == OVM_REBUILD_RUNNING_VMS as u32 => ids(r.running.iter().map(|(v, _)| v)),
        l if l == OVM_REBUILD_RUNNING_SERVERS as u32 => ids(r.running.iter().map(|(_, s)| s)),
        l if l == OVM_REBUILD_NOT_RECOVERED as u32 => r.not_recovered.clone(),
        l => {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ENUM,
                format!("{l} is not an ovm_rebuild_list"),
            ))
        }
    })
}

/// Rebuild the inventory of this manager — which must be empty, as after its database was lost —
/// from the `n` servers whose addresses and agent passwords are `addresses[i]` and `passwords[i]`,
/// and the repositories they mount: each server is taken over (`ovm_server_take_over`), and
/// repositories, virtual disks, ISOs, assemblies, templates and VMs are made from the
/// configuration files in the repositories, with their former ids. Server pools, networks and
/// anti-affinity groups are not kept in repositories. Blocks until done. On success `*out`
/// receives a report (free it with `ovm_rebuild_report_free`). A manager whose inventory is not
/// empty is refused with `OVM_RESULT_CONFLICT`.
#[no_mangle]
pub unsafe extern "C" fn ovm_manager_rebuild_from_servers(
    mgr: *const ovm_manager,
    addresses: *const *const c_char,
    passwords: *const *const c_char,
    n: usize,
    out: *mut *mut ovm_rebuild_report,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let addresses = str_list(addresses, n, "addresses")?;
        let passwords = str_list(passwords, n, "passwords")?;
        let out = out_arg(out, "out")?;
        let logins: Vec<ServerLogin> = addresses
            .iter()
            .zip(&passwords)
            .map(|(a, p)| ServerLogin { address: (*a).to_owned(), password: (*p).to_owned() })
            .collect();
        let report = m.api.rebuild_from_servers(logins)?;
        let h = Box::new(ovm_rebuild_report { tag: ovm_rebuild_report::TAG, report });
        put(out, Box::into_raw(h));
        Ok(())
    })
}

/// The number of objects recovered from configuration files (repositories included).
#[no_mangle]
pub unsafe extern "C" fn ovm_rebuild_report_objects(
    report: *const ovm_rebuild_report,
    out: *mut usize,
) -> ovm_result {
    entry!({
        let r = report_arg(report)?;
        put(out_arg(out, "out")?, r.report.objects);
        Ok(())
    })
}

/// The number of items in `list` (an `ovm_rebuild_list`) of a report.
#[no_mangle]
pub unsafe extern "C" fn ovm_rebuild_report_count(
    report: *const ovm_rebuild_report,
    list: u32,
    out: *mut usize,
) -> ovm_result {
    entry!({
        let r = report_arg(report)?;
        let n = items(&r.report, list)?.len();
        put(out_arg(out, "out")?, n);
        Ok(())
    })
}

/// Copy item `index` (from 0) of `list` (an `ovm_rebuild_list`) of a report into `buf`: an id
/// (37 bytes with the NUL), or a sentence for `OVM_REBUILD_NOT_RECOVERED`.
/// `OVM_RESULT_INVALID_ARGUMENT` if the list has no such item.
#[no_mangle]
pub unsafe extern "C" fn ovm_rebuild_report_item(
    report: *const ovm_rebuild_report,
    list: u32,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    entry!({
        let r = report_arg(report)?;
        let all = items(&r.report, list)?;
        let item = all.get(index).ok_or_else(|| {
            FfiError::invalid(format!("index {index} is past the end of the list ({} items)", all.len()))
        })?;
        copy_out_checked(item, buf, len, out_n)
    })
}

/// Free a rebuild report. NULL does nothing; a handle of another type is ignored.
#[no_mangle]
pub unsafe extern "C" fn ovm_rebuild_report_free(report: *mut ovm_rebuild_report) {
    let _ = entry!({
        if report_arg(report).is_err() {
            return Ok(());
        }
        // report came from Box::into_raw in ovm_manager_rebuild_from_servers and is freed once.
        (*report).tag = 0;
        drop(Box::from_raw(report));
        Ok(())
    });
}
