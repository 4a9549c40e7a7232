//! Imports into a repository: ISO images, Oracle VM template archives and assemblies (OVA/OVF),
//! read from a file on the manager's machine or an HTTP(S) URL.
//!
//! An import is streamed: the manager reads the source once, parses the archive as it arrives
//! ([`crate::import`]), and writes each file into the repository through the server it is
//! presented to, chunk by chunk ([`FileStoragePlugin::write_file_at`]); chunks of zeros are not
//! sent (files are created sparse). Nothing is held whole in memory but descriptors and
//! configuration files, and nothing is written to a temporary file on the manager. Each file's
//! deletion is journaled before the file is made, so a failure, an abort or a hostile archive
//! leaves nothing in the repository. The job reports the bytes read ([`Job::bytes_done`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;

use super::source::Source;
use super::{add_used, iso_path, repository_path};
use crate::driver::{FileStoragePlugin, MAX_WRITE_CHUNK};
use crate::import::{manifest, ovf, tar, vmcfg};
use crate::job::{StorageUndo, Undo};
use crate::manager::jobs::{JobSpec, StepCtx};
use crate::manager::{JobHandle, Manager};
use crate::model::*;
use crate::{Error, Result};

/// How many chunk writes are in flight at once.
const WRITERS: usize = 4;

/// Largest `vm.cfg` read from an archive, bytes.
const MAX_VM_CFG: u64 = crate::driver::MAX_CONFIG_FILE as u64;

impl Manager {
    /// Import an ISO image into a repository from `source` (an absolute path on the manager's
    /// machine or an `http(s)://` URL; its length must be known). The job's result is the ISO.
    pub fn import_iso(&self, repo: RepositoryId, name: &str, source: &str) -> Result<JobHandle> {
        validate_name(name)?;
        let src = Source::parse(source)?;
        let r = self.repository(repo)?;
        if self.get_by_name::<VirtualCdrom>(name).is_ok() {
            return Err(Error::conflict(format!("a VirtualCdrom named {name:?} already exists")));
        }
        let id = VirtualCdromId::new();
        let target = ObjectRef::new(ObjectKind::VirtualCdrom, id);
        let name = name.to_owned();
        self.submit(
            JobSpec::new("ImportIso", &format!("Import ISO {name} from {src}"), vec![target, r.object_ref()])
                .step("import", move |ctx| {
                    let mut imp = Importer::new(ctx, repo)?;
                    let (mut reader, length) = imp.open(&src, true)?;
                    let size = length.ok_or_else(|| {
                        Error::invalid(
                            "source",
                            format!("{src} does not say how long it is (no Content-Length)"),
                        )
                    })?;
                    let path = iso_path(repo, id);
                    let mut iso = IsoCheck::default();
                    imp.store(&path, size, &mut reader, &mut |off, b| iso.observe(off, b))?;
                    imp.expect_end(&mut reader, &src)?;
                    if !iso.ok() {
                        return Err(Error::invalid("source", format!("{src} is not an ISO 9660 image")));
                    }
                    let cd = VirtualCdrom {
                        id,
                        name: name.clone(),
                        description: format!("imported from {src}"),
                        repository: repo,
                        size_bytes: size,
                        path,
                    };
                    ctx.tx(|tx| {
                        tx.put(Object::VirtualCdrom(cd))?;
                        add_used(tx, repo, size as i64)
                    })?;
                    ctx.set_result(target);
                    Ok(())
                }),
        )
    }

