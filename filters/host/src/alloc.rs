//! The modules' allocator: size classes with free lists in front of the system allocator.
//!
//! A call allocates and frees a few hundred small blocks (header values, property values, the
//! audit record's strings, JSON parsing), the same sizes call after call. wasi-libc's dlmalloc
//! splits, coalesces and searches bins for each; here a block of up to [`LARGEST`] bytes is taken
//! from its size class's free list and put back on it when freed, both in a few instructions.
//! Memory for the classes comes from the system allocator in [`CHUNK`]-byte chunks and stays with
//! its class (a Wasm memory never shrinks anyway); larger blocks, and any alignment above 16,
//! go to the system allocator as before.
//!
//! The classes: multiples of 16 up to 128 bytes, then four per doubling (160, 192, 224, 256, 320,
//! ...) up to 32 KiB, so no block wastes more than a fifth of itself (above 128 bytes).
//!
//! Only the Wasm modules use it (`#[global_allocator]` on `wasm32`, which runs one thread per
//! VM); the native tests build their own instance.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The largest block served from a size class.
pub const LARGEST: usize = 32 * 1024;
/// The bytes taken from the system allocator at a time for the classes.
pub const CHUNK: usize = 64 * 1024;
const ALIGN: usize = 16;
/// 8 classes of 16 bytes up to 128, then 4 per doubling up to 32 KiB (8 doublings).
const CLASSES: usize = 8 + 4 * 8;

/// Which class serves a block of `size` bytes, and the class's block size; `None` above
/// [`LARGEST`].
pub fn class_of(size: usize) -> Option<(usize, usize)> {
    if size <= 128 {
        let i = size.saturating_sub(1) / 16;
        return Some((i, (i + 1) * 16));
    }
    if size > LARGEST {
        return None;
    }
    let s = size - 1;
    // s >= 128, so its highest bit is at least 7; a class is a quarter of that power of two.
    let high = usize::BITS - 1 - s.leading_zeros();
    let step = high - 2;
    let q = (s >> step) + 1; // 5..=8 quarters
    let index = 8 + (high as usize - 7) * 4 + (q - 5);
    Some((index, q << step))
}

