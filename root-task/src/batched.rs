//! Checks of the batched leaf-table invocations (kernel extension), on a
//! kernel built with them; nothing on a stock kernel.

use crate::manager::Manager;
use sel4_root_task::Verdict;

/// Runs the checks of the batched invocations (none yet).
pub fn run(_m: &mut Manager, _v: &mut Verdict) {}
