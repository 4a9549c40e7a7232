use super::*;
use crate::model::*;

const ORACLE_TEMPLATE: &str = r#"bootloader = '/usr/bin/pygrub'
disk = ['file:/OVS/Repositories/0004fb0000030000aaaa/VirtualDisks/0004fb0000120000bbbb.img,xvda,w', 'file:/OVS/Repositories/x/ISOs/y.iso,xvdc:cdrom,r']
memory = 2048
maxmem = 4096
name = '0004fb00000600001234'
OVM_simple_name = 'OL7 template'
OVM_os_type = 'Oracle Linux 7'
OVM_domain_type = 'xen_pvm'
vcpus = 2
vif = ['mac=00:21:f6:00:00:01,bridge=0a0a0a00', 'bridge=xenbr0']
on_crash = 'restart'
vfb = ['type=vnc,vncunused=1,vnclisten=127.0.0.1,keymap=en-us']
"#;

fn refused(text: &str, needle: &str) {
    match VmCfg::parse(text) {
        Err(Error::InvalidArgument { field, reason }) => {
            assert_eq!(field, "vm.cfg");
            assert!(reason.contains(needle), "{reason:?} should mention {needle:?}");
        }
        other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn oracle_vm_template() {
    let t = template_from_cfg(&VmCfg::parse(ORACLE_TEMPLATE).unwrap()).unwrap();
    assert_eq!(t.name.as_deref(), Some("OL7 template"));
    assert_eq!(t.os_type, "Oracle Linux 7");
    assert_eq!(t.description, "");
    assert_eq!(t.domain_type, DomainType::Pv);
    assert_eq!((t.memory_mib, t.max_memory_mib, t.vcpus, t.max_vcpus), (2048, 4096, 2, 2));
    assert_eq!(
        t.disks,
        [
            CfgDisk {
                file: "/OVS/Repositories/0004fb0000030000aaaa/VirtualDisks/0004fb0000120000bbbb.img".into(),
                kind: CfgDiskKind::File,
                device: "xvda".into(),
                cdrom: false,
                writable: true,
            },
            CfgDisk {
                file: "/OVS/Repositories/x/ISOs/y.iso".into(),
                kind: CfgDiskKind::File,
                device: "xvdc".into(),
                cdrom: true,
                writable: false,
            },
        ]
    );
    assert_eq!(
        t.vifs,
        [
            CfgVif { mac: Some("00:21:f6:00:00:01".into()), bridge: Some("0a0a0a00".into()) },
            CfgVif { mac: None, bridge: Some("xenbr0".into()) },
        ]
    );
    assert_eq!(t.bootloader.as_deref(), Some("/usr/bin/pygrub"));
    assert!(t.framebuffer, "its vfb");
    assert_eq!((t.on_crash, t.on_reboot, t.on_poweroff), (Some(RestartAction::Restart), None, None));
    assert_eq!((t.kernel, t.ramdisk, t.extra), (None, None, None));
}

#[test]
fn xl_disks_and_domain_types() {
    let text = r#"
# An xl guest
type = "hvm"
memory = 1024
vcpus = 4
maxvcpus = 8
disk = [ 'format=raw, vdev=xvda, access=rw, target=/srv/guest,1.img',
         "phy:/dev/vg/lv,hda,w",   # a comment inside a list
         'tap:aio:/srv/x.img,xvdb,r',
         ',hdc:cdrom,r',
         'vdev=xvdd, devtype=cdrom, access=ro, target=/srv/a.iso',
       ]
kernel = "/boot/vmlinuz"
root = "/dev/xvda1"
extra = "console=hvc0"
on_poweroff = 'preserve'
"#;
    let t = template_from_cfg(&VmCfg::parse(text).unwrap()).unwrap();
    assert_eq!(t.domain_type, DomainType::Hvm);
    assert_eq!((t.vcpus, t.max_vcpus, t.max_memory_mib), (4, 8, 1024));
    let d: Vec<_> =
        t.disks.iter().map(|d| (d.file.as_str(), d.kind, d.device.as_str(), d.cdrom, d.writable)).collect();
    assert_eq!(
        d,
        [
            ("/srv/guest,1.img", CfgDiskKind::File, "xvda", false, true),
            ("/dev/vg/lv", CfgDiskKind::Phy, "hda", false, true),
            ("/srv/x.img", CfgDiskKind::Other, "xvdb", false, false),
            ("", CfgDiskKind::File, "hdc", true, false),
            ("/srv/a.iso", CfgDiskKind::File, "xvdd", true, false),
        ]
    );
    assert_eq!(t.extra.as_deref(), Some("root=/dev/xvda1 console=hvc0"));
    assert_eq!(t.on_poweroff, Some(RestartAction::Preserve));
    for (line, want) in [
        ("OVM_domain_type = 'xen_hvm_pv'", DomainType::PvHvm),
        ("OVM_domain_type = 'hvm'", DomainType::Hvm),
        ("type = 'pvh'", DomainType::Pvh),
        ("builder = 'hvm'", DomainType::Hvm),
        ("builder = 'generic'", DomainType::Pv),
    ] {
        let cfg = VmCfg::parse(&format!("memory = 512\n{line}\n")).unwrap();
        assert_eq!(template_from_cfg(&cfg).unwrap().domain_type, want, "{line}");
    }
}

#[test]
fn bad_templates_are_refused() {
    for (text, needle) in [
        ("vcpus = 1", "no memory"),
        ("memory = 0", "memory must be positive"),
        ("memory = 512\nvcpus = 0", "vcpus must be 1..=512"),
        ("memory = 512\nvcpus = 513", "vcpus must be 1..=512"),
        ("memory = 512\ndisk = ['file:/a.img,,w']", "no device"),
        ("memory = 512\ndisk = ['file:/a.img']", "not of the form"),
        ("memory = 512\ndisk = ['file:/a.img,xvda,x']", "access mode"),
        ("memory = 512\nOVM_domain_type = 'ldoms_pvm'", "SPARC"),
        ("memory = 512\non_crash = 'explode'", "restart action"),
        ("memory = '512'", "must be an integer"),
        ("memory = 512\nvif = ['nonsense']", "not key=value"),
    ] {
        match template_from_cfg(&VmCfg::parse(text).unwrap()) {
            Err(Error::InvalidArgument { reason, .. }) => {
                assert!(reason.contains(needle), "{text}: {reason:?} should mention {needle:?}")
            }
            other => panic!("{text}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn syntax_values() {
    let cfg = VmCfg::parse(
        "a = 'x\\'y\\n\\\\'\nb=\"q\\\"\"; c = -42\nd = True\ne = False\nf = []\ng=[1,'two',\n True ,]\n",
    )
    .unwrap();
    assert_eq!(cfg.str("a").unwrap(), Some("x'y\n\\"));
    assert_eq!(cfg.str("b").unwrap(), Some("q\""));
    assert_eq!(cfg.int("c").unwrap(), Some(-42));
    assert_eq!(cfg.bool("d").unwrap(), Some(true));
    assert_eq!(cfg.bool("e").unwrap(), Some(false));
    assert_eq!(cfg.list("f").unwrap(), Some(&[][..]));
    assert_eq!(cfg.list("g").unwrap().unwrap(), [Value::Int(1), Value::Str("two".into()), Value::Bool(true)]);
    assert!(cfg.int("a").is_err() && cfg.str("c").is_err() && cfg.list("a").is_err());
    assert_eq!(cfg.get("zz"), None);
}

#[test]
fn malformed_files_are_refused() {
    refused("a = 'open", "unterminated string");
    refused("a = 'open\n'", "unterminated string");
    refused("a = [[1]]", "lists inside lists");
    refused("a = [1, 2", "unterminated list");
    refused("a = 1\na = 2", "given twice");
    refused("1a = 1", "expected a key");
    refused("a-b = 1", "expected '='");
    refused("a = yes", "not a value");
    refused("a = 1 + 2", "unexpected");
    refused("a = 99999999999999999999", "not an integer");
    refused("a = '\\q'", "unknown escape");
    refused(&format!("a = '{}'", "x".repeat(70 * 1024)), "longer than 65536");
    refused(&format!("# {}", "x".repeat(300 * 1024)), "larger than 262144");
    let many: String = (0..1001).map(|i| format!("k{i} = {i}\n")).collect();
    refused(&many, "more than 1000 keys");
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
    fn text(&mut self) -> String {
        const POOL: &[char] = &[
            'a', 'Z', '0', ' ', '\'', '"', '\\', '\n', '\r', '\t', '#', '[', ']', ',', '=', 'é', '日', '🚀',
            '\u{1}', ';',
        ];
        (0..self.below(12)).map(|_| POOL[self.below(POOL.len() as u64) as usize]).collect()
    }
    fn name(&mut self) -> String {
        let names = ["web01", "My VM", "日本語", "x-y.z_1", "-dash", "a'b\"c"];
        let n = names[self.below(names.len() as u64) as usize];
        format!("{n}{}", self.below(100))
    }
    fn scalar(&mut self) -> Value {
        match self.below(3) {
            0 => Value::Str(self.text()),
            1 => Value::Int(self.next() as i64 >> self.below(64)),
            _ => Value::Bool(self.coin()),
        }
    }
    fn u64(&mut self) -> u64 {
        self.next() >> self.below(64)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.coin() {
            Some(f(self))
        } else {
            None
        }
    }
}

#[test]
fn render_then_parse_is_the_identity() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..500 {
        let mut cfg = VmCfg::default();
        for i in 0..rng.below(8) {
            let key = format!("{}{i}", rng.pick(&["k", "_", "OVM_x", "Key_"]));
            let value = if rng.coin() {
                rng.scalar()
            } else {
                Value::List((0..rng.below(5)).map(|_| rng.scalar()).collect())
            };
            cfg.entries.push((key, value));
        }
        let text = cfg.render();
        assert_eq!(VmCfg::parse(&text).unwrap(), cfg, "{text}");
    }
}

fn config(rng: &mut Rng) -> VmConfig {
    let vcpus = 1 + rng.below(8) as u32;
    let memory_mib = 32 + rng.u64() / 2;
    let targets = |rng: &mut Rng| match rng.below(4) {
        0 => DiskTarget::VirtualDisk(VirtualDiskId::new()),
        1 => DiskTarget::Cdrom(VirtualCdromId::new()),
        2 => DiskTarget::EmptyCdrom,
        _ => DiskTarget::PhysicalDisk(PhysicalDiskId::new()),
    };
    let c = VmConfig {
        domain_type: rng.pick(&[DomainType::Pv, DomainType::Hvm, DomainType::PvHvm, DomainType::Pvh]),
        vcpus,
        max_vcpus: vcpus + rng.below(8) as u32,
        memory_mib,
        max_memory_mib: memory_mib + rng.below(1 << 20),
        disks: (0..rng.below(5))
            .map(|slot| DiskMapping { slot: slot as u8 * 3, target: targets(rng) })
            .collect(),
        vnics: (0..rng.below(4))
            .map(|i| Vnic {
                mac: format_mac(0x00_16_3e_00_00_00 + i),
                network: rng.opt(|_| NetworkId::new()),
            })
            .collect(),
        boot_order: (0..rng.below(4))
            .map(|_| rng.pick(&[BootDevice::Disk, BootDevice::Cdrom, BootDevice::Network]))
            .collect(),
        high_availability: rng.coin(),
        os_type: rng.text(),
        restart_actions: RestartActions {
            on_poweroff: rng.pick(&[RestartAction::Destroy, RestartAction::Restart, RestartAction::Preserve]),
            on_reboot: rng.pick(&[RestartAction::Destroy, RestartAction::Restart, RestartAction::Preserve]),
            on_crash: rng.pick(&[RestartAction::Destroy, RestartAction::Restart, RestartAction::Preserve]),
        },
        pv_kernel: rng.opt(|r| PvKernel {
            kernel: format!("/boot/{}k", r.text()),
            initrd: r.opt(Rng::text),
            cmdline: r.text(),
        }),
        start_priority: 1 + rng.below(100) as u8,
        framebuffer: rng.coin(),
        network_boot: rng.opt(|r| NetworkBoot {
            url: format!("http://install.example/{}", r.below(1000)),
            cmdline: format!("inst.repo={}", r.name()),
        }),
    };
    // Only PV guests have a framebuffer; only PV and PVH guests boot from an install tree.
    let pv = matches!(c.domain_type, DomainType::Pv | DomainType::Pvh);
    VmConfig {
        framebuffer: c.framebuffer && c.domain_type == DomainType::Pv,
        network_boot: c.network_boot.clone().filter(|_| pv),
        ..c
    }
}

#[test]
fn ovm_files_round_trip() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..300 {
        let vm = Vm {
            id: VmId::new(),
            name: rng.name(),
            description: rng.text(),
            config: config(&mut rng),
            repository: rng.opt(|_| RepositoryId::new()),
            pool: rng.opt(|_| PoolId::new()),
            server: None,
            power_state: PowerState::Stopped,
            domid: None,
            anti_affinity_group: rng.opt(|_| AntiAffinityGroupId::new()),
        };
        vm.check().unwrap();
        let text = render_vm(&vm);
        assert!(text.starts_with("# ovm vm configuration, kept current by the manager\n"));
        assert_eq!(parse_vm(&text).unwrap(), vm, "{text}");
        // Runtime state is not stored.
        let running = Vm {
            server: Some(ServerId::new()),
            power_state: PowerState::Running,
            domid: Some(7),
            ..vm.clone()
        };
        assert_eq!(parse_vm(&render_vm(&running)).unwrap(), vm);

        let t = Template {
            id: TemplateId::new(),
            name: rng.name(),
            description: rng.text(),
            repository: RepositoryId::new(),
            config: config(&mut rng),
            disks: (0..rng.below(3)).map(|_| VirtualDiskId::new()).collect(),
            from_assembly: rng.opt(|_| AssemblyId::new()),
            from_vm: rng.opt(|_| VmId::new()),
        };
        assert_eq!(parse_template(&render_template(&t)).unwrap(), t);

        let d = VirtualDisk {
            id: VirtualDiskId::new(),
            name: rng.name(),
            description: rng.text(),
            repository: RepositoryId::new(),
            size_bytes: 1 + rng.u64() / 2,
            format: rng.pick(&[DiskFormat::Raw, DiskFormat::Sparse, DiskFormat::Qcow2]),
            shareable: rng.coin(),
            path: rng.text(),
        };
        assert_eq!(parse_disk(&render_disk(&d)).unwrap(), d);

        let c = VirtualCdrom {
            id: VirtualCdromId::new(),
            name: rng.name(),
            description: rng.text(),
            repository: RepositoryId::new(),
            size_bytes: rng.u64(),
            path: rng.text(),
        };
        assert_eq!(parse_iso(&render_iso(&c)).unwrap(), c);

        let a = Assembly {
            id: AssemblyId::new(),
            name: rng.name(),
            description: rng.text(),
            repository: RepositoryId::new(),
            source_url: rng.text(),
            vm_names: (0..rng.below(3)).map(|_| rng.text()).collect(),
            disks: (0..rng.below(3)).map(|_| VirtualDiskId::new()).collect(),
        };
        assert_eq!(parse_assembly(&render_assembly(&a)).unwrap(), a);
    }
}

#[test]
fn ovm_file_keys_follow_xen_where_it_has_them() {
    let mut config = VmConfig { domain_type: DomainType::PvHvm, ..VmConfig::default() };
    config.vnics.push(Vnic { mac: "00:16:3e:00:00:01".into(), network: None });
    let vm = Vm {
        id: VmId::new(),
        name: "web01".into(),
        description: String::new(),
        config,
        repository: None,
        pool: None,
        server: None,
        power_state: PowerState::Stopped,
        domid: None,
        anti_affinity_group: None,
    };
    let cfg = VmCfg::parse(&render_vm(&vm)).unwrap();
    assert_eq!(cfg.str("name").unwrap(), Some("web01"));
    assert_eq!(cfg.str("type").unwrap(), Some("hvm"));
    assert_eq!(cfg.str("OVM_domain_type").unwrap(), Some("xen_hvm_pv"));
    assert_eq!(cfg.int("memory").unwrap(), Some(512));
    assert_eq!(cfg.list("vif").unwrap().unwrap(), [Value::Str("mac=00:16:3e:00:00:01,bridge=".into())]);
    let unsafe_name = Vm { name: "My VM".into(), ..vm.clone() };
    let cfg = VmCfg::parse(&render_vm(&unsafe_name)).unwrap();
    assert_eq!(cfg.str("name").unwrap(), Some(vm.id.to_string().as_str()));
    // An Oracle template is read as a template too.
    assert_eq!(template_from_cfg(&cfg).unwrap().domain_type, DomainType::PvHvm);
}

#[test]
fn bad_ovm_files_are_refused() {
    assert!(parse_vm("uuid = 'nope'").is_err());
    assert!(parse_disk("OVM_simple_name = 'd'").is_err());
    let vm = Vm {
        id: VmId::new(),
        name: "v".into(),
        description: String::new(),
        config: VmConfig::default(),
        repository: None,
        pool: None,
        server: None,
        power_state: PowerState::Stopped,
        domid: None,
        anti_affinity_group: None,
    };
    let text = render_vm(&vm).replace("\nvcpus = 1\n", "\nvcpus = 2\n");
    assert!(parse_vm(&text).is_err(), "vcpus above maxvcpus must be refused");
    let text = render_vm(&vm).replace("OVM_disks = []", "OVM_disks = ['0:tape:x']");
    assert!(parse_vm(&text).is_err());
}
