//! The harness catches a root task that reports failure, panics or hangs,
//! and the build stops with one clear message on bad input.

use sel4_tests::{build_and_boot, parse, repo_root, BootOptions, Failure};
use std::process::Command;
use std::time::Duration;

fn failure_with(feature: &str, opts: &BootOptions) -> (Failure, String) {
    let run = build_and_boot("debug-up", &[feature], opts).expect("build and boot");
    let f = run
        .verdict()
        .expect_err("a deliberately broken root task must not pass");
    (f, run.log)
}

#[test]
fn wrong_label_is_caught() {
    let (f, log) = failure_with("inject-wrong-label", &BootOptions::default());
    assert!(
        matches!(&f, Failure::ChecksFailed(names) if names.iter().any(|n| n == "cnode.copy")),
        "{f:?}\n{log}"
    );
}

#[test]
fn bad_cap_is_caught() {
    let (f, log) = failure_with("inject-bad-cap", &BootOptions::default());
    assert!(
        matches!(&f, Failure::ChecksFailed(names) if names.iter().any(|n| n == "retype.objects")),
        "{f:?}\n{log}"
    );
}

#[test]
fn panic_is_caught() {
    let (f, log) = failure_with("inject-panic", &BootOptions::default());
    assert!(
        matches!(&f, Failure::Panicked(m) if m.contains("deliberate panic")),
        "{f:?}\n{log}"
    );
}

#[test]
fn hang_is_killed_and_caught() {
    let opts = BootOptions {
        timeout: Duration::from_secs(15),
        ..Default::default()
    };
    let (f, log) = failure_with("inject-hang", &opts);
    assert_eq!(f, Failure::Hung, "{log}");
}

#[test]
fn verdict_needs_a_pass_line_and_exit_status() {
    let ok = "@@sel4-mm {\"kind\":\"verdict\",\"pass\":true,\"checks\":1,\"failed\":0}\n";
    let (records, malformed) = parse(&format!("noise\n{ok}@@sel4-mm {{not json\n"));
    assert_eq!(records.len(), 1);
    assert_eq!(malformed.len(), 1);
    assert_eq!(records[0].kind(), "verdict");
}

fn build_py(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("kernel/build.py"))
        .args(args)
        .args(["--out", "/tmp/sel4-mm-bad-input"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_config_is_one_clear_message() {
    let (code, err) = build_py(&["no-such-config"], &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown kernel configuration 'no-such-config'") && err.contains("debug-up"),
        "{err}"
    );
}

#[test]
fn sel4_src_not_a_kernel_tree_is_one_clear_message() {
    let dir = std::env::temp_dir();
    let (code, err) = build_py(&["debug-up"], &[("SEL4_SRC", dir.to_str().unwrap())]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("is not an seL4 5.x kernel tree"), "{err}");
}

#[test]
fn missing_qemu_is_one_clear_message() {
    let images = sel4_tests::build("debug-up", &[]).expect("build");
    let opts = BootOptions {
        qemu: "qemu-system-x86_64-not-installed".into(),
        ..Default::default()
    };
    let err = sel4_tests::boot(&images, &opts).expect_err("must fail").to_string();
    assert!(err.contains("apt-get install qemu-system-x86"), "{err}");
}
