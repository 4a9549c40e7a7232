//! Typed operations on tags.

use std::ffi::c_char;

use ovm_core::model::*;

use crate::boundary::string_arg;
use crate::boundary::{id_arg, job_entry};
use crate::handles::{ovm_job, ovm_manager};
use crate::objects::{inventory_kind, kind_arg};
use crate::result::{ovm_result, FfiError};

/// Create a tag. The job's result is the tag.
#[no_mangle]
pub unsafe extern "C" fn ovm_tag_create(
    mgr: *const ovm_manager,
    name: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.create_object(Object::Tag(Tag::new(string_arg(name, "name")?))))
}

/// Attach (`on` true) or detach a tag to the object of `kind` (an `ovm_object_kind`) with id
/// `object_id`. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_tag_set(
    mgr: *const ovm_manager,
    tag: *const c_char,
    kind: u32,
    object_id: *const c_char,
    on: bool,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| {
        let target = ObjectRef::new(inventory_kind(kind_arg(kind)?)?, id_arg(object_id, "object_id")?);
        m.object(target)?;
        let Object::Tag(mut t) = m.object(ObjectRef::new(ObjectKind::Tag, id_arg(tag, "tag")?))? else {
            return Err(FfiError::invalid("tag is not a tag"));
        };
        t.objects.retain(|o| *o != target);
        if on {
            t.objects.push(target);
        }
        m.update_object(Object::Tag(t))
    })
}
