//! Argon2id password hashing and verification, off the async runtime's worker threads.
//!
//! The rule this module keeps: argon2 only ever runs on the gateway's own hashing threads, which
//! run at a lowered CPU priority (nice 10 by default), so a proxy worker that wakes up preempts a
//! hash instead of queueing behind it; and at most `concurrency` hashes run at once (a semaphore
//! permit is taken before the job is queued and travels with it), so a login burst queues instead
//! of starving the proxy. Passwords are moved in, never
//! logged, and a stored hash that does not parse simply fails verification: nothing here panics.
//! Unknown users are verified against a precomputed dummy hash so they cost the same time.
//!
//! Memory: each hashing thread keeps one argon2 memory block (`password.memory_kib`) and hashes
//! into it every time, so the gateway holds at most `hash_concurrency` of them, whatever the
//! traffic; a thread that has not hashed for `password.memory_idle_timeout` (2 s) gives its block
//! back to the system, so a burst's memory is gone soon after it. Allocating a fresh block per
//! hash (the argon2 crate's default) let glibc keep every freed block in the thread's arena: ten
//! logins left about 200 MiB behind (issue 20). Each block reserves its own mapping (see
//! [`RESERVE_BLOCKS`]) so that giving it back really unmaps it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waits for a hashing slot before it is told the service is overloaded.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Stored hashes asking for more memory than this (KiB) are refused rather than computed, so a
/// corrupted or planted row cannot make verification allocate without bound (1 GiB).
const MAX_VERIFY_MEMORY_KIB: u32 = 1024 * 1024;

pub use crate::config::{DEFAULT_MEMORY_IDLE_TIMEOUT, PasswordParams};

/// Why hashing or verifying could not run (a wrong password is not an error: see [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Failed,
    #[error("password hashing is overloaded")]
    Busy,
}

/// Why the hashing pool could not start (`[password]`).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "password: invalid argon2 parameters: {0}. Fix: use values near the defaults (memory_kib = 19456, iterations = 2, parallelism = 1)"
    )]
    Params(argon2::Error),
    #[error(
        "password: cannot compute the dummy password hash: {0}. Fix: use values near the defaults (memory_kib = 19456, iterations = 2, parallelism = 1)"
    )]
    Dummy(argon2::password_hash::Error),
    #[error(
        "password.hash_concurrency: cannot start a password hashing thread: {0}. Fix: lower password.hash_concurrency"
    )]
    Thread(std::io::Error),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The password matches.
    pub ok: bool,
    /// The stored hash was made with another algorithm, version or cost than today's: store a
    /// fresh hash of this (correct) password.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords with fixed Argon2id parameters.
pub struct Passwords {
    /// argon2 runs completed (hashes and verifications, dummy ones included).
    runs: Arc<std::sync::atomic::AtomicU64>,
    params: Params,
    slots: Arc<Semaphore>,
    dummy: Arc<str>,
    pool: HashPool,
}

type Job = Box<dyn FnOnce() + Send>;

/// thread-priority maps its 0..=99 scale onto niceness as `floor(39 * (1 - p / 99)) - 20`;
/// this picks the `p` that lands on `niceness` (0 gives nice 0, 22 gives 10, 0..=1 give 19).
fn priority_for_niceness(niceness: u32) -> thread_priority::ThreadPriority {
    let p = (99.0 * (1.0 - (f64::from(niceness.min(19)) + 20.5) / 39.0))
        .round()
        .clamp(0.0, 99.0) as u8;
    match thread_priority::ThreadPriorityValue::try_from(p) {
        Ok(v) => thread_priority::ThreadPriority::Crossplatform(v),
        Err(_) => thread_priority::ThreadPriority::Min,
    }
}

/// Threads that only run argon2, at a lowered priority. They exit when the `Passwords` is dropped.
struct HashPool {
    queue: Arc<Queue>,
}

/// The jobs waiting for a hashing thread. Each thread waits on `ready` with its own deadline, so
/// each can give its block back after `memory_idle_timeout` without a job.
struct Queue {
    jobs: std::sync::Mutex<Jobs>,
    ready: std::sync::Condvar,
}

struct Jobs {
    pending: std::collections::VecDeque<Job>,
    closed: bool,
}

