//! `ovm`: administer ovm from a shell (see `ovm --help` and the `ovm_core::cli` module).

fn main() {
    std::process::exit(ovm_core::cli::main_with(std::env::args_os()));
}
