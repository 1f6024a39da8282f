//! Release builds only: lay out the functions a running gateway uses first and together in the
//! binary's code, so fewer code pages become resident (bench/text_order.py says how and why).
//!
//! The rule it keeps: the layout is an optimisation, never a build requirement. The order file goes
//! to the linker only where that linker is known to take it: the x86_64 Linux target with rustc
//! 1.90 or later, whose default linker is LLD (`--symbol-ordering-file`), and no linker chosen by
//! hand. Anywhere else, or with `AUTHGATE_TEXT_ORDER=off`, the build is the ordinary one.
#![forbid(unsafe_code)]

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join("text-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=AUTHGATE_TEXT_ORDER");
    let wanted = env::var("PROFILE").as_deref() == Ok("release")
        && env::var("AUTHGATE_TEXT_ORDER").as_deref() != Ok("off")
        && env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && order.is_file();
    if wanted && linker_is_default_lld() {
        println!(
            "cargo:rustc-link-arg-bin=authgate=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Functions named in the file that this build does not have (renamed, inlined) are skipped.
        println!("cargo:rustc-link-arg-bin=authgate=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the link will use rustc's own default (LLD on x86_64 Linux since 1.90): no linker
/// configured for the target, none named in RUSTFLAGS, and a rustc new enough.
fn linker_is_default_lld() -> bool {
    if env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.split_whitespace().nth(1).unwrap_or("").split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (1, 90)
}