    /// Import an Oracle VM template archive (`.tar`, `.tgz`: a `vm.cfg` and the disk images it
    /// names, and optionally the kernel and ramdisk it boots) into a repository, from `source`
    /// (an absolute path on the manager's machine or an `http(s)://` URL). The template is named
    /// `name`, or as its `vm.cfg` says. The job's result is the template.
    pub fn import_template(&self, repo: RepositoryId, source: &str, name: Option<&str>) -> Result<JobHandle> {
        if let Some(n) = name {
            validate_name(n)?;
        }
        let src = Source::parse(source)?;
        let r = self.repository(repo)?;
        if let Some(n) = name.filter(|n| self.get_by_name::<Template>(n).is_ok()) {
            return Err(Error::conflict(format!("a Template named {n:?} already exists")));
        }
        let tid = TemplateId::new();
        let target = ObjectRef::new(ObjectKind::Template, tid);
        let name = name.map(str::to_owned);
        self.submit(
            JobSpec::new(
                "ImportTemplate",
                &format!("Import template from {src}"),
                vec![target, r.object_ref()],
            )
            .step("import", move |ctx| {
                let mut imp = Importer::new(ctx, repo)?;
                let (reader, _) = imp.open(&src, true)?;
                let dir = format!("{}/Templates/{}", repository_path(repo), tid.0.simple());
                let mut cfg_text = None;
                let mut stored: BTreeMap<String, (String, u64)> = BTreeMap::new();
                tar::for_each_entry(reader, &tar::TarLimits::default(), |entry, data| {
                    if entry.kind != tar::TarKind::File {
                        return Ok(());
                    }
                    let base = base_name(&entry.path)?;
                    if base == "vm.cfg" {
                        if cfg_text.is_some() {
                            return Err(Error::invalid("archive", "two vm.cfg files"));
                        }
                        cfg_text = Some(read_text(data, entry.size, MAX_VM_CFG, "vm.cfg")?);
                        imp.count();
                        return Ok(());
                    }
                    let base = data_name(&base)?;
                    if stored.contains_key(&base) {
                        return Err(Error::invalid("archive", format!("two files named {base:?}")));
                    }
                    let path = format!("{dir}/{base}");
                    imp.store(&path, entry.size, data, &mut |_, _| {})?;
                    stored.insert(base, (path, entry.size));
                    Ok(())
                })?;
                imp.count();
                let text = cfg_text.ok_or_else(|| Error::invalid("archive", "no vm.cfg in the archive"))?;
                let cfg = vmcfg::template_from_cfg(&vmcfg::VmCfg::parse(&text)?)?;
                let tname = match name.clone().or(cfg.name.clone()) {
                    Some(n) => n,
                    None => src.file_name().split('.').next().unwrap_or("template").to_owned(),
                };
                validate_name(&tname)?;
                let built = template_config(&cfg, &stored)?;
                // What the template does not use is not kept.
                for (base, (path, size)) in &stored {
                    if !built.used.contains(base) {
                        imp.fs().delete_file(path)?;
                        imp.reserved -= size;
                        ctx.message(format!("left out {base}: vm.cfg does not use it"));
                    }
                }
                let disks: Vec<VirtualDisk> = built
                    .disks
                    .iter()
                    .map(|(id, base)| {
                        let (path, size) = stored[base].clone();
                        VirtualDisk {
                            id: *id,
                            name: format!("{tname}-{base}"),
                            description: format!("from template archive {}", src.file_name()),
                            repository: repo,
                            size_bytes: size,
                            format: DiskFormat::Sparse,
                            shareable: false,
                            path,
                        }
                    })
                    .collect();
                let t = Template {
                    id: tid,
                    name: tname,
                    description: cfg.description.clone(),
                    repository: repo,
                    config: built.config,
                    disks: built.disks.iter().map(|d| d.0).collect(),
                    from_assembly: None,
                    from_vm: None,
                };
                let used = i64::try_from(imp.reserved).map_err(|_| Error::invalid("source", "too large"))?;
                ctx.tx(|tx| {
                    for d in disks {
                        let mut d = d;
                        while tx.inv.virtual_disks.by_name(&d.name).is_some() {
                            d.name.push('\'');
                        }
                        tx.put(Object::VirtualDisk(d))?;
                    }
                    tx.put(Object::Template(t))?;
                    add_used(tx, repo, used)
                })?;
                ctx.set_result(target);
                Ok(())
            }),
        )
    }

    /// Import an assembly (an OVA archive, or an OVF descriptor with its files beside it) into a
    /// repository from `source` (an absolute path on the manager's machine or an `http(s)://`
    /// URL). Each virtual system becomes a template of the assembly, on the assembly's disks.
    /// Files the manifest lists are checked against it. Disks must be raw images (VMDK and other
    /// formats are refused: ovm has no converter). The job's result is the assembly.
    pub fn import_assembly(&self, repo: RepositoryId, source: &str, name: Option<&str>) -> Result<JobHandle> {
        if let Some(n) = name {
            validate_name(n)?;
        }
        let src = Source::parse(source)?;
        let r = self.repository(repo)?;
        if let Some(n) = name.filter(|n| self.get_by_name::<Assembly>(n).is_ok()) {
            return Err(Error::conflict(format!("an Assembly named {n:?} already exists")));
        }
        let aid = AssemblyId::new();
        let target = ObjectRef::new(ObjectKind::Assembly, aid);
        let name = name.map(str::to_owned);
        self.submit(
            JobSpec::new(
                "ImportAssembly",
                &format!("Import assembly from {src}"),
                vec![target, r.object_ref()],
            )
            .step("import", move |ctx| {
                let mut imp = Importer::new(ctx, repo)?;
                let dir = format!("{}/Assemblies/{}", repository_path(repo), aid.0.simple());
                let got = if src.file_name().to_ascii_lowercase().ends_with(".ovf") {
                    read_ovf_files(&mut imp, &src, &dir)?
                } else {
                    read_ova(&mut imp, &src, &dir)?
                };
                got.verify()?;
                let aname = name
                    .clone()
                    .or(got.envelope.name.clone())
                    .unwrap_or_else(|| src.file_name().split('.').next().unwrap_or("assembly").to_owned());
                validate_name(&aname)?;
                let records = assembly_records(&mut imp, &got, aid, &aname, &dir, &src)?;
                let used = i64::try_from(imp.reserved).map_err(|_| Error::invalid("source", "too large"))?;
                ctx.tx(|tx| {
                    let Records { assembly, disks, templates } = records;
                    for mut d in disks {
                        while tx.inv.virtual_disks.by_name(&d.name).is_some() {
                            d.name.push('\'');
                        }
                        tx.put(Object::VirtualDisk(d))?;
                    }
                    tx.put(Object::Assembly(assembly))?;
                    for mut t in templates {
                        if tx.inv.templates.by_name(&t.name).is_some() {
                            t.name = format!("{aname}-{}", t.name);
                        }
                        while tx.inv.templates.by_name(&t.name).is_some() {
                            t.name.push('\'');
                        }
                        tx.put(Object::Template(t))?;
                    }
                    add_used(tx, repo, used)
                })?;
                ctx.set_result(target);
                Ok(())
            }),
        )
    }
}