impl Queue {
    /// The next job, or `None` once the pool is dropped. A thread holding a block that waits
    /// `release_after` without a job drops the block, then waits on.
    fn next(&self, release_after: Duration) -> Option<Job> {
        let mut jobs = self.jobs.lock().ok()?;
        loop {
            if let Some(job) = jobs.pending.pop_front() {
                return Some(job);
            }
            if jobs.closed {
                return None;
            }
            if holds_memory() {
                let (guard, waited) = self.ready.wait_timeout(jobs, release_after).ok()?;
                jobs = guard;
                if waited.timed_out() && jobs.pending.is_empty() {
                    // Unmapping takes a moment: not under the lock.
                    drop(jobs);
                    release_memory();
                    jobs = self.jobs.lock().ok()?;
                }
            } else {
                jobs = self.ready.wait(jobs).ok()?;
            }
        }
    }
}

impl HashPool {
    fn new(threads: usize, niceness: u32, release_after: Duration) -> Result<HashPool, PoolError> {
        let queue = Arc::new(Queue {
            jobs: std::sync::Mutex::new(Jobs {
                pending: std::collections::VecDeque::new(),
                closed: false,
            }),
            ready: std::sync::Condvar::new(),
        });
        for i in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("authgate-hash-{i}"))
                .spawn(move || {
                    MEMORY.with(|m| *m.borrow_mut() = Some(Vec::new()));
                    if niceness > 0 {
                        if let Err(e) = thread_priority::set_current_thread_priority(priority_for_niceness(niceness)) {
                            tracing::warn!(error = ?e, "cannot lower the hashing thread's priority");
                        }
                    }
                    while let Some(job) = queue.next(release_after) {
                        job();
                        if release_after.is_zero() {
                            release_memory();
                        }
                    }
                })
                .map_err(PoolError::Thread)?;
        }
        Ok(HashPool { queue })
    }

    /// Run `f` on a hashing thread and wait for its result; `runs` counts completed jobs.
    async fn run<T: Send + 'static>(
        &self,
        runs: &Arc<std::sync::atomic::AtomicU64>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runs = Arc::clone(runs);
        let job: Job = Box::new(move || {
            let out = f();
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = tx.send(out);
        });
        {
            let mut jobs = self.queue.jobs.lock().map_err(|_| PasswordError::Failed)?;
            jobs.pending.push_back(job);
        }
        self.queue.ready.notify_one();
        rx.await.map_err(|_| PasswordError::Failed)
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.queue.jobs.lock() {
            jobs.closed = true;
        }
        self.queue.ready.notify_all();
    }
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .field("p_cost", &self.params.p_cost())
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Validate the parameters and precompute the dummy hash (this hashes once, synchronously).
    pub fn new(params: PasswordParams) -> Result<Passwords, PoolError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self::with_concurrency(params, cores)
    }

    /// Like [`Passwords::new`], with at most `concurrency` hashes running at once, at nice 10.
    pub fn with_concurrency(params: PasswordParams, concurrency: usize) -> Result<Passwords, PoolError> {
        Self::with_pool(params, concurrency, 10)
    }

    /// `concurrency` hashing threads at CPU `niceness` (0 to 19; 0 leaves the priority alone),
    /// each keeping its block for [`DEFAULT_MEMORY_IDLE_TIMEOUT`] after its last hash.
    pub fn with_pool(params: PasswordParams, concurrency: usize, niceness: u32) -> Result<Passwords, PoolError> {
        Self::start(params, concurrency, niceness, DEFAULT_MEMORY_IDLE_TIMEOUT)
    }

    /// The gateway's hashing pool, as `[password]` says.
    pub fn from_config(c: &crate::config::PasswordConfig) -> Result<Passwords, PoolError> {
        Self::start(c.params, c.hash_concurrency, c.hash_niceness, c.memory_idle_timeout)
    }

    /// The pool; a hashing thread gives its block back after `release_after` without a hash
    /// (zero: after every hash).
    fn start(
        params: PasswordParams,
        concurrency: usize,
        niceness: u32,
        release_after: Duration,
    ) -> Result<Passwords, PoolError> {
        let params =
            Params::new(params.memory_kib, params.iterations, params.parallelism, None).map_err(PoolError::Params)?;
        let mut filler = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut filler);
        let dummy = hash_with(&params, &filler).map_err(PoolError::Dummy)?;
        Ok(Passwords {
            runs: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            params,
            pool: HashPool::new(concurrency, niceness.min(19), release_after)?,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::from(dummy),
        })
    }

    /// How many argon2 computations have run (for metrics and the equal-work tests).
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hash `password` into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let permit = self.slot().await?;
        let params = self.params.clone();
        self.pool
            .run(&self.runs, move || {
                let _permit = permit;
                hash_with(&params, password.as_bytes()).map_err(|_| PasswordError::Failed)
            })
            .await?
    }

    /// Check `password` against the stored PHC string `phc`. A hash that does not parse, or asks
    /// for an unreasonable amount of memory, verifies as `ok: false`.
    pub async fn verify(&self, password: String, phc: String) -> Result<Verdict, PasswordError> {
        let permit = self.slot().await?;
        let params = self.params.clone();
        self.pool
            .run(&self.runs, move || {
                let _permit = permit;
                verify_with(&params, password.as_bytes(), &phc)
            })
            .await
    }

    /// Spend the time a real verification would, for a user that does not exist.
    pub async fn verify_dummy(&self, password: String) -> Result<(), PasswordError> {
        let permit = self.slot().await?;
        let params = self.params.clone();
        let dummy = Arc::clone(&self.dummy);
        self.pool
            .run(&self.runs, move || {
                let _permit = permit;
                let _ = verify_with(&params, password.as_bytes(), &dummy);
            })
            .await
    }

    /// A hashing slot, or `Busy` when none frees up within [`QUEUE_WAIT`].
    async fn slot(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        match tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(PasswordError::Failed),
            Err(_elapsed) => Err(PasswordError::Busy),
        }
    }
}

