//! The modules' allocator: size classes with free lists, over memory taken from the Wasm memory's
//! end; the C library's `malloc` family too, so that wasi-libc's dlmalloc is not linked.
//!
//! A call allocates and frees a few hundred small blocks (header values, property values, the
//! audit record's strings, JSON parsing), the same sizes call after call. dlmalloc splits,
//! coalesces and searches bins for each; here a block is taken from its size class's free list
//! and put back on it when freed, both in a few instructions. Memory for the classes is taken
//! from the Wasm memory's end at least [`CHUNK`] bytes at a time and carved in order; a block
//! stays with its class once carved (a Wasm memory never shrinks anyway), a large one (a body's)
//! as a small one.
//!
//! The classes: multiples of 16 up to 128 bytes, then four per doubling (160, 192, 224, 256, 320,
//! ...) up to 2 GiB, so no block wastes more than a fifth of itself (above 128 bytes). A block
//! aligned above 16 (no type of the gateway's is) is carved with room to align it and the
//! start of the block it lies in written just before it.
//!
//! The C library allocates only to copy the environment (`getenv`: std's panic hook and
//! `key_env` read it). Its `malloc`, `calloc` and `free` are defined here (see [`c`]), which keeps
//! dlmalloc (10 KB of the module) out: the linker takes an archive's member only for a symbol
//! nothing else defines.
//!
//! Only the Wasm modules use it (`#[global_allocator]` on `wasm32`, which runs one thread per
//! VM); the native tests build their own instance over the system allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// The bytes taken from the memory at a time for the classes.
pub const CHUNK: usize = 64 * 1024;
const ALIGN: usize = 16;
/// The largest block served: 2 GiB (a wasm32 memory holds 4).
const MOST: usize = 1 << 31;
/// 8 classes of 16 bytes up to 128, then 4 per doubling up to 2 GiB (24 doublings).
const CLASSES: usize = 8 + 4 * 24;