/// What an import has written so far, and where.
struct Importer<'a> {
    ctx: &'a StepCtx<'a>,
    server: ServerId,
    conn: std::sync::Arc<dyn crate::driver::ServerConnection>,
    repo: ObjectRef,
    /// Free bytes of the repository when the import began.
    free: u64,
    /// Bytes of the files made so far (their declared sizes).
    reserved: u64,
    /// Bytes read from the source so far, and in all when known.
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    total: Option<u64>,
}

impl<'a> Importer<'a> {
    fn new(ctx: &'a StepCtx<'a>, repo: RepositoryId) -> Result<Importer<'a>> {
        let r = ctx.mgr.repository(repo)?;
        let server = ctx.mgr.storage_server(repo)?;
        let conn = ctx.hv(server)?;
        crate::manager::file_storage(&*conn)?;
        Ok(Importer {
            ctx,
            server,
            conn,
            repo: r.object_ref(),
            free: r.free_bytes(),
            reserved: 0,
            read: Default::default(),
            total: None,
        })
    }

    fn fs(&self) -> &dyn FileStoragePlugin {
        self.conn.file_storage().expect("checked in new")
    }

    /// Open `src` for reading, counting what is read as the job's progress; its length (when
    /// known) is added to the job's total if `add_to_total`.
    fn open(&mut self, src: &Source, add_to_total: bool) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
        let o = src.open()?;
        if add_to_total {
            self.total = o.length.map(|n| n + self.total.unwrap_or(0));
        }
        self.count();
        let counting = Counting {
            inner: o.reader,
            read: self.read.clone(),
            cell: self.ctx.cell.clone(),
            source: src.to_string(),
        };
        Ok((Box::new(counting), o.length))
    }

    /// Report the bytes read so far.
    fn count(&mut self) {
        let n = self.read.load(std::sync::atomic::Ordering::Relaxed);
        self.ctx.bytes(n, self.total);
    }

    /// Make the file `path` of `size` bytes and fill it from `data` (exactly `size` bytes), showing
    /// each chunk read to `observe` (with its offset). Chunks of zeros are not written.
    fn store(
        &mut self,
        path: &str,
        size: u64,
        data: &mut dyn Read,
        observe: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<()> {
        self.reserve(size)?;
        self.ctx.will_do(Undo::Storage(StorageUndo::DeleteFile {
            server: self.server.0,
            path: path.to_owned(),
        }))?;
        self.fs().create_file(path, size)?;
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        let (tx, rx) = sync_channel::<(u64, Vec<u8>)>(WRITERS);
        let rx = Mutex::new(rx);
        let conn = self.conn.clone();
        let fs = crate::manager::file_storage(&*conn)?;
        let read = std::thread::scope(|s| {
            for _ in 0..WRITERS {
                s.spawn(|| loop {
                    let next = crate::sync::lock(&rx).recv();
                    let Ok((off, buf)) = next else { return };
                    if crate::sync::lock(&failed).is_some() {
                        continue; // drain
                    }
                    if let Err(e) = fs.write_file_at(path, off, &buf) {
                        *crate::sync::lock(&failed) = Some(e);
                    }
                });
            }
            let res = (|| {
                let mut off = 0u64;
                while off < size {
                    if self.ctx.aborting() {
                        return Err(Error::Aborted { job: self.ctx.job_id().to_string() });
                    }
                    if crate::sync::lock(&failed).is_some() {
                        return Ok(());
                    }
                    let want = (size - off).min(MAX_WRITE_CHUNK as u64) as usize;
                    let mut buf = vec![0u8; want];
                    fill(data, &mut buf).map_err(|e| read_error(path, e))?;
                    observe(off, &buf);
                    let zeros = buf.iter().all(|b| *b == 0);
                    if !zeros && tx.send((off, buf)).is_err() {
                        return Ok(());
                    }
                    off += want as u64;
                    self.count();
                }
                Ok(())
            })();
            drop(tx);
            res
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        read?;
        fs.finish_write(path)
    }

    /// Count `size` more bytes of the repository's free space as taken by this import, refusing
    /// what does not fit.
    fn reserve(&mut self, size: u64) -> Result<()> {
        match self.reserved.checked_add(size).filter(|n| *n <= self.free) {
            Some(n) => {
                self.reserved = n;
                Ok(())
            }
            None => Err(Error::InsufficientResources {
                object: self.repo,
                resource: "space (bytes)".into(),
                needed: self.reserved.saturating_add(size),
                available: self.free,
            }),
        }
    }

    /// After a whole-file source: nothing may follow what was declared.
    fn expect_end(&mut self, r: &mut dyn Read, src: &Source) -> Result<()> {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::invalid("source", format!("{src} is longer than it said"))),
            Err(e) => Err(Error::invalid("source", format!("{src}: {e}"))),
        }
    }
}