thread_local! {
    /// A hashing thread's argon2 memory, reused by every hash it computes until the thread has
    /// been idle for `memory_idle_timeout` (`None` on any other thread, which allocates per hash:
    /// only the start-up dummy hash runs elsewhere).
    static MEMORY: RefCell<Option<Vec<Block>>> = const { RefCell::new(None) };
}

/// The address space each block reserves, in blocks (1 KiB each): just over 32 MiB. glibc serves
/// an allocation above its mmap threshold from a mapping of its own and unmaps it when freed, but
/// freeing one below 32 MiB (its `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit) raises the threshold to
/// that size for the whole process, and the next block then comes from the thread's arena, which
/// keeps it after it is freed. A block reserving more is always mapped on its own and given back
/// in full; only the pages argon2 writes are resident. (Other allocators map blocks this large
/// anyway.)
const RESERVE_BLOCKS: usize = 32 * 1024 + 4;

/// `blocks` zeroed argon2 blocks in a mapping of their own (see [`RESERVE_BLOCKS`]).
fn fresh_block(blocks: usize) -> Vec<Block> {
    let mut v = Vec::with_capacity(blocks.max(RESERVE_BLOCKS));
    v.resize(blocks, Block::default());
    v
}

/// Whether this thread holds an argon2 block now.
fn holds_memory() -> bool {
    MEMORY.with(|m| m.borrow().as_ref().is_some_and(|v| v.capacity() > 0))
}

/// Give this hashing thread's block back to the system (the next hash maps a fresh one).
fn release_memory() {
    MEMORY.with(|m| {
        if let Some(own) = m.borrow_mut().as_mut() {
            *own = Vec::new();
        }
    });
}

/// Run `f` on `blocks` argon2 blocks: this hashing thread's own, made for at most `keep` blocks
/// (today's cost) and then reused; a stored hash asking for more gets a one-off block.
fn with_memory<T>(blocks: usize, keep: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|m| match m.borrow_mut().as_mut() {
        Some(own) if blocks <= keep => {
            if own.len() < blocks {
                *own = fresh_block(keep);
            }
            f(&mut own[..blocks])
        }
        _ => f(&mut fresh_block(blocks)),
    })
}

