//! A global allocator that forwards every call to the system's and calls a
//! hook on each allocation (not on frees): how the engine's allocations per
//! packet are counted, by `tests/allocations.rs` and `benches/forward.rs`.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct Counting {
    /// Called before each allocation, growth included. It must not
    /// allocate itself unless it guards against counting that.
    pub on_alloc: fn(),
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.on_alloc)();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.on_alloc)();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.on_alloc)();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}