/// Which class serves a block of `size` bytes, and the class's block size; `None` above 2 GiB.
pub fn class_of(size: usize) -> Option<(usize, usize)> {
    if size <= 128 {
        let i = size.saturating_sub(1) / 16;
        return Some((i, (i + 1) * 16));
    }
    if size > MOST {
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

/// Where fresh memory comes from: at least `bytes` (a multiple of 16) at a 16-byte aligned
/// address, and how many; null when there is no more.
pub trait Pages {
    fn grow(&self, bytes: usize) -> (*mut u8, usize);
}

/// The Wasm memory's end, grown by whole 64 KiB pages.
#[cfg(target_arch = "wasm32")]
pub struct WasmPages;

#[cfg(target_arch = "wasm32")]
impl Pages for WasmPages {
    fn grow(&self, bytes: usize) -> (*mut u8, usize) {
        const PAGE: usize = 64 * 1024;
        let pages = bytes.div_ceil(PAGE);
        let old = core::arch::wasm32::memory_grow::<0>(pages);
        if old == usize::MAX {
            return (ptr::null_mut(), 0);
        }
        ((old * PAGE) as *mut u8, pages * PAGE)
    }
}

/// The system allocator's blocks, never given back (the native tests' memory).
#[cfg(not(target_arch = "wasm32"))]
pub struct SystemPages;

#[cfg(not(target_arch = "wasm32"))]
impl Pages for SystemPages {
    fn grow(&self, bytes: usize) -> (*mut u8, usize) {
        match Layout::from_size_align(bytes, ALIGN) {
            // SAFETY: a valid layout of a non-zero size (a class's block is at least 16 bytes).
            Ok(l) => (unsafe { std::alloc::System.alloc(l) }, bytes),
            Err(_) => (ptr::null_mut(), 0),
        }
    }
}

struct State {
    /// The head of each class's free list (a freed block holds the next one's address).
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

/// Size classes over pages of memory (see the module's documentation).
pub struct SizeClasses<P: Pages> {
    state: UnsafeCell<State>,
    pages: P,
}

impl<P: Pages> SizeClasses<P> {
    pub const fn new(pages: P) -> Self {
        Self {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
            pages,
        }
    }

    /// A block of `class_size` bytes never given before, from the rest of the memory taken:
    /// when that is too small, more is taken ([`CHUNK`] bytes, or the block's size if larger);
    /// right after the rest (the Wasm memory grows at its end), the two are one, otherwise the
    /// rest is left unused.
    ///
    /// # Safety
    /// Only from `take`, with no other borrow of the state alive.
    #[inline(never)]
    unsafe fn carve(&self, class_size: usize) -> *mut u8 {
        // SAFETY: one thread (see `Sync` below), and no reference to the state outlives a call.
        let st = unsafe { &mut *self.state.get() };
        let left = (st.end as usize).wrapping_sub(st.bump as usize);
        if st.bump.is_null() || left < class_size {
            let (more, bytes) = self.pages.grow(class_size.max(CHUNK));
            if more.is_null() {
                return more;
            }
            if more != st.end || st.bump.is_null() {
                st.bump = more;
            }
            // SAFETY: within (one past the end of) the memory just taken.
            st.end = unsafe { more.add(bytes) };
        }
        let block = st.bump;
        // SAFETY: `class_size <= left` of the chunk, checked above.
        st.bump = unsafe { st.bump.add(class_size) };
        block
    }

    /// A 16-byte aligned block of at least `size` bytes (null above 2 GiB, or when the memory
    /// cannot grow).
    ///
    /// # Safety
    /// One thread; what it gives back is freed by `give` with the same `size`.
    #[inline(always)]
    pub unsafe fn take(&self, size: usize) -> *mut u8 {
        let Some((class, block_size)) = class_of(size) else { return ptr::null_mut() };
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
        unsafe { self.carve(block_size) }
    }

    /// Gives back a block `take(size)` gave.
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`; one thread.
    #[inline(always)]
    pub unsafe fn give(&self, block: *mut u8, size: usize) {
        // (A size with no class was never given: `take` failed for it.)
        let Some((class, _)) = class_of(size) else { return };
        // SAFETY: as in `carve`; the block is ours, of this class, and at least 16 bytes,
        // aligned, so it can hold the list's next address.
        let st = unsafe { &mut *self.state.get() };
        unsafe { block.cast::<*mut u8>().write(st.free[class]) };
        st.free[class] = block;
    }

    /// Moves or keeps a block `take(size)` gave, for `new_size` bytes.
    ///
    /// # Safety
    /// As `GlobalAlloc::realloc`; one thread.
    #[inline(always)]
    pub unsafe fn retake(&self, block: *mut u8, size: usize, new_size: usize) -> *mut u8 {
        match (class_of(size), class_of(new_size)) {
            // Still fits its class: the block stays where it is.
            (Some((a, _)), Some((b, _))) if a == b => block,
            _ => {
                let moved = unsafe { self.take(new_size) };
                if !moved.is_null() {
                    // SAFETY: both blocks are valid for the smaller of the two sizes, and distinct.
                    unsafe { ptr::copy_nonoverlapping(block, moved, size.min(new_size)) };
                    unsafe { self.give(block, size) };
                }
                moved
            }
        }
    }

    /// The block size a layout aligned above 16 is carved with: room to align it, and for the
    /// start of the block before it.
    fn padded(l: &Layout) -> usize {
        l.size().saturating_add(l.align()).saturating_add(ALIGN)
    }

    /// A block for a layout aligned above 16: aligned within a larger one, whose start is
    /// written in the 8 bytes before it.
    #[inline(never)]
    unsafe fn take_aligned(&self, l: Layout) -> *mut u8 {
        let block = unsafe { self.take(Self::padded(&l)) };
        if block.is_null() {
            return block;
        }
        let at = (block as usize + ALIGN).next_multiple_of(l.align());
        let p = at as *mut u8;
        // SAFETY: `at` is at least 16 bytes into the block and `size` bytes fit after it.
        unsafe { p.sub(8).cast::<usize>().write(block as usize) };
        p
    }

    #[inline(never)]
    unsafe fn give_aligned(&self, p: *mut u8, l: Layout) {
        // SAFETY: written by `take_aligned`.
        let block = unsafe { p.sub(8).cast::<usize>().read() } as *mut u8;
        unsafe { self.give(block, Self::padded(&l)) }
    }
}

// SAFETY: blocks of a class are `ALIGN`-aligned (chunks and pages are, and class sizes are
// multiples of 16), at least as large as asked, and handed out once until freed; a layout
// aligned above that gets an aligned part of a larger block, given back whole.
unsafe impl<P: Pages> GlobalAlloc for SizeClasses<P> {
    // Not inlined: inlined into every allocation site, the module grows by a quarter.
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > ALIGN {
            return unsafe { self.take_aligned(layout) };
        }
        unsafe { self.take(layout.size()) }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if layout.align() > ALIGN {
            return unsafe { self.give_aligned(block, layout) };
        }
        unsafe { self.give(block, layout.size()) }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() > ALIGN {
            // (GlobalAlloc's default: a new block, the contents copied, the old one freed.)
            // SAFETY: the caller's new size with the same alignment is a valid layout.
            let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
            if !new.is_null() {
                unsafe { ptr::copy_nonoverlapping(block, new, layout.size().min(new_size)) };
                unsafe { self.give_aligned(block, layout) };
            }
            return new;
        }
        unsafe { self.retake(block, layout.size(), new_size) }
    }
}

/// The C library's `malloc`, `calloc` and `free` over the classes.
///
/// The proxy allocates with the module's exported `malloc` when there is one (before
/// `proxy_on_memory_allocate`; proxy-wasm-cpp-host's `WasmBase::getFunctions`), and the
/// buffers it hands over are freed as the `Vec<u8>` of their size ([`crate::abi`]). So `malloc`
/// gives what the Rust side's allocation of those bytes gives, and `free` cannot know a block's
/// size: it keeps the block. The C library frees only what it allocated on paths the module
/// does not take (the environment is copied once per VM and kept).
pub mod c {
    use super::{Pages, SizeClasses, ALIGN};
    use std::ptr;

    /// `malloc(size)`: as `alloc(Layout::array::<u8>(size))`; zero bytes, a dangling pointer, as
    /// for an empty boxed slice (no block: nothing to free).
    ///
    /// # Safety
    /// One thread.
    pub unsafe fn malloc<P: Pages>(a: &SizeClasses<P>, size: usize) -> *mut u8 {
        if size == 0 {
            return ptr::without_provenance_mut(ALIGN);
        }
        unsafe { a.take(size) }
    }

    /// `posix_memalign`'s and `aligned_alloc`'s block: `size` bytes at a multiple of `align` (a
    /// power of two) within a larger block (never freed: see `free`).
    ///
    /// # Safety
    /// One thread.
    pub unsafe fn aligned<P: Pages>(a: &SizeClasses<P>, align: usize, size: usize) -> *mut u8 {
        let Some(whole) = size.checked_add(align) else { return ptr::null_mut() };
        let block = unsafe { malloc(a, whole.max(1)) };
        if block.is_null() {
            return block;
        }
        let offset = (block as usize).next_multiple_of(align.max(1)) - block as usize;
        // SAFETY: at most `align` bytes in, with `size` bytes after it within the block.
        unsafe { block.add(offset) }
    }

    /// `calloc(n, size)`: zeroed (a block given back and taken again holds what it held).
    ///
    /// # Safety
    /// One thread.
    pub unsafe fn calloc<P: Pages>(a: &SizeClasses<P>, n: usize, size: usize) -> *mut u8 {
        let Some(bytes) = n.checked_mul(size) else { return ptr::null_mut() };
        let p = unsafe { malloc(a, bytes) };
        if !p.is_null() && bytes > 0 {
            unsafe { ptr::write_bytes(p, 0, bytes) };
        }
        p
    }
}

/// The module's allocator. A Wasm module without the `atomics` feature runs one thread, so the
/// free lists need no lock.
///
/// An allocation site calls one of three functions with only what varies: the size (and the
/// block). The allocator is one static, not an argument, and every block is laid out with
/// alignment 16 (what a class gives anyway; the rare type aligned above that goes through
/// `take_aligned`): each of the module's thousands of sites passes two values where it passed
/// four.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod global {
    use super::{c, SizeClasses, WasmPages, ALIGN};
    use std::alloc::{GlobalAlloc, Layout};

    struct OneThread(SizeClasses<WasmPages>);
    // SAFETY: wasm32 without atomics has one thread; nothing can share the state.
    unsafe impl Sync for OneThread {}

    static CLASSES: OneThread = OneThread(SizeClasses::new(WasmPages));

    #[inline(never)]
    unsafe fn take(size: usize) -> *mut u8 {
        unsafe { CLASSES.0.take(size) }
    }

    #[inline(never)]
    unsafe fn give(block: *mut u8, size: usize) {
        unsafe { CLASSES.0.give(block, size) }
    }

    #[inline(never)]
    unsafe fn retake(block: *mut u8, size: usize, new_size: usize) -> *mut u8 {
        unsafe { CLASSES.0.retake(block, size, new_size) }
    }

    struct Global;

    // SAFETY: a layout of up to 16-byte alignment is served by its size and given back the same
    // way (the same size comes back with the block); any other goes through the classes'
    // `GlobalAlloc`, allocated and freed with its own layout.
    unsafe impl GlobalAlloc for Global {
        #[inline(always)]
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if l.align() <= ALIGN {
                unsafe { take(l.size()) }
            } else {
                unsafe { CLASSES.0.alloc(l) }
            }
        }
        #[inline(always)]
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            if l.align() <= ALIGN {
                unsafe { give(p, l.size()) }
            } else {
                unsafe { CLASSES.0.dealloc(p, l) }
            }
        }
        #[inline(always)]
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            if l.align() <= ALIGN {
                unsafe { retake(p, l.size(), n) }
            } else {
                unsafe { CLASSES.0.realloc(p, l, n) }
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Global = Global;

    // The C library's allocation functions (see `c`).

    #[no_mangle]
    unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
        unsafe { c::malloc(&CLASSES.0, size) }
    }

    #[no_mangle]
    unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut u8 {
        unsafe { c::calloc(&CLASSES.0, n, size) }
    }

    #[no_mangle]
    unsafe extern "C" fn free(_block: *mut u8) {}

    /// (Nothing calls it: the module's own allocations go through `Global`. Without the old
    /// block's size it cannot move one, so it fails, as C allows: the old block is left as it
    /// was.)
    #[no_mangle]
    unsafe extern "C" fn realloc(block: *mut u8, size: usize) -> *mut u8 {
        if block.is_null() {
            return unsafe { malloc(size) };
        }
        std::ptr::null_mut()
    }

    #[no_mangle]
    unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
        unsafe { c::aligned(&CLASSES.0, align, size) }
    }

    #[no_mangle]
    unsafe extern "C" fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32 {
        const ENOMEM: i32 = 48; // (wasi-libc's value)
        let p = unsafe { c::aligned(&CLASSES.0, align, size) };
        if p.is_null() {
            return ENOMEM;
        }
        unsafe { out.write(p) };
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> SizeClasses<SystemPages> {
        SizeClasses::new(SystemPages)
    }

    #[test]
    fn every_size_gets_the_smallest_class_that_holds_it() {
        let mut last = (0, 0);
        let mut check = |size: usize| {
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
        };
        for size in 1..=128 * 1024 {
            check(size);
        }
        // Above that, each class's first and last sizes.
        let mut size = 128 * 1024 + 1;
        while size <= MOST {
            let (_, block) = class_of(size).unwrap_or_default();
            check(size);
            check(block);
            size = block + 1;
        }
        assert_eq!(last, (CLASSES - 1, MOST));
        assert_eq!(class_of(MOST + 1), None);
        assert_eq!(class_of(0), Some((0, 16)));
        assert_eq!(class_of(129), Some((8, 160)));
        assert_eq!(class_of(257), Some((12, 320)));
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_freed_block_serves_the_next_block_of_its_class_and_blocks_never_overlap() {
        let a = classes();
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
            // A large block comes back for its class too.
            let big = a.alloc(layout(100_000, 8));
            a.dealloc(big, layout(100_000, 8));
            assert_eq!(a.alloc(layout(99_000, 1)), big);
        }
    }

    #[test]
    fn many_live_blocks_of_mixed_sizes_keep_their_contents() {
        let a = classes();
        let sizes = [1usize, 7, 16, 17, 100, 129, 300, 1000, 4096, 5000, 32 * 1024, 40 * 1024, 100_000];
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        unsafe {
            for round in 0..50u8 {
                for (i, &s) in sizes.iter().enumerate() {
                    let p = a.alloc(layout(s, 8));
                    assert!(!p.is_null());
                    assert_eq!(p as usize % 16, 0);
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
    fn realloc_keeps_the_contents_across_classes_and_large_blocks() {
        let a = classes();
        unsafe {
            let mut p = a.alloc(layout(10, 1));
            for k in 0..10 {
                *p.add(k) = k as u8;
            }
            let mut size = 10;
            for new in [12, 100, 1000, 20_000, 70_000, 200_000, 3000, 5] {
                let q = a.realloc(p, layout(size, 1), new);
                assert!(!q.is_null());
                if class_of(new).map(|c| c.0) == class_of(size).map(|c| c.0) {
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
    fn alignments_above_sixteen_are_aligned_within_a_larger_block() {
        let a = classes();
        unsafe {
            let mut live = Vec::new();
            for (size, align) in [(64, 64), (1, 32), (5000, 4096), (100, 128)] {
                let p = a.alloc(layout(size, align));
                assert_eq!(p as usize % align, 0);
                ptr::write_bytes(p, 0xAB, size);
                live.push((p, size, align));
            }
            // Grown and shrunk, still aligned, the contents kept.
            let (p, size, align) = live[0];
            let q = a.realloc(p, layout(size, align), 10_000);
            assert_eq!(q as usize % align, 0);
            assert!((0..size).all(|k| *q.add(k) == 0xAB));
            live[0] = (q, 10_000, align);
            for (p, size, align) in live {
                a.dealloc(p, layout(size, align));
            }
            // The block under the first one freed comes back for its padded size.
            let p = a.alloc(layout(64, 64));
            a.dealloc(p, layout(64, 64));
            assert_eq!(a.alloc(layout(64, 64)), p);
        }
        assert_eq!(unsafe { a.alloc(layout(MOST, 32)) }, ptr::null_mut(), "above 2 GiB with its padding: refused");
    }

    #[test]
    fn the_c_functions_give_what_the_rust_side_frees_and_calloc_zeroes() {
        let a = classes();
        unsafe {
            // The proxy's buffer, freed as the Vec<u8> of its size: its block comes back.
            let p = c::malloc(&a, 100);
            ptr::write_bytes(p, 0xFF, 100);
            a.dealloc(p, layout(100, 1));
            let z = c::calloc(&a, 10, 10);
            assert_eq!(z, p, "the same block");
            assert!((0..100).all(|k| *z.add(k) == 0), "zeroed");
            assert_eq!(c::calloc(&a, usize::MAX, 2), ptr::null_mut());
            assert_eq!(c::malloc(&a, usize::MAX), ptr::null_mut());
            // Zero bytes: no block, as an empty boxed slice.
            assert_eq!(c::malloc(&a, 0) as usize, ALIGN);
            let next = c::malloc(&a, 100);
            assert_ne!(next, p);
            for (align, size) in [(32, 10), (4096, 100), (16, 0), (1, 1)] {
                let q = c::aligned(&a, align, size);
                assert_eq!(q as usize % align, 0);
                ptr::write_bytes(q, 1, size);
            }
        }
    }
}
