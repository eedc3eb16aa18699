//! The process's memory allocator, and giving freed memory back to the kernel.
//!
//! With the default `jemalloc` feature the whole program (the daemon, the commands, the tests)
//! allocates with jemalloc, as Vector and TiKV do: a gateway daemon lives for months through
//! floods and outages that fill its queues and tables for a while, and glibc's malloc keeps the
//! high-water mark of those bursts (its per-thread arenas fragment; `malloc_trim` only returns
//! whole free pages). Measured in the soak (`bench/soak.sh`, docs/src/soak.md): with glibc the
//! daemon's RSS after a RELP outage, a disk-full hold and a LAN flood stayed about 10 % above its
//! warm-up level; with jemalloc, which purges unused dirty pages after a second ([`MALLOC_CONF`],
//! [`start_background_purge`]), it comes back. Without the feature (the fuzz targets, built with
//! sanitizer coverage) the system allocator is used and [`release_freed_memory`] asks glibc to
//! trim.

/// jemalloc's options, read once as it starts: dirty pages unused for a second
/// (`dirty_decay_ms`) are returned straight away (`muzzy_decay_ms:0`: no lazy MADV_FREE stage, so
/// RSS drops when the memory is returned), and at most 4 arenas (the daemon's threads are few and
/// long-lived; more arenas only hold more idle pages). The daemon adds a background thread that
/// does the purging on time ([`start_background_purge`]); without it jemalloc purges as the
/// program allocates.
#[cfg(feature = "jemalloc")]
pub const MALLOC_CONF: &str = "dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:4";

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// [`MALLOC_CONF`] as the C string jemalloc reads at start-up (`malloc_conf`; jemalloc is built
/// unprefixed, so it is the C libraries' `malloc` as well).
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> = Some(
    // The const's bytes with a NUL, checked at compile time below.
    &CONF_C[0],
);

#[cfg(feature = "jemalloc")]
const CONF_C: [std::ffi::c_char; MALLOC_CONF.len() + 1] = {
    let mut out = [0 as std::ffi::c_char; MALLOC_CONF.len() + 1];
    let b = MALLOC_CONF.as_bytes();
    let mut i = 0;
    while i < b.len() {
        assert!(b[i] != 0);
        out[i] = b[i] as std::ffi::c_char;
        i += 1;
    }
    out
};

/// Return the allocator's unused pages to the kernel now, after a table or a queue has given
/// back the room a burst took (the flow table after a flood, the store's hold after a full disk).
#[cfg(feature = "jemalloc")]
pub fn release_freed_memory() {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's unused dirty and muzzy pages.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: the name is a NUL-terminated string; a purge reads and writes no value, so the
    // old/new pointers are null with zero lengths, as mallctl's contract allows for void controls.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// Start jemalloc's background thread, which returns unused pages on time even while the daemon
/// is idle. The daemon calls it after dropping its privileges: capabilities are per thread and a
/// thread started before the drop would keep them (so it is not in [`MALLOC_CONF`], which would
/// start it with the process).
#[cfg(feature = "jemalloc")]
pub fn start_background_purge() -> Result<(), String> {
    tikv_jemalloc_ctl::background_thread::write(true).map_err(|e| {
        format!("jemalloc background thread not started ({e}): freed memory is still returned as the daemon allocates")
    })
}

/// The heap's figures, for `/metrics` and the soak: what the daemon's live objects take, and
/// what the allocator holds for them. RSS growth with flat `allocated` is the allocator's (idle
/// pages, fragmentation); growth in `allocated` is the program's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes in pages the allocator has touched and not returned (its part of RSS).
    pub resident: u64,
    /// Bytes of address space returned to the kernel but kept mapped for reuse (not in RSS).
    pub retained: u64,
}

/// The heap's figures now; `None` without jemalloc (glibc keeps no such totals).
#[cfg(feature = "jemalloc")]
pub fn heap() -> Option<Heap> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // jemalloc's totals are a snapshot refreshed when the epoch advances.
    epoch::advance().ok()?;
    Some(Heap {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        retained: stats::retained::read().ok()? as u64,
    })
}

#[cfg(not(feature = "jemalloc"))]
pub fn heap() -> Option<Heap> {
    None
}

/// Without jemalloc there is no purging thread to start.
#[cfg(not(feature = "jemalloc"))]
pub fn start_background_purge() -> Result<(), String> {
    Ok(())
}

/// Return the allocator's free pages to the kernel (glibc keeps freed memory in its arenas).
#[cfg(all(not(feature = "jemalloc"), target_os = "linux", target_env = "gnu"))]
pub fn release_freed_memory() {
    // SAFETY: malloc_trim takes no pointer and touches only glibc's own free lists (under its
    // arena locks); it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(
    not(feature = "jemalloc"),
    not(all(target_os = "linux", target_env = "gnu"))
))]
pub fn release_freed_memory() {}

#[cfg(test)]
mod tests {
    #[test]
    fn release_after_a_burst_does_not_disturb_live_memory() {
        let keep: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1000]).collect();
        let burst: Vec<Vec<u8>> = (0..10_000).map(|i| vec![i as u8; 4096]).collect();
        drop(burst);
        super::release_freed_memory();
        assert!(keep
            .iter()
            .enumerate()
            .all(|(i, v)| v.iter().all(|&b| b == i as u8)));
    }

    /// A jemalloc control's value; `T` must be the control's C type.
    #[cfg(feature = "jemalloc")]
    fn control<T: Copy + Default>(name: &std::ffi::CStr) -> T {
        let mut v = T::default();
        let mut len = std::mem::size_of::<T>();
        // SAFETY: a NUL-terminated name; `v` is a live out value of `len` bytes, the size the
        // control's type has (jemalloc checks it and fails with EINVAL otherwise).
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&mut v as *mut T).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "{name:?}");
        v
    }

    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_reads_the_configuration() {
        // opt.dirty_decay_ms reflects MALLOC_CONF only if jemalloc read malloc_conf.
        assert_eq!(control::<isize>(c"opt.dirty_decay_ms"), 1000);
        assert_eq!(control::<isize>(c"opt.muzzy_decay_ms"), 0);
        assert!(
            !control::<bool>(c"opt.background_thread"),
            "the background thread starts only when the daemon asks, after its privilege drop"
        );
    }

    #[cfg(feature = "jemalloc")]
    #[test]
    fn the_heap_figures_follow_allocations() {
        let before = super::heap().expect("jemalloc keeps statistics");
        assert!(before.allocated > 0 && before.resident > 0, "{before:?}");
        // Other tests allocate and free in parallel, so only what this test holds is certain:
        // while it holds 64 MiB (written, so resident), the totals are at least that.
        let big: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i + 1; 1 << 20]).collect();
        let during = super::heap().unwrap();
        assert!(during.allocated >= 64 << 20, "{during:?}");
        assert!(during.resident >= 64 << 20, "{during:?}");
        assert!(big
            .iter()
            .enumerate()
            .all(|(i, v)| v[v.len() - 1] == i as u8 + 1));
    }
}
