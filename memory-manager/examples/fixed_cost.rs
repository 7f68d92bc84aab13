//! The manager's own instructions per call, without a kernel: a `Kernel`
//! whose every invocation succeeds and does nothing (the books do not ask
//! the kernel anything), driving one-page (or `n`-page) clone and destroy
//! in a loop. Run it under `valgrind --tool=callgrind` to see where a
//! call's fixed cost goes:
//!
//! ```sh
//! cargo build --release -p memory-manager --example fixed_cost --features model
//! valgrind --tool=callgrind target/release/examples/fixed_cost 1 20000
//! ```
use cspace::mock::MockKernel;
use cspace::{CPtr, CapData, CapPath, KernelError, KernelOps, ObjectType, RetypeDest};
use memory_manager::{At, Kernel, Manager, Mm, RunRefusal};
use vspace::{CacheAttr, FrameSize, Rights, TableLevel};

/// Every invocation succeeds; `runs`: whether it offers the run invocations.
struct Null {
    runs: bool,
}

impl KernelOps for Null {
    fn untyped_retype(&mut self, _: CPtr, _: ObjectType, _: u8, _: RetypeDest) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_copy(&mut self, _: CapPath, _: CapPath, _: cspace::Rights) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_mint(&mut self, _: CapPath, _: CapPath, _: cspace::Rights, _: CapData) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_move(&mut self, _: CapPath, _: CapPath) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_delete(&mut self, _: CapPath) -> Result<(), KernelError> {
        Ok(())
    }
    fn cnode_revoke(&mut self, _: CapPath) -> Result<(), KernelError> {
        Ok(())
    }
    fn set_cspace_root(&mut self, _: CPtr, _: u8) -> Result<(), KernelError> {
        Ok(())
    }
}

impl Kernel for Null {
    fn asid_assign(&mut self, _: CPtr) -> Result<(), KernelError> {
        Ok(())
    }
    fn table_map(&mut self, _: TableLevel, _: CPtr, _: CPtr, _: u64) -> Result<(), KernelError> {
        Ok(())
    }
    fn table_unmap(&mut self, _: TableLevel, _: CPtr) -> Result<(), KernelError> {
        Ok(())
    }
    fn page_map(&mut self, _: CPtr, _: CPtr, _: u64, _: FrameSize, _: Rights, _: CacheAttr) -> Result<(), KernelError> {
        Ok(())
    }
    fn page_remap(&mut self, _: CPtr, _: CPtr, _: Rights, _: CacheAttr) -> Result<(), KernelError> {
        Ok(())
    }
    fn page_unmap(&mut self, _: CPtr) -> Result<(), KernelError> {
        Ok(())
    }
    fn has_runs(&self) -> bool {
        self.runs
    }
    fn map_run(
        &mut self,
        _: CPtr,
        _: CPtr,
        _: u16,
        _: usize,
        _: Rights,
        _: CacheAttr,
        _: CapPath,
    ) -> Result<(), RunRefusal> {
        Ok(())
    }
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("number")).collect();
    let (n, iters) = (
        args.first().copied().unwrap_or(1),
        args.get(1).copied().unwrap_or(10_000),
    );
    // The machine of the model (its config), run on the null kernel.
    let (_, cfg) = MockKernel::boot(12, &[(0x1000_0000, 28, false)]);
    let mut m = Manager::new(
        Null {
            runs: std::env::var("RUNS").is_ok(),
        },
        cfg,
    )
    .expect("boot");
    let mut mm = Mm::new();
    let (s, d) = (mm.create_space(&mut m).unwrap(), mm.create_space(&mut m).unwrap());
    const SRC: u64 = 0x10_0000_0000;
    const DST: u64 = 0x20_0000_0000;
    mm.map_new(&mut m, s, SRC, n, Rights::READ_WRITE).unwrap();
    mm.set_table_policy(d, vspace::TablePolicy::Retain);
    for _ in 0..iters {
        mm.clone_region(&mut m, At(s, SRC), At(d, DST), n, Rights::READ_WRITE)
            .unwrap();
        mm.destroy_region(&mut m, d, DST, n).unwrap();
    }
    println!("{iters} x clone+destroy of {n} pages");
}
