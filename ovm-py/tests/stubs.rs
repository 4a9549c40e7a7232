//! The inventory record classes' stubs in `python/ovm/_ovm.pyi` are the text their `record!`
//! declarations generate. Regenerate the section with `OVM_BLESS_STUBS=1 cargo test -p ovm-py --test stubs`.

const PYI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/ovm/_ovm.pyi");
const BEGIN: &str =
    "# ---- inventory records: generated from ovm-py/src/records/inventory.rs, do not edit ----\n";
const END: &str = "# ---- end of inventory records ----\n";

fn split(pyi: &str) -> (&str, &str, &str) {
    let a = pyi.find(BEGIN).expect("the generated-records begin marker is in _ovm.pyi") + BEGIN.len();
    let b = pyi.find(END).expect("the generated-records end marker is in _ovm.pyi");
    (&pyi[..a], &pyi[a..b], &pyi[b..])
}

#[test]
fn inventory_record_stubs_are_generated_from_the_declarations() {
    let pyi = std::fs::read_to_string(PYI).expect("_ovm.pyi");
    let (head, section, tail) = split(&pyi);
    let want = format!("\n{}\n", ovm_py::records::record_stubs());
    if std::env::var_os("OVM_BLESS_STUBS").is_some() {
        std::fs::write(PYI, format!("{head}{want}{tail}")).expect("write _ovm.pyi");
        return;
    }
    assert!(
        section == want,
        "the inventory record stubs in _ovm.pyi drifted from their record! declarations; \
         run OVM_BLESS_STUBS=1 cargo test -p ovm-py --test stubs\n--- committed ---\n{section}\n--- generated ---\n{want}"
    );
}

#[test]
fn every_inventory_kind_has_a_record_class_listed_in_all() {
    let pyi = std::fs::read_to_string(PYI).expect("_ovm.pyi");
    for kind in ovm_core::model::ObjectKind::ALL {
        if matches!(kind, ovm_core::model::ObjectKind::Job | ovm_core::model::ObjectKind::Event) {
            continue;
        }
        assert!(ovm_py::records::NAMES.contains(&kind.name()), "no record class for {kind}");
        assert!(pyi.contains(&format!("    \"{}\",\n", kind.name())), "{kind} is missing from __all__");
    }
}
