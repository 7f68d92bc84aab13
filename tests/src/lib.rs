//! Host harness for the seL4 root task.
//!
//! - [`build`] produces a bootable pair (kernel + root task) for a kernel
//!   configuration and a set of root-task features: it runs kernel/build.py
//!   (incremental) and `cargo build` of the root task into a target directory
//!   of its own per configuration, so images of different configurations
//!   never mix.
//! - [`boot`] runs QEMU with a timeout (killed on hang), collects the serial
//!   log, and parses every result line (`@@sel4-mm {json}`) into a
//!   [`Record`]. [`Run::verdict`] combines the root task's own verdict line,
//!   QEMU's exit status and the absence of panics.
//!
//! Tests assert on parsed records, never on console prose; when an assertion
//! fails they print the serial log ([`Run::log`]).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The prefix of a result line (must equal `sel4_root_task::report::PREFIX`).
pub const PREFIX: &str = "@@sel4-mm ";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The build directory (`build/` at the repository root).
pub fn build_dir() -> PathBuf {
    repo_root().join("build")
}

/// The kernel configurations (kernel/configs/*.conf).
pub fn configs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo_root().join("kernel/configs"))
        .expect("kernel/configs")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "conf").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    v
}

/// Nodes a configuration's kernel is built for (its MAX_NUM_NODES), read from
/// the generated autoconf.h after the kernel build.
pub fn config_nodes(config: &str) -> usize {
    let auto = build_dir().join("kernel").join(config).join("autoconf.h");
    let text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("#define CONFIG_MAX_NUM_NODES ")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// A bootable kernel + root task pair.
#[derive(Debug, Clone)]
pub struct Images {
    /// Kernel configuration name.
    pub config: String,
    /// ELF32 kernel image for QEMU's multiboot loader.
    pub kernel: PathBuf,
    /// The root task ELF.
    pub root_task: PathBuf,
    /// Cores to give QEMU (the kernel's MAX_NUM_NODES).
    pub nodes: usize,
}

/// An error of the harness itself (not of the root task).
#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for HarnessError {}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn run_step(cmd: &mut Command, what: &str) -> Result<(), HarnessError> {
    let out = cmd
        .output()
        .map_err(|e| HarnessError(format!("{what}: cannot start {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(HarnessError(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Builds the kernel for `config` and the root task with `features`
/// (comma-separated cargo features of `root-task`, e.g. `inject-hang`).
pub fn build(config: &str, features: &[&str]) -> Result<Images, HarnessError> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    run_step(
        Command::new("python3")
            .arg(root.join("kernel/build.py"))
            .arg(config)
            .current_dir(&root),
        &format!("kernel build ({config})"),
    )?;
    let kdir = build_dir().join("kernel").join(config);
    let mut tdir = build_dir().join("target").join(config);
    if !features.is_empty() {
        tdir = build_dir()
            .join("target")
            .join(format!("{config}+{}", features.join("+")));
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "--quiet", "--release", "-p", "root-task", "--target-dir"])
        .arg(&tdir)
        .env("SEL4_KERNEL_BUILD_DIR", &kdir)
        // Do not inherit the settings of a surrounding `cargo test`.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS");
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    run_step(&mut cmd, &format!("root task build ({config})"))?;
    Ok(Images {
        config: config.to_string(),
        kernel: kdir.join("kernel32.elf"),
        root_task: tdir.join("release/root-task"),
        nodes: config_nodes(config),
    })
}

/// How to run QEMU.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// `-icount shift=0,align=off,sleep=off`: one TSC tick per guest instruction.
    pub icount: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Echo the serial output to stderr as it arrives.
    pub echo: bool,
    /// The QEMU executable.
    pub qemu: String,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            icount: false,
            memory_mib: 512,
            echo: false,
            qemu: "qemu-system-x86_64".into(),
        }
    }
}

/// One parsed result line.
#[derive(Debug, Clone)]
pub struct Record(pub Value);

impl Record {
    /// The record's `kind`.
    pub fn kind(&self) -> &str {
        self.0["kind"].as_str().unwrap_or("")
    }
    /// A string field.
    pub fn str(&self, k: &str) -> Option<&str> {
        self.0[k].as_str()
    }
    /// An unsigned integer field.
    pub fn u64(&self, k: &str) -> Option<u64> {
        self.0[k].as_u64()
    }
    /// A boolean field.
    pub fn bool(&self, k: &str) -> Option<bool> {
        self.0[k].as_bool()
    }
}

/// The outcome of one boot.
#[derive(Debug)]
pub struct Run {
    /// The images that were booted.
    pub images: Images,
    /// Every result line, parsed, in order.
    pub records: Vec<Record>,
    /// Lines that carried the prefix but were not valid JSON objects.
    pub malformed: Vec<String>,
    /// The whole serial log.
    pub log: String,
    /// QEMU's exit code (None if it was killed).
    pub exit_code: Option<i32>,
    /// Whether QEMU was killed for exceeding the timeout.
    pub timed_out: bool,
    /// Wall-clock duration.
    pub elapsed: Duration,
}