/// What the argon2 crate's `PasswordHasher` computes, but in [`with_memory`]'s block.
fn compute<'a>(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    keep: usize,
    password: &[u8],
    salt: Salt<'a>,
) -> Result<PasswordHash<'a>, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = with_memory(params.block_count(), keep, |blocks| {
        Output::init_with(len, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut *blocks)?)
        })
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// Blocking: hash with a fresh random salt.
fn hash_with(params: &Params, password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let keep = params.block_count();
    Ok(compute(
        Algorithm::Argon2id,
        Version::V0x13,
        params,
        keep,
        password,
        salt.as_salt(),
    )?
    .to_string())
}

/// Blocking: verify against a stored PHC string, with the algorithm, version and cost written in
/// that string.
fn verify_with(current: &Params, password: &[u8], phc: &str) -> Verdict {
    const REFUSED: Verdict = Verdict {
        ok: false,
        needs_rehash: false,
    };
    let Ok(stored) = PasswordHash::new(phc) else {
        return REFUSED;
    };
    let Ok(stored_params) = Params::try_from(&stored) else {
        return REFUSED;
    };
    if stored_params.m_cost() > MAX_VERIFY_MEMORY_KIB.max(current.m_cost()) {
        return REFUSED;
    }
    let (Ok(algorithm), Some(salt), Some(expected)) =
        (Algorithm::try_from(stored.algorithm), stored.salt, &stored.hash)
    else {
        return REFUSED;
    };
    let version = match stored.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return REFUSED,
    };
    let computed = compute(
        algorithm,
        version,
        &stored_params,
        current.block_count(),
        password,
        salt,
    );
    // `Output`'s equality is constant-time.
    let ok = computed.is_ok_and(|c| c.hash.as_ref() == Some(expected));
    let needs_rehash = stored.algorithm != argon2::ARGON2ID_IDENT
        || stored.version != Some(Version::V0x13.into())
        || stored_params.m_cost() != current.m_cost()
        || stored_params.t_cost() != current.t_cost()
        || stored_params.p_cost() != current.p_cost();
    Verdict { ok, needs_rehash }
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    /// Cheap parameters so the tests run fast.
    fn small() -> PasswordParams {
        PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn hashing_threads_run_at_the_asked_niceness() {
        let p = Passwords::with_pool(small(), 1, 10).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // Read the hashing thread's own nice value from /proc (field 19 of stat).
        let nice = rt
            .block_on(p.pool.run(&p.runs, || {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                after.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
            }))
            .unwrap();
        assert_eq!(nice, 10);
    }

    #[test]
    fn default_is_the_owasp_minimum() {
        let p = PasswordParams::default();
        assert_eq!((p.memory_kib, p.iterations, p.parallelism), (19_456, 2, 1));
    }

    #[test]
    fn invalid_params_are_refused() {
        let bad = PasswordParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0,
        };
        assert!(Passwords::new(bad).is_err());
    }

    #[tokio::test]
    async fn hash_then_verify_is_ok() {
        let pw = Passwords::new(small()).unwrap();
        let phc = pw.hash("correct horse".to_owned()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        let v = pw.verify("correct horse".to_owned(), phc).await.unwrap();
        assert_eq!(
            v,
            Verdict {
                ok: true,
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_in_both_directions() {
        let pw = Passwords::new(small()).unwrap();
        let params = Params::new(1024, 1, 1, None).unwrap();
        let crate_hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // Ours, checked by the crate.
        let ours = pw.hash("tr0ub4dor".to_owned()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(crate_hasher.verify_password(b"tr0ub4dor", &parsed).is_ok());
        assert!(crate_hasher.verify_password(b"tr0ub4dor!", &parsed).is_err());
        // The crate's, checked by ours (on a hashing thread, in its reused block, twice).
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = crate_hasher.hash_password(b"tr0ub4dor", &salt).unwrap().to_string();
        for _ in 0..2 {
            let v = pw.verify("tr0ub4dor".to_owned(), theirs.clone()).await.unwrap();
            assert!(v.ok && !v.needs_rehash, "{v:?}");
            assert!(!pw.verify("tr0ub4dor!".to_owned(), theirs.clone()).await.unwrap().ok);
        }
        // A hash costing more memory than today's is verified in a one-off block.
        let bigger = Params::new(2048, 1, 1, None).unwrap();
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, bigger)
            .hash_password(b"tr0ub4dor", &salt)
            .unwrap()
            .to_string();
        let v = pw.verify("tr0ub4dor".to_owned(), phc).await.unwrap();
        assert!(v.ok && v.needs_rehash, "{v:?}");
    }

    #[test]
    fn a_hashing_threads_block_is_kept_up_to_todays_cost_only() {
        MEMORY.with(|m| *m.borrow_mut() = Some(Vec::new()));
        with_memory(8, 16, |b| assert_eq!(b.len(), 8));
        with_memory(16, 16, |b| assert_eq!(b.len(), 16));
        with_memory(4, 16, |b| assert_eq!(b.len(), 4));
        with_memory(64, 16, |b| assert_eq!(b.len(), 64));
        assert_eq!(MEMORY.with(|m| m.borrow().as_ref().map(Vec::len)), Some(16));
        MEMORY.with(|m| *m.borrow_mut() = None);
        with_memory(8, 16, |b| assert_eq!(b.len(), 8));
        assert_eq!(MEMORY.with(|m| m.borrow().as_ref().map(Vec::len)), None);
    }

    #[test]
    fn an_idle_hashing_thread_gives_its_block_back() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for (release_after, kept_right_after) in [(Duration::from_millis(300), true), (Duration::ZERO, false)] {
            let p = Passwords::start(small(), 1, 0, release_after).unwrap();
            rt.block_on(async {
                p.hash("pw".to_owned()).await.unwrap();
                // One thread: this job runs where the hash ran.
                assert_eq!(p.pool.run(&p.runs, holds_memory).await.unwrap(), kept_right_after);
                tokio::time::sleep(release_after + Duration::from_millis(500)).await;
                assert!(
                    !p.pool.run(&p.runs, holds_memory).await.unwrap(),
                    "given back when idle"
                );
                // And the next hash maps a fresh one, with the same result as ever.
                let phc = p.hash("pw".to_owned()).await.unwrap();
                assert!(p.verify("pw".to_owned(), phc).await.unwrap().ok);
            });
        }
    }

    #[test]
    fn a_block_reserves_a_mapping_of_its_own() {
        let b = fresh_block(8);
        assert_eq!(b.len(), 8);
        assert!(b.capacity() * std::mem::size_of::<Block>() > 32 << 20);
    }

    #[tokio::test]
    async fn wrong_password_is_not_ok() {
        let pw = Passwords::new(small()).unwrap();
        let phc = pw.hash("correct horse".to_owned()).await.unwrap();
        let v = pw.verify("battery staple".to_owned(), phc).await.unwrap();
        assert!(!v.ok);
    }

    #[tokio::test]
    async fn hash_made_with_weaker_params_verifies_and_asks_for_rehash() {
        let weak = Passwords::new(PasswordParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let phc = weak.hash("s3cret".to_owned()).await.unwrap();
        let current = Passwords::new(PasswordParams {
            memory_kib: 8192,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        let v = current.verify("s3cret".to_owned(), phc.clone()).await.unwrap();
        assert_eq!(
            v,
            Verdict {
                ok: true,
                needs_rehash: true
            }
        );
        let v = current.verify("nope".to_owned(), phc).await.unwrap();
        assert!(!v.ok);
    }

    #[tokio::test]
    async fn other_algorithm_asks_for_rehash() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let phc = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let v = Passwords::new(small())
            .unwrap()
            .verify("pw".to_owned(), phc)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verdict {
                ok: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn garbage_hash_is_not_ok() {
        let pw = Passwords::new(small()).unwrap();
        for phc in [
            "",
            "garbage",
            "$argon2id$",
            "$argon2id$v=19$m=1024,t=1,p=1$",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$!!!",
            "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1024,t=1,p=1,x=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=1,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let v = pw.verify("pw".to_owned(), phc.to_owned()).await.unwrap();
            assert!(!v.ok, "{phc}");
        }
    }

    #[tokio::test]
    async fn verify_dummy_runs() {
        let pw = Passwords::new(small()).unwrap();
        pw.verify_dummy("anything".to_owned()).await.unwrap();
        // The dummy hash is a real hash with today's parameters, not a cheap stand-in.
        assert!(pw.dummy.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
    }

    #[test]
    fn debug_shows_costs_only() {
        let pw = Passwords::new(small()).unwrap();
        let text = format!("{pw:?}");
        assert!(text.contains("m_cost: 1024") && !text.contains("$argon2"), "{text}");
    }
}