/// A source reader that counts what it reads into the job's progress, and stops at an abort (even
/// while an archive's unused entry is skipped). A failure of the source is a typed error carried
/// through the archive reader (a network failure is `Backend`, not bad input).
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cell: std::sync::Arc<crate::manager::jobs::JobCell>,
    source: String,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cell.abort.load(std::sync::atomic::Ordering::SeqCst) {
            let job = crate::sync::lock(&self.cell.record).id.to_string();
            return Err(std::io::Error::other(Error::Aborted { job }));
        }
        let n = self.inner.read(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof || e.kind() == std::io::ErrorKind::InvalidData {
                e // the source ended early or sent garbage: the archive's fault
            } else {
                std::io::Error::other(Error::backend(&self.source, format!("reading: {e}")))
            }
        })?;
        let done = self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed) + n as u64;
        crate::sync::lock(&self.cell.record).bytes_done = done;
        Ok(n)
    }
}

/// Fill `buf` from `r`; ending early is a truncated source.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the source ended early (truncated)",
                ))
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_error(path: &str, e: std::io::Error) -> Error {
    // The archive readers report their own typed errors through io errors' inner values.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return inner.clone();
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    Error::invalid("source", format!("reading {name}: {e}"))
}

/// Read a small text file of an archive.
fn read_text(data: &mut dyn Read, size: u64, max: u64, what: &str) -> Result<String> {
    if size > max {
        return Err(Error::invalid("archive", format!("{what} is {size} bytes, more than {max}")));
    }
    let mut buf = vec![0u8; size as usize];
    fill(data, &mut buf).map_err(|e| read_error(what, e))?;
    String::from_utf8(buf).map_err(|_| Error::invalid("archive", format!("{what} is not UTF-8 text")))
}

/// The name a file of an archive is stored under: a plain name that is not a configuration file's
/// (`*.cfg` names are the repository's own: see `config_files`).
fn data_name(path: &str) -> Result<String> {
    let base = base_name(path)?;
    if base.to_ascii_lowercase().ends_with(".cfg") {
        return Err(Error::invalid("archive", format!("{path:?}: a data file may not be named *.cfg")));
    }
    Ok(base)
}

/// The last component of an archive path, which must be a plain file name.
fn base_name(path: &str) -> Result<String> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let ok = !base.is_empty()
        && !base.starts_with('.')
        && base.len() <= 255
        && base.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if ok {
        Ok(base.to_owned())
    } else {
        Err(Error::invalid("archive", format!("{path:?}: file names are letters, digits and ._-+")))
    }
}

/// An ISO 9660 image has `CD001` at byte 32769 (the primary volume descriptor).
#[derive(Default)]
struct IsoCheck {
    magic: Vec<u8>,
}

impl IsoCheck {
    const AT: u64 = 32769;

    fn observe(&mut self, off: u64, b: &[u8]) {
        let end = off + b.len() as u64;
        if self.magic.len() >= 5 || end <= Self::AT || off >= Self::AT + 5 {
            return;
        }
        let from = (Self::AT + self.magic.len() as u64).saturating_sub(off) as usize;
        let to = ((Self::AT + 5).min(end) - off) as usize;
        if from < to {
            self.magic.extend_from_slice(&b[from..to]);
        }
    }

