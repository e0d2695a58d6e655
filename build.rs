//! Sets `cfg(ci)` when the build runs in CI (`CI=true`): tests whose prerequisites (Python
//! packages, shared data) CI installs run there and fail when those are missing, and are
//! ignored elsewhere with the reason (`cargo test -- --include-ignored` runs them).

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(ci)");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        println!("cargo::rustc-cfg=ci");
    }
}