/// Why a run did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// QEMU was killed after the timeout: the root task hung.
    Hung,
    /// The root task panicked (message).
    Panicked(String),
    /// No verdict line was printed.
    NoVerdict,
    /// The verdict says fail: names of the failed checks.
    ChecksFailed(Vec<String>),
    /// QEMU's exit status disagrees with the verdict line.
    ExitStatus(Option<i32>),
    /// A result line could not be parsed.
    Malformed(String),
}

impl Run {
    /// All records of a kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.kind() == kind)
    }
    fn first_of(&self, kind: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.kind() == kind)
    }
    /// The first record of a kind.
    pub fn first(&self, kind: &str) -> Option<&Record> {
        self.first_of(kind)
    }
    /// The check record of that name.
    pub fn check(&self, name: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.kind() == "check" && r.str("name") == Some(name))
    }
    /// Pass, or why not. A pass needs: no hang, no panic, no malformed line, a
    /// verdict line with `pass: true`, and QEMU's exit status 1 (the root
    /// task wrote 0 to isa-debug-exit).
    pub fn verdict(&self) -> Result<(), Failure> {
        if self.timed_out {
            return Err(Failure::Hung);
        }
        if let Some(p) = self.first("panic") {
            return Err(Failure::Panicked(p.str("message").unwrap_or("").to_string()));
        }
        if let Some(m) = self.malformed.first() {
            return Err(Failure::Malformed(m.clone()));
        }
        let v = self.first("verdict").ok_or(Failure::NoVerdict)?;
        if v.bool("pass") != Some(true) {
            let failed = self
                .of_kind("check")
                .filter(|r| r.bool("ok") != Some(true))
                .map(|r| r.str("name").unwrap_or("?").to_string())
                .collect();
            return Err(Failure::ChecksFailed(failed));
        }
        if self.exit_code != Some(1) {
            return Err(Failure::ExitStatus(self.exit_code));
        }
        Ok(())
    }

    /// Panics with the serial log if the run did not pass.
    pub fn assert_passed(&self) {
        if let Err(f) = self.verdict() {
            panic!(
                "{} run failed: {f:?}\n----- serial log -----\n{}",
                self.images.config, self.log
            );
        }
    }
}

/// The QEMU command line for `images`.
pub fn qemu_command(images: &Images, opts: &BootOptions) -> Command {
    let mut cmd = Command::new(&opts.qemu);
    cmd.args(["-cpu", "max", "-m", &format!("{}M", opts.memory_mib)])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-smp", &images.nodes.to_string()])
        .arg("-kernel")
        .arg(&images.kernel)
        .arg("-initrd")
        .arg(&images.root_task);
    if opts.icount {
        cmd.args(["-icount", "shift=0,align=off,sleep=off"]);
    }
    cmd
}

/// Boots `images` in QEMU and collects the results.
pub fn boot(images: &Images, opts: &BootOptions) -> Result<Run, HarnessError> {
    let start = Instant::now();
    let mut child = qemu_command(images, opts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            HarnessError(format!(
                "cannot start {} ({e}); install it with `apt-get install qemu-system-x86` \
                 (or run `make deps` as root)",
                opts.qemu
            ))
        })?;
    let log = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().unwrap();
    let reader = {
        let log = Arc::clone(&log);
        let echo = opts.echo;
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut buf) {
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf).replace('\r', "");
                if echo {
                    eprint!("{line}");
                }
                log.lock().unwrap().push_str(&line);
                buf.clear();
            }
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child
            .try_wait()
            .map_err(|e| HarnessError(format!("waiting for QEMU: {e}")))?
        {
            break Some(st);
        }
        if start.elapsed() > opts.timeout {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    let mut log = std::mem::take(&mut *log.lock().unwrap());
    if !qemu_err.trim().is_empty() {
        log.push_str("\n[qemu stderr] ");
        log.push_str(&qemu_err);
    }
    let (records, malformed) = parse(&log);
    Ok(Run {
        images: images.clone(),
        records,
        malformed,
        log,
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        elapsed: start.elapsed(),
    })
}

/// Parses the result lines of a serial log: (records, malformed lines).
pub fn parse(log: &str) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for line in log.lines() {
        let Some(pos) = line.find(PREFIX) else { continue };
        let json = &line[pos + PREFIX.len()..];
        match serde_json::from_str::<Value>(json) {
            Ok(v) if v.is_object() && v["kind"].is_string() => records.push(Record(v)),
            _ => malformed.push(line.to_string()),
        }
    }
    (records, malformed)
}

/// Builds and boots in one step.
pub fn build_and_boot(config: &str, features: &[&str], opts: &BootOptions) -> Result<Run, HarnessError> {
    let images = build(config, features)?;
    boot(&images, opts)
}