    fn ok(&self) -> bool {
        self.magic == b"CD001"
    }
}

/// A template's configuration built from its `vm.cfg`, with the files it uses.
struct BuiltTemplate {
    config: VmConfig,
    /// New disk id and the file it is, in mapping order.
    disks: Vec<(VirtualDiskId, String)>,
    /// Base names of the archive's files the template uses.
    used: std::collections::BTreeSet<String>,
}

fn template_config(
    cfg: &vmcfg::TemplateCfg,
    stored: &BTreeMap<String, (String, u64)>,
) -> Result<BuiltTemplate> {
    let mut config = VmConfig {
        domain_type: cfg.domain_type,
        vcpus: cfg.vcpus,
        max_vcpus: cfg.max_vcpus,
        memory_mib: cfg.memory_mib,
        max_memory_mib: cfg.max_memory_mib,
        os_type: cfg.os_type.clone(),
        // A PV template's framebuffer (HVM guests always have a screen; PVH ones cannot).
        framebuffer: cfg.framebuffer && cfg.domain_type == DomainType::Pv,
        ..VmConfig::default()
    };
    let defaults = RestartActions::default();
    config.restart_actions = RestartActions {
        on_poweroff: cfg.on_poweroff.unwrap_or(defaults.on_poweroff),
        on_reboot: cfg.on_reboot.unwrap_or(defaults.on_reboot),
        on_crash: cfg.on_crash.unwrap_or(defaults.on_crash),
    };
    let mut disks = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for d in &cfg.disks {
        let slot = crate::xen::naming::disk_slot(&d.device).ok_or_else(|| {
            Error::invalid("vm.cfg", format!("disk device {:?} is not a Xen disk name", d.device))
        })?;
        let base = d.file.rsplit('/').next().unwrap_or("").to_owned();
        if !d.cdrom && used.contains(&base) {
            return Err(Error::invalid("vm.cfg", format!("disk file {base:?} is mapped twice")));
        }
        let target = match stored.get(&base) {
            Some(_) if !d.cdrom => {
                let id = VirtualDiskId::new();
                disks.push((id, base.clone()));
                used.insert(base);
                DiskTarget::VirtualDisk(id)
            }
            _ if d.cdrom => DiskTarget::EmptyCdrom,
            _ => {
                return Err(Error::invalid(
                    "vm.cfg",
                    format!("disk {:?} ({}) is not in the archive", d.file, d.device),
                ))
            }
        };
        config.disks.push(DiskMapping { slot, target });
    }
    config.vnics =
        cfg.vifs.iter().enumerate().map(|(i, _)| Vnic { mac: format_mac(i as u64), network: None }).collect();
    if let Some(k) = &cfg.kernel {
        let from_archive = |p: &str| {
            let base = p.rsplit('/').next().unwrap_or("");
            stored.get(base).map(|(path, _)| (base.to_owned(), path.clone()))
        };
        // Only the archive's own files: a path on the server would have dom0 load whatever it
        // names (a key, a password file) into the guest.
        let kernel = match from_archive(k) {
            Some((base, path)) => {
                used.insert(base);
                path
            }
            None => return Err(Error::invalid("vm.cfg", format!("kernel {k:?} is not in the archive"))),
        };
        let initrd = match cfg.ramdisk.as_deref() {
            None => None,
            Some(rd) => Some(match from_archive(rd) {
                Some((base, path)) => {
                    used.insert(base);
                    path
                }
                None => {
                    return Err(Error::invalid("vm.cfg", format!("ramdisk {rd:?} is not in the archive")))
                }
            }),
        };
        config.pv_kernel = Some(PvKernel { kernel, initrd, cmdline: cfg.extra.clone().unwrap_or_default() });
    }
    config.check()?;
    Ok(BuiltTemplate { config, disks, used })
}

/// What an assembly's source held: its descriptor, manifest and the files stored.
struct AssemblyFiles {
    envelope: ovf::Envelope,
    /// The descriptor's name and bytes.
    descriptor: (String, Vec<u8>),
    manifest: Option<manifest::Manifest>,
    /// File name → (path in the repository, size, digests by algorithm).
    stored: HashMap<String, (String, u64, Digests)>,
}

/// Digests of a file as it streamed, by algorithm.
#[derive(Default)]
struct Digests(Vec<(manifest::DigestAlg, String)>);

impl Digests {
    fn get(&self, alg: manifest::DigestAlg) -> Option<&str> {
        self.0.iter().find(|(a, _)| *a == alg).map(|(_, h)| h.as_str())
    }
}

