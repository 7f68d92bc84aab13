//! The host model of seL4 5.0 as a [`Kernel`](crate::Kernel) (to come).
