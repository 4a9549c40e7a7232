//! Cost of a simple getter through the C API against the same Rust call, in one run:
//! `ovm_vm_power_state(mgr, "uuid", &out)` versus `Manager::vm(id).power_state`.

use std::ffi::CString;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ovm_core::manager::VmSpec;
use ovm_core::model::{VmConfig, VmId};

fn getter(c: &mut Criterion) {
    let mut mgr_ptr: *mut ovm::ovm_manager = std::ptr::null_mut();
    let uri = CString::new(":memory:").unwrap();
    // SAFETY: valid arguments; the handle is freed at the end.
    assert_eq!(unsafe { ovm::ovm_manager_open(uri.as_ptr(), &mut mgr_ptr) }, ovm::ovm_result::OVM_RESULT_OK);
    // SAFETY: the handle is live until freed below.
    let mgr = unsafe { &*mgr_ptr };
    let rust = ovm::test_support::manager(mgr).expect("a manager of this process");
    let vm = VmId(
        rust.create_vm(VmSpec::new("bench", VmConfig::default()))
            .unwrap()
            .wait(Some(Duration::from_secs(10)))
            .unwrap()
            .result
            .unwrap()
            .id,
    );
    let id = CString::new(vm.to_string()).unwrap();
    let mut g = c.benchmark_group("vm_power_state_getter");
    g.bench_function("rust_manager_vm_power_state", |b| b.iter(|| rust.vm(vm).unwrap().power_state));
    g.bench_function("c_ovm_vm_power_state", |b| {
        b.iter(|| {
            let mut out = 0u32;
            // SAFETY: live handle, NUL-terminated id, valid out pointer.
            let rc = unsafe { ovm::ovm_vm_power_state(mgr_ptr, id.as_ptr(), &mut out) };
            debug_assert_eq!(rc, ovm::ovm_result::OVM_RESULT_OK);
            out
        })
    });
    g.finish();
    // SAFETY: freed once.
    unsafe { ovm::ovm_manager_free(mgr_ptr) };
}

criterion_group!(benches, getter);
criterion_main!(benches);
