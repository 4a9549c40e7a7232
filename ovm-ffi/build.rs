//! Give the shared library a versioned SONAME (`libovm.so.MAJOR.MINOR` while the major version is 0,
//! since 0.x releases make no ABI promise between minor versions).
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let soname = if major == "0" { format!("libovm.so.0.{minor}") } else { format!("libovm.so.{major}") };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