const ALL_ALGS: [manifest::DigestAlg; 3] =
    [manifest::DigestAlg::Sha1, manifest::DigestAlg::Sha256, manifest::DigestAlg::Sha512];

impl AssemblyFiles {
    /// Check every file the manifest lists, and that every disk's file arrived.
    fn verify(&self) -> Result<()> {
        for d in &self.envelope.disks {
            if let Some(f) = &d.file_ref {
                let file =
                    self.envelope.files.iter().find(|x| &x.id == f).map(|x| x.href.as_str()).unwrap_or(f);
                if !self.stored.contains_key(file) {
                    return Err(Error::invalid(
                        "ovf",
                        format!("disk {} names file {file:?}, which is missing", d.id),
                    ));
                }
            }
        }
        let Some(m) = &self.manifest else { return Ok(()) };
        for (file, want) in &m.entries {
            let got = if *file == self.descriptor.0 {
                let mut h = manifest::Hasher::new(want.alg);
                h.update(&self.descriptor.1);
                Some(h.finish())
            } else {
                self.stored.get(file).and_then(|(_, _, d)| d.get(want.alg).map(str::to_owned))
            };
            match got {
                Some(g) if g == want.hex => {}
                Some(g) => {
                    return Err(Error::invalid(
                        "manifest",
                        format!("{file}: checksum {g} does not match the manifest's {}", want.hex),
                    ))
                }
                None => {
                    return Err(Error::invalid(
                        "manifest",
                        format!("it lists {file:?}, which is not in the assembly"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The digests to compute for `file`: the manifest's algorithm when it is known, else all.
    fn algs_for(&self, file: &str) -> Vec<manifest::DigestAlg> {
        match &self.manifest {
            Some(m) => m.entries.iter().filter(|(f, _)| f == file).map(|(_, d)| d.alg).collect(),
            None => ALL_ALGS.to_vec(),
        }
    }
}

/// Stream one referenced file of an assembly into the repository, hashing it.
fn store_hashed(
    imp: &mut Importer<'_>,
    got: &mut AssemblyFiles,
    href: &str,
    dir: &str,
    size: u64,
    data: &mut dyn Read,
) -> Result<()> {
    let base = data_name(href)?;
    if got.stored.contains_key(&base) {
        return Err(Error::invalid("ovf", format!("file {base:?} arrives twice")));
    }
    if let Some(f) = got.envelope.files.iter().find(|f| f.href == base) {
        if f.size.is_some_and(|s| s != size) {
            return Err(Error::invalid(
                "ovf",
                format!("{base} is {size} bytes, the descriptor says {}", f.size.unwrap_or_default()),
            ));
        }
    }
    let mut hashers: Vec<(manifest::DigestAlg, manifest::Hasher)> =
        got.algs_for(&base).into_iter().map(|a| (a, manifest::Hasher::new(a))).collect();
    let path = format!("{dir}/{base}");
    imp.store(&path, size, data, &mut |_, b| hashers.iter_mut().for_each(|(_, h)| h.update(b)))?;
    let digests = Digests(hashers.into_iter().map(|(a, h)| (a, h.finish())).collect());
    got.stored.insert(base, (path, size, digests));
    Ok(())
}

fn parse_descriptor(name: &str, bytes: Vec<u8>) -> Result<AssemblyFiles> {
    let envelope = ovf::parse(&bytes)?;
    for d in &envelope.disks {
        if d.format != ovf::DiskFileFormat::Raw && d.file_ref.is_some() {
            return Err(Error::Unsupported {
                what: format!(
                    "disk {} is {:?}: ovm imports raw disk images only (no image converter is used)",
                    d.id, d.format
                ),
            });
        }
    }
    Ok(AssemblyFiles {
        envelope,
        descriptor: (name.to_owned(), bytes),
        manifest: None,
        stored: HashMap::new(),
    })
}

/// An OVA: a tar archive whose first file is the descriptor, then the manifest, then the files.
fn read_ova(imp: &mut Importer<'_>, src: &Source, dir: &str) -> Result<AssemblyFiles> {
    let (reader, _) = imp.open(src, true)?;
    let mut got: Option<AssemblyFiles> = None;
    tar::for_each_entry(reader, &tar::TarLimits::default(), |entry, data| {
        if entry.kind != tar::TarKind::File {
            return Ok(());
        }
        let base = base_name(&entry.path)?;
        let Some(g) = got.as_mut() else {
            if !base.to_ascii_lowercase().ends_with(".ovf") {
                return Err(Error::invalid(
                    "archive",
                    format!("an OVA begins with its .ovf descriptor, not {base:?}"),
                ));
            }
            let text = read_text(data, entry.size, ovf::MAX_DESCRIPTOR as u64, &base)?;
            imp.count();
            got = Some(parse_descriptor(&base, text.into_bytes())?);
            return Ok(());
        };
        let lower = base.to_ascii_lowercase();
        if lower.ends_with(".mf") {
            // OVF 2.0 lets the manifest follow the descriptor or end the archive: files that came
            // before it were hashed with every algorithm.
            if g.manifest.is_some() {
                return Err(Error::invalid("archive", "two manifests"));
            }
            let text = read_text(data, entry.size, 1 << 20, &base)?;
            imp.count();
            g.manifest = Some(manifest::parse(&text)?);
            return Ok(());
        }
        if !g.envelope.files.iter().any(|f| f.href == base) {
            imp.ctx.message(format!("skipped {base}: the descriptor does not name it"));
            return Ok(());
        }
        store_hashed(imp, g, &base, dir, entry.size, data)
    })?;
    imp.count();
    got.ok_or_else(|| Error::invalid("archive", "no .ovf descriptor in the archive"))
}

/// An OVF descriptor with its manifest (`NAME.mf`, if there is one) and files beside it.
fn read_ovf_files(imp: &mut Importer<'_>, src: &Source, dir: &str) -> Result<AssemblyFiles> {
    let name = base_name(src.file_name())?;
    let (reader, length) = imp.open(src, true)?;
    let mut text = Vec::new();
    reader
        .take(ovf::MAX_DESCRIPTOR as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::invalid("source", format!("{src}: {e}")))?;
    if text.len() > ovf::MAX_DESCRIPTOR {
        return Err(Error::invalid("ovf", format!("the descriptor is over {} bytes", ovf::MAX_DESCRIPTOR)));
    }
    imp.count();
    let text_len = text.len() as u64;
    let mut got = parse_descriptor(&name, text)?;
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
    let mf = src.sibling(&format!("{stem}.mf"))?;
    if let Some(mut m) = open_if_there(&mf)? {
        let mut text = Vec::new();
        (&mut m.reader)
            .take(manifest::MAX_MANIFEST as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|e| read_error("manifest", e))?;
        if text.len() > manifest::MAX_MANIFEST {
            return Err(Error::invalid("manifest", format!("{mf} is over {} bytes", manifest::MAX_MANIFEST)));
        }
        let text = String::from_utf8(text).map_err(|_| Error::invalid("manifest", "not UTF-8 text"))?;
        got.manifest = Some(manifest::parse(&text)?);
    }
    imp.total = got
        .envelope
        .files
        .iter()
        .filter_map(|f| f.size)
        .try_fold(length.unwrap_or(text_len), |a, b| a.checked_add(b));
    let files: Vec<String> = got.envelope.files.iter().map(|f| f.href.clone()).collect();
    for href in files {
        let s = src.sibling(&href)?;
        let (mut reader, length) = imp.open(&s, false)?;
        let size =
            length.ok_or_else(|| Error::invalid("source", format!("{s} does not say how long it is")))?;
        store_hashed(imp, &mut got, &href, dir, size, &mut reader)?;
        imp.expect_end(&mut reader, &s)?;
    }
    Ok(got)
}

/// Open `src` if it exists: a missing file (or an HTTP 404) is `None`; any other failure is an
/// error (a manifest that cannot be read must not silently go unchecked).
fn open_if_there(src: &Source) -> Result<Option<super::source::Opened>> {
    match src {
        Source::Path(p) if !std::path::Path::new(p).exists() => Ok(None),
        _ => match src.open() {
            Ok(o) => Ok(Some(o)),
            Err(e) if matches!(src, Source::Url(_)) && e.to_string().contains("HTTP 404") => Ok(None),
            Err(e) => Err(e),
        },
    }
}

struct Records {
    assembly: Assembly,
    disks: Vec<VirtualDisk>,
    templates: Vec<Template>,
}

/// The assembly, its disks (grown to their capacity, or made empty) and one template per system.
fn assembly_records(
    imp: &mut Importer<'_>,
    got: &AssemblyFiles,
    aid: AssemblyId,
    aname: &str,
    dir: &str,
    src: &Source,
) -> Result<Records> {
    let repo = RepositoryId(imp.repo.id);
    let mut by_ovf_id = HashMap::new();
    let mut disks = Vec::new();
    let mut files_used = std::collections::BTreeSet::new();
    for d in &got.envelope.disks {
        let id = VirtualDiskId::new();
        let (path, size) = match &d.file_ref {
            Some(f) => {
                let href =
                    got.envelope.files.iter().find(|x| &x.id == f).map(|x| x.href.as_str()).unwrap_or(f);
                if !files_used.insert(href.to_owned()) {
                    return Err(Error::invalid("ovf", format!("file {href:?} is the file of two disks")));
                }
                let (path, size, _) = got.stored.get(href).ok_or_else(|| {
                    Error::invalid("ovf", format!("disk {} names file {href:?}, which is missing", d.id))
                })?;
                if *size > d.capacity_bytes {
                    return Err(Error::invalid(
                        "ovf",
                        format!(
                            "disk {}: its file is {size} bytes, more than its capacity {}",
                            d.id, d.capacity_bytes
                        ),
                    ));
                }
                if *size < d.capacity_bytes {
                    imp.reserve(d.capacity_bytes - size)?;
                    imp.fs().resize_file(path, d.capacity_bytes)?;
                }
                (path.clone(), d.capacity_bytes)
            }
            None => {
                let name = format!("{}.img", base_name(&d.id)?);
                if got.stored.contains_key(&name) {
                    return Err(Error::invalid(
                        "ovf",
                        format!("disk {} would overwrite file {name:?}", d.id),
                    ));
                }
                let path = format!("{dir}/{name}");
                imp.store(&path, 0, &mut std::io::empty(), &mut |_, _| {})?;
                imp.reserve(d.capacity_bytes)?;
                imp.fs().resize_file(&path, d.capacity_bytes)?;
                (path, d.capacity_bytes)
            }
        };
        disks.push(VirtualDisk {
            id,
            name: format!("{aname}-{}", d.id),
            description: format!("disk {} of assembly {aname}", d.id),
            repository: repo,
            size_bytes: size,
            format: DiskFormat::Sparse,
            shareable: false,
            path,
        });
        by_ovf_id.insert(d.id.clone(), id);
    }
    // Files no disk uses (an NVRAM, an ISO for the CD drive) are not kept.
    for (name, (path, size, _)) in &got.stored {
        if !files_used.contains(name) {
            imp.fs().delete_file(path)?;
            imp.reserved = imp.reserved.saturating_sub(*size);
            imp.ctx.message(format!("left out {name}: no disk uses it"));
        }
    }
    let mut templates = Vec::new();
    for s in &got.envelope.systems {
        let mut config = VmConfig {
            domain_type: DomainType::Hvm,
            vcpus: s.vcpus,
            max_vcpus: s.vcpus,
            memory_mib: s.memory_mib,
            max_memory_mib: s.memory_mib,
            os_type: s.os.clone().unwrap_or_default(),
            ..VmConfig::default()
        };
        let mut own = Vec::new();
        for (slot, d) in s.disks.iter().enumerate() {
            let id = *by_ovf_id.get(d).ok_or_else(|| Error::invalid("ovf", format!("unknown disk {d}")))?;
            own.push(id);
            config.disks.push(DiskMapping { slot: slot as u8, target: DiskTarget::VirtualDisk(id) });
        }
        if s.cdrom {
            let slot = (config.disks.len() as u8).max(2);
            config.disks.push(DiskMapping { slot, target: DiskTarget::EmptyCdrom });
        }
        config.vnics = s
            .nics
            .iter()
            .enumerate()
            .map(|(i, _)| Vnic { mac: format_mac(i as u64), network: None })
            .collect();
        config.check()?;
        templates.push(Template {
            id: TemplateId::new(),
            name: s.name.clone(),
            description: format!("from assembly {aname}"),
            repository: repo,
            config,
            disks: own,
            from_assembly: Some(aid),
            from_vm: None,
        });
    }
    let assembly = Assembly {
        id: aid,
        name: aname.to_owned(),
        description: String::new(),
        repository: repo,
        source_url: src.to_string(),
        vm_names: got.envelope.systems.iter().map(|s| s.name.clone()).collect(),
        disks: disks.iter().map(|d| d.id).collect(),
    };
    Ok(Records { assembly, disks, templates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iso_magic_is_found_across_chunks() {
        let mut img = vec![0u8; 40000];
        img[32769..32774].copy_from_slice(b"CD001");
        for chunk in [1usize, 7, 4096, 32770, 40000] {
            let mut c = IsoCheck::default();
            for (i, b) in img.chunks(chunk).enumerate() {
                c.observe((i * chunk) as u64, b);
            }
            assert!(c.ok(), "chunk {chunk}");
        }
        let mut c = IsoCheck::default();
        c.observe(0, &[0u8; 40000]);
        assert!(!c.ok());
    }

    #[test]
    fn archive_names_are_plain() {
        assert_eq!(base_name("dir/System.img").unwrap(), "System.img");
        for bad in ["a/.hidden", "a/b c", "a/", "x/é.img"] {
            assert!(base_name(bad).is_err(), "{bad}");
        }
    }
}
