//! Graphical consoles: a VM's one-time VNC endpoint, and a screenshot through one.

use std::ffi::c_char;
use std::time::Duration;

use ovm_core::model::VmId;

use crate::boundary::{entry, id_arg, str_arg, with_mgr};
use crate::result::{ovm_result, FfiError};

/// A VM's one-time console endpoint (`ovm_vm_console_open`).
#[repr(C)]
#[derive(Debug)]
pub struct ovm_console_endpoint {
    /// Where a VNC client connects, `127.0.0.1:PORT` (NUL-terminated).
    pub address: [c_char; 64],
    /// The one-time password the client gives (VNC authentication; NUL-terminated).
    pub password: [c_char; 9],
    /// How long the endpoint waits for its client, seconds.
    pub expires_in_secs: u32,
}

fn copy_c(dst: &mut [c_char], s: &str) -> Result<(), FfiError> {
    if s.len() >= dst.len() {
        return Err(FfiError::new(ovm_result::OVM_RESULT_INTERNAL, format!("{s:?} does not fit")));
    }
    for (d, b) in dst.iter_mut().zip(s.bytes().chain(std::iter::once(0))) {
        *d = b as c_char;
    }
    Ok(())
}

/// Open a running VM's graphical console (an HVM or PVHVM guest's screen) for one VNC client: the
/// endpoint on this machine's loopback takes the first client that gives the password, refuses
/// wrong passwords (the third closes it), and takes nobody after its client or after
/// `expires_in_secs`. Through a manager service, the endpoint is on the service's machine.
#[no_mangle]
pub unsafe extern "C" fn ovm_vm_console_open(
    mgr: *const crate::handles::ovm_manager,
    vm: *const c_char,
    out: *mut ovm_console_endpoint,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = VmId(id_arg(vm, "vm")?);
        if out.is_null() {
            return Err(crate::boundary::null("out"));
        }
        let ep = m.api.open_vm_console(id)?;
        let o = &mut *out;
        copy_c(&mut o.address, &ep.address.to_string())?;
        copy_c(&mut o.password, &ep.password)?;
        o.expires_in_secs = ep.expires_in.as_secs() as u32;
        Ok(())
    })
}

/// Connect to a console endpoint at `address` (`HOST:PORT`), authenticate with `password`, take
/// one screenshot of the whole screen and write it to `png_path` as a PNG image. The screen's
/// size and how many distinct colours it has (1: blank) go to the optional outputs.
#[no_mangle]
pub unsafe extern "C" fn ovm_console_screenshot(
    address: *const c_char,
    password: *const c_char,
    timeout_ms: u32,
    png_path: *const c_char,
    out_width: *mut u32,
    out_height: *mut u32,
    out_colours: *mut u32,
) -> ovm_result {
    entry!({
        let addr: std::net::SocketAddr = str_arg(address, "address")?
            .parse()
            .map_err(|_| ovm_core::Error::invalid("address", "HOST:PORT, HOST an IP address"))?;
        let password = str_arg(password, "password")?;
        let path = str_arg(png_path, "png_path")?;
        let shot = ovm_core::console::screenshot(
            addr,
            password,
            Duration::from_millis(u64::from(timeout_ms.max(1))),
        )?;
        std::fs::write(path, shot.png())
            .map_err(|e| ovm_core::Error::invalid("png_path", format!("{path}: {e}")))?;
        if !out_width.is_null() {
            *out_width = u32::from(shot.width);
        }
        if !out_height.is_null() {
            *out_height = u32::from(shot.height);
        }
        if !out_colours.is_null() {
            *out_colours = shot.colours() as u32;
        }
        Ok(())
    })
}
