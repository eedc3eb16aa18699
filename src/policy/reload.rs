//! Hot reload: the live policy sits behind an atomic pointer; SIGHUP or a change under the
//! policy directory loads and validates a new one and swaps it in whole. A policy that fails
//! validation is rejected with a logged error and a counter; the old one keeps running.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::change::{self, Changes};
use super::{Policy, PolicyErrors};

/// What one reload did, as told to the reload hook (the system events of the record).
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    Accepted {
        old_digest: String,
        new_digest: String,
        changes: Changes,
    },
    Rejected {
        digest_in_force: String,
        errors: Vec<String>,
    },
}

/// Called after every reload attempt, from the thread that reloaded.
pub type ReloadHook = Box<dyn Fn(&ReloadOutcome) + Send + Sync>;

pub struct PolicyHandle {
    dir: PathBuf,
    /// The clinic's own resolvers, given to every policy loaded (see
    /// [`Policy::with_clinic_resolvers`]).
    clinic_resolvers: Vec<std::net::IpAddr>,
    current: ArcSwap<Policy>,
    digest: Mutex<String>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    hooks: Mutex<Vec<ReloadHook>>,
}

impl PolicyHandle {
    /// Load the policy once; fails if the first load is invalid (there is nothing to keep running).
    pub fn load(dir: &Path) -> Result<Arc<PolicyHandle>, PolicyErrors> {
        PolicyHandle::load_with(dir, &[])
    }

    /// [`PolicyHandle::load`] with the clinic's own resolvers (the daemon's `[dns] upstreams`
    /// and `[sensor] internal_resolvers`), excepted by this policy and every one reloaded.
    pub fn load_with(
        dir: &Path,
        clinic_resolvers: &[std::net::IpAddr],
    ) -> Result<Arc<PolicyHandle>, PolicyErrors> {
        let p = Policy::load(dir)?.with_clinic_resolvers(clinic_resolvers);
        Ok(Arc::new(PolicyHandle {
            dir: dir.into(),
            clinic_resolvers: clinic_resolvers.to_vec(),
            current: ArcSwap::from_pointee(p),
            digest: Mutex::new(change::digest(dir)),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
        }))
    }

    /// SHA-256 of the policy files in force (see [`change::digest`]).
    pub fn digest(&self) -> String {
        self.digest.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Be told of every reload attempt (e.g. to record it as a system event); hooks add up.
    pub fn on_reload(&self, hook: ReloadHook) {
        if let Ok(mut h) = self.hooks.lock() {
            h.push(hook);
        }
    }

    fn tell(&self, outcome: &ReloadOutcome) {
        if let Ok(h) = self.hooks.lock() {
            for h in h.iter() {
                h(outcome);
            }
        }
    }

    /// The policy in force (cheap; hold it for one decision or a batch).
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Validate the directory again and swap it in if it is good.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        // The digest is taken before loading: a file changed during the load gives another
        // reload (the watcher sees the change), never a digest of files that were not loaded.
        let new_digest = change::digest(&self.dir);
        match Policy::load(&self.dir).map(|p| p.with_clinic_resolvers(&self.clinic_resolvers)) {
            Ok(p) => {
                let changes = Changes::between(&self.current(), &p);
                self.current.store(Arc::new(p));
                let old_digest = self
                    .digest
                    .lock()
                    .map(|mut d| std::mem::replace(&mut *d, new_digest.clone()))
                    .unwrap_or_default();
                self.tell(&ReloadOutcome::Accepted {
                    old_digest,
                    new_digest,
                    changes,
                });
                self.reloads.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                eprintln!("shadowgate: policy reloaded from {}", self.dir.display());
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "shadowgate: policy reload rejected, the previous policy stays in force:\n{e}"
                );
                if let Ok(mut le) = self.last_error.lock() {
                    *le = Some(e.to_string());
                }
                self.tell(&ReloadOutcome::Rejected {
                    digest_in_force: self.digest(),
                    errors: e.0.iter().map(|x| x.to_string()).collect(),
                });
                Err(e)
            }
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Reload on SIGHUP and on changes under the directory (debounced), from a background thread.
    /// The returned guard stops watching when dropped.
    pub fn watch(self: &Arc<Self>) -> std::io::Result<Watcher> {
        use notify::Watcher as _;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
        let sig_handle = signals.handle();
        let tx_sig = tx.clone();
        std::thread::Builder::new()
            .name("policy-sighup".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if tx_sig.send(()).is_err() {
                        break;
                    }
                }
            })?;
        let tx_fs = tx.clone();
        let mut fs = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if !ev.kind.is_access() {
                    let _ = tx_fs.send(());
                }
            }
        })
        .map_err(std::io::Error::other)?;
        fs.watch(&self.dir, notify::RecursiveMode::Recursive)
            .map_err(std::io::Error::other)?;
        let me = Arc::clone(self);
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("policy-reload".into())
            .spawn(move || loop {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(()) => {
                        // Editors write in several steps: wait for the directory to settle.
                        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
                        let _ = me.reload();
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(_) => break,
                }
            })?;
        Ok(Watcher {
            _fs: fs,
            sig: sig_handle,
            stop: Some(stop_tx),
            thread: Some(thread),
            _tx: tx,
        })
    }
}

/// Stops the reload watchers when dropped.
pub struct Watcher {
    _fs: notify::RecommendedWatcher,
    sig: signal_hook::iterator::Handle,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tx: std::sync::mpsc::Sender<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.sig.close();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