struct State {
    /// The head of each class's free list (a freed block holds the next one's address).
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

/// Size classes over the system allocator (see the module's documentation).
pub struct SizeClasses {
    state: UnsafeCell<State>,
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

impl SizeClasses {
    pub const fn new() -> Self {
        Self {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    /// A block of `class_size` bytes from a fresh part of the current chunk (a new chunk when
    /// the rest is too small: the rest is then left unused).
    ///
    /// # Safety
    /// Only from `alloc`, with no other borrow of the state alive.
    unsafe fn carve(&self, class_size: usize) -> *mut u8 {
        // SAFETY: one thread (see `Sync` below), and no reference to the state outlives a call.
        let st = unsafe { &mut *self.state.get() };
        let left = (st.end as usize).wrapping_sub(st.bump as usize);
        if st.bump.is_null() || left < class_size {
            // SAFETY: CHUNK and ALIGN make a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            st.bump = chunk;
            // SAFETY: within (one past the end of) the chunk just allocated.
            st.end = unsafe { chunk.add(CHUNK) };
        }
        let block = st.bump;
        // SAFETY: `class_size <= left` of the chunk, checked above.
        st.bump = unsafe { st.bump.add(class_size) };
        block
    }
}

fn served(layout: &Layout) -> Option<(usize, usize)> {
    if layout.align() > ALIGN {
        return None;
    }
    class_of(layout.size())
}

impl SizeClasses {
    /// A block for `layout` (`GlobalAlloc::alloc`'s contract).
    ///
    /// # Safety
    /// As `GlobalAlloc::alloc`; one thread.
    #[inline(always)]
    unsafe fn take(&self, layout: Layout) -> *mut u8 {
        let Some((class, size)) = served(&layout) else {
            return unsafe { System.alloc(layout) };
        };
        {
            // SAFETY: as in `carve`; this borrow ends before `carve` takes its own.
            let st = unsafe { &mut *self.state.get() };
            let head = st.free[class];
            if !head.is_null() {
                // SAFETY: a freed block of this class holds the next free block's address.
                st.free[class] = unsafe { head.cast::<*mut u8>().read() };
                return head;
            }
        }
        unsafe { self.carve(size) }
    }

    /// Gives back a block `take` gave for `layout`.
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`; one thread.
    #[inline(always)]
    unsafe fn give(&self, block: *mut u8, layout: Layout) {
        let Some((class, _)) = served(&layout) else {
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `carve`; the block is ours (same layout as when it was allocated) and
        // at least 16 bytes, aligned, so it can hold the list's next address.
        let st = unsafe { &mut *self.state.get() };
        unsafe { block.cast::<*mut u8>().write(st.free[class]) };
        st.free[class] = block;
    }

    /// Moves or keeps a block `take` gave for `layout`, for `new_size` bytes.
    ///
    /// # Safety
    /// As `GlobalAlloc::realloc`; one thread.
    #[inline(always)]
    unsafe fn retake(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = served(&layout);
        // SAFETY: the caller's layout is valid and `new_size` does not overflow it (GlobalAlloc's
        // contract for realloc).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = served(&new_layout);
        match (old, new) {
            // Still fits its class: the block stays where it is.
            (Some((a, _)), Some((b, _))) if a == b => block,
            // (Blocks of the system allocator's are moved too, not grown in place: a Vec that
            // outgrows 32 KiB doubles, so the copies add up to less than its final size, and
            // the module does without dlmalloc's realloc.)
            _ => {
                let moved = unsafe { self.take(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks are valid for the smaller of the two sizes, and distinct.
                    unsafe { ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
                    unsafe { self.give(block, layout) };
                }
                moved
            }
        }
    }
}

// SAFETY: blocks of a class are `ALIGN`-aligned (chunks are, and class sizes are multiples of
// 16), at least as large as asked, and handed out once until freed; everything else is the
// system allocator's.
unsafe impl GlobalAlloc for SizeClasses {
    // Not inlined: inlined into every allocation site, the module grows by a quarter.
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { self.take(layout) }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe { self.give(block, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { self.retake(block, layout, new_size) }
    }
}

/// The module's allocator. A Wasm module without the `atomics` feature runs one thread, so the
/// free lists need no lock.
///
/// An allocation site calls one of three functions with only what varies: the size (and the
/// block). The allocator is one static, not an argument, and every block is laid out with
/// alignment 16 (what a class gives anyway; the rare type aligned above that goes to the system
/// allocator with its own): each of the module's thousands of sites passes two values where it
/// passed four.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod global {
    use super::{SizeClasses, ALIGN};
    use std::alloc::{GlobalAlloc, Layout, System};

    struct OneThread(SizeClasses);
    // SAFETY: wasm32 without atomics has one thread; nothing can share the state.
    unsafe impl Sync for OneThread {}

    static CLASSES: OneThread = OneThread(SizeClasses::new());

    /// The layout every block of up to 16-byte alignment is given and given back with (`None`
    /// for a size within 15 bytes of `isize::MAX`, which no Wasm memory could hold anyway).
    fn sized(size: usize) -> Option<Layout> {
        Layout::from_size_align(size, ALIGN).ok()
    }

    #[inline(never)]
    unsafe fn take(size: usize) -> *mut u8 {
        match sized(size) {
            Some(l) => unsafe { CLASSES.0.take(l) },
            None => std::ptr::null_mut(),
        }
    }

    #[inline(never)]
    unsafe fn give(block: *mut u8, size: usize) {
        // (A size `sized` refuses was never given: `take` failed for it.)
        if let Some(l) = sized(size) {
            unsafe { CLASSES.0.give(block, l) }
        }
    }

    #[inline(never)]
    unsafe fn retake(block: *mut u8, size: usize, new_size: usize) -> *mut u8 {
        match (sized(size), sized(new_size)) {
            (Some(l), Some(_)) => unsafe { CLASSES.0.retake(block, l, new_size) },
            _ => std::ptr::null_mut(),
        }
    }

    struct Global;

    // SAFETY: a layout of up to 16-byte alignment is served as (size, 16), and given back the
    // same way (the same size comes back with the block); any other goes to the system allocator
    // unchanged, allocated and freed with its own layout.
    unsafe impl GlobalAlloc for Global {
        #[inline(always)]
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if l.align() <= ALIGN {
                unsafe { take(l.size()) }
            } else {
                unsafe { System.alloc(l) }
            }
        }
        #[inline(always)]
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            if l.align() <= ALIGN {
                unsafe { give(p, l.size()) }
            } else {
                unsafe { System.dealloc(p, l) }
            }
        }
        #[inline(always)]
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            if l.align() <= ALIGN {
                unsafe { retake(p, l.size(), n) }
            } else {
                unsafe { System.realloc(p, l, n) }
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Global = Global;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_class_that_holds_it() {
        let mut last = (0, 0);
        for size in 1..=LARGEST {
            let Some((class, block)) = class_of(size) else { panic!("{size} has no class") };
            assert!(block >= size, "{size} got {block}");
            assert_eq!(block % ALIGN, 0, "{size} got {block}");
            assert!(class < CLASSES);
            if class != last.0 {
                // A new class starts just above the previous one's block size.
                assert_eq!(class, last.0 + usize::from(size > 1), "{size}");
                assert_eq!(size, last.1 + 1, "{size}");
            }
            if size > 128 {
                assert!(block - size < block / 5 + 1, "{size} wastes too much of {block}");
            }
            last = (class, block);
        }
        assert_eq!(last, (CLASSES - 1, LARGEST));
        assert_eq!(class_of(LARGEST + 1), None);
        assert_eq!(class_of(0), Some((0, 16)));
        assert_eq!(class_of(129), Some((8, 160)));
        assert_eq!(class_of(257), Some((12, 320)));
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_freed_block_serves_the_next_block_of_its_class_and_blocks_never_overlap() {
        let a = SizeClasses::new();
        unsafe {
            let x = a.alloc(layout(40, 8));
            let y = a.alloc(layout(48, 8));
            assert_eq!(y as usize - x as usize, 48, "carved one after the other");
            a.dealloc(x, layout(40, 8));
            let z = a.alloc(layout(33, 1));
            assert_eq!(z, x, "the freed block of the same class comes back");
            let w = a.alloc(layout(20, 4));
            assert_ne!(w, x);
            assert_ne!(w, y);
            for (p, l) in [(y, 48), (z, 33), (w, 20)] {
                a.dealloc(p, layout(l, 1));
            }
        }
    }

    #[test]
    fn many_live_blocks_of_mixed_sizes_keep_their_contents() {
        let a = SizeClasses::new();
        let sizes = [1usize, 7, 16, 17, 100, 129, 300, 1000, 4096, 5000, 32 * 1024, 40 * 1024, 100_000];
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        unsafe {
            for round in 0..50u8 {
                for (i, &s) in sizes.iter().enumerate() {
                    let p = a.alloc(layout(s, 8));
                    assert!(!p.is_null());
                    assert_eq!(p as usize % 8, 0);
                    let tag = round.wrapping_mul(31).wrapping_add(i as u8);
                    ptr::write_bytes(p, tag, s);
                    live.push((p, s, tag));
                }
                // Free every other block, so later rounds reuse them.
                let mut keep = Vec::new();
                for (n, (p, s, tag)) in live.drain(..).enumerate() {
                    assert!((0..s).all(|k| *p.add(k) == tag), "block of {s} bytes overwritten");
                    if n % 2 == 0 {
                        a.dealloc(p, layout(s, 8));
                    } else {
                        keep.push((p, s, tag));
                    }
                }
                live = keep;
            }
            for (p, s, tag) in live {
                assert!((0..s).all(|k| *p.add(k) == tag));
                a.dealloc(p, layout(s, 8));
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_to_the_system_allocator() {
        let a = SizeClasses::new();
        unsafe {
            let mut p = a.alloc(layout(10, 1));
            for k in 0..10 {
                *p.add(k) = k as u8;
            }
            let mut size = 10;
            for new in [12, 100, 1000, 20_000, 70_000, 200_000, 3000, 5] {
                let q = a.realloc(p, layout(size, 1), new);
                assert!(!q.is_null());
                if class_of(new).map(|c| c.0) == class_of(size).map(|c| c.0) && new <= LARGEST {
                    assert_eq!(q, p, "{size} -> {new} stays in its block");
                }
                assert!((0..size.min(new).min(10)).all(|k| *q.add(k) == k as u8), "{size} -> {new}");
                p = q;
                size = new;
            }
            a.dealloc(p, layout(size, 1));
        }
    }

    #[test]
    fn alignments_above_sixteen_go_to_the_system_allocator() {
        let a = SizeClasses::new();
        unsafe {
            let p = a.alloc(layout(64, 64));
            assert_eq!(p as usize % 64, 0);
            a.dealloc(p, layout(64, 64));
        }
    }
}
