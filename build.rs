//! Link options of the binary.

fn main() {
    // glibc (2.36 and later, Debian 12 on) applies packed relative relocations (DT_RELR):
    // the 60,000 relocations of this position-independent binary shrink from 1.4 MB of
    // `.rela.dyn` to 15 KB, which the loader reads at every start (about 2 MiB less peak
    // RSS and ~2 ms less start-up; docs/benchmarks.md). musl 1.2.3, which the static image
    // binary is built with, predates DT_RELR: not there.
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bin=aosm-artifact-operator=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
