//! Which otherwise valid tokens are refused: logged-out `jti`s, users whose sessions were ended
//! (session epoch), and disabled users.
//!
//! The rule this module keeps: the check on the request path is a read of in-memory maps under a
//! short `std` lock that is never held across an `.await`, and never waits on a sync. A full load
//! builds its new state outside any lock ([`Snapshot`]) and swaps it in with one pointer move;
//! local changes made while it was loading are replayed onto it, and the old state is dropped
//! after the lock is released. The store is the record; this is its cache, filled at start-up,
//! updated by the handlers that change it, by the change log (`store::changes`) and, with Redis,
//! by other replicas.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use crate::auth::jwt::VerifiedToken;
use crate::error::AuthFailure;

/// What restricts one user's tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGate {
    pub disabled: bool,
    /// Tokens whose `ep` claim is below this are refused.
    pub min_epoch: i64,
    /// One token kept alive across an epoch bump (the session that changed the password).
    pub exempt_jti: Option<String>,
    /// When the epoch last moved (unix seconds): the gate matters until tokens issued before
    /// then have expired.
    pub moved_at: i64,
}

impl UserGate {
    fn restricts(&self) -> bool {
        self.disabled || self.min_epoch > 0
    }
}

/// A revoked `jti`, kept small: the gateway's own are 32 hex digits (a UUID), held as 16 bytes
/// (byte-aligned, so an entry is 20 bytes, not the 32 a `u128` key would take); any other
/// spelling is kept as text. The value is the token's `exp`, saturated to `u32` (seconds until
/// 2106), after which the entry may go.
type HexJtis = HashMap<[u8; 16], u32, foldhash::fast::RandomState>;
type TextJtis = HashMap<Box<str>, u32, foldhash::fast::RandomState>;

fn hex_jti(jti: &str) -> Option<[u8; 16]> {
    // Only the canonical lowercase form maps to bytes, so two spellings never share a key.
    (jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| u128::from_str_radix(jti, 16).ok())
        .flatten()
        .map(u128::to_be_bytes)
}

/// Below this many loaded revocations a plain binary search is as good as the prefix index.
const INDEX_FROM: usize = 1 << 14;

/// The prefix index of a sorted array: 65,537 start positions, one per two-byte prefix and the
/// end (256 KiB); empty for a small array (or one too large for `u32` positions).
fn prefix_index(sorted: &[([u8; 16], u32)]) -> Vec<u32> {
    if sorted.len() < INDEX_FROM || u32::try_from(sorted.len()).is_err() {
        return Vec::new();
    }
    let mut index = Vec::with_capacity(65_537);
    let mut at = 0usize;
    for p in 0..=u16::MAX {
        while at < sorted.len() && u16::from_be_bytes([sorted[at].0[0], sorted[at].0[1]]) < p {
            at += 1;
        }
        index.push(at as u32);
    }
    index.push(sorted.len() as u32);
    index
}

fn exp32(exp: u64) -> u32 {
    u32::try_from(exp).unwrap_or(u32::MAX)
}

/// The revocation state: what the request path reads. A full load fills `loaded`, a sorted
/// array of 20-byte entries (no hash table's empty buckets); later additions go to `hex`.
#[derive(Default)]
pub struct Snapshot {
    loaded: Vec<([u8; 16], u32)>,
    /// For a large `loaded`: where the entries whose first two bytes are `p` start
    /// (`index[p]..index[p + 1]`), so a lookup binary-searches a few neighbours, in a cache line
    /// or two, instead of touching ~20 far-apart entries of a 20 MB array. Empty when small.
    index: Vec<u32>,
    hex: HexJtis,
    text: TextJtis,
    users: HashMap<Box<str>, UserGate, foldhash::fast::RandomState>,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    fn revoke_jti(&mut self, jti: &str, exp: u64) {
        match hex_jti(jti) {
            Some(k) => self.hex.insert(k, exp32(exp)),
            None => self.text.insert(jti.into(), exp32(exp)),
        };
    }

    /// Room for `n` loaded revocations, allocated once: growing the array by doubling would
    /// leave the allocator holding the freed halves (glibc then raises its mmap threshold and
    /// keeps later large blocks on the heap), about 20 MB at a million.
    pub fn reserve_loaded(&mut self, n: usize) {
        self.loaded.reserve_exact(n);
    }

    /// A revocation read by a full load: appended unsorted to the array, which
    /// [`Revocations::swap`] sorts before it publishes the snapshot.
    pub fn load_jti(&mut self, jti: &str, exp: u64) {
        match hex_jti(jti) {
            Some(k) => self.loaded.push((k, exp32(exp))),
            None => {
                self.text.insert(jti.into(), exp32(exp));
            }
        }
    }

    /// Make the loaded revocations searchable (sorted, one entry per id), and give back the
    /// array's spare room.
    fn seal(&mut self) {
        self.loaded.sort_unstable_by_key(|e| e.0);
        self.loaded.dedup_by(|a, b| a.0 == b.0);
        self.loaded.shrink_to_fit();
        self.index = prefix_index(&self.loaded);
    }

    /// Whether `k` is in the sorted array.
    fn loaded_has(&self, k: &[u8; 16]) -> bool {
        let range = match self.index.as_slice() {
            [] => &self.loaded[..],
            index => {
                let p = usize::from(u16::from_be_bytes([k[0], k[1]]));
                let (from, to) = (index[p] as usize, index[p + 1] as usize);
                self.loaded.get(from..to).unwrap_or_default()
            }
        };
        range.binary_search_by(|(e, _)| e.cmp(k)).is_ok()
    }

    pub fn set_user(&mut self, user_id: &str, gate: UserGate) {
        if gate.restricts() {
            self.users.insert(user_id.into(), gate);
        } else {
            self.users.remove(user_id);
        }
    }

    fn is_revoked(&self, jti: &str) -> bool {
        match hex_jti(jti) {
            Some(k) => (!self.hex.is_empty() && self.hex.contains_key(&k)) || self.loaded_has(&k),
            None => !self.text.is_empty() && self.text.contains_key(jti),
        }
    }

    /// How many revoked `jti`s and gated users this holds (an id both loaded and added later
    /// counts twice).
    pub fn len(&self) -> (usize, usize) {
        (self.loaded.len() + self.hex.len() + self.text.len(), self.users.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

/// A change to apply to the state (from a handler here, the change log, or another replica).
#[derive(Debug, Clone)]
enum Local {
    Jti(String, u64),
    User(String, UserGate),
}

#[derive(Default)]
pub struct Revocations {
    state: RwLock<Snapshot>,
    /// While a new state is being built, local changes are recorded here too, and replayed onto
    /// it when it is swapped in.
    replay: Mutex<Option<Vec<Local>>>,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuse a verified token that was revoked since it was issued.
    pub fn check(&self, user_id: &str, token: &VerifiedToken) -> Result<(), AuthFailure> {
        // A poisoned lock fails closed.
        let state = self.state.read().map_err(|_| AuthFailure::Revoked)?;
        if let Some(jti) = &token.jti
            && state.is_revoked(jti)
        {
            return Err(AuthFailure::Revoked);
        }
        gate_check(&state, user_id, token.epoch, token.jti.as_deref())
    }

    /// Refuse a user who is disabled, or a session older than the user's epoch.
    pub fn check_user(&self, user_id: &str, epoch: i64, jti: Option<&str>) -> Result<(), AuthFailure> {
        let state = self.state.read().map_err(|_| AuthFailure::Revoked)?;
        gate_check(&state, user_id, epoch, jti)
    }

    pub fn is_disabled(&self, user_id: &str) -> bool {
        self.state
            .read()
            .map(|s| s.users.get(user_id).is_some_and(|g| g.disabled))
            .unwrap_or(true)
    }

    pub fn revoke_jti(&self, jti: &str, exp: u64) {
        self.record(Local::Jti(jti.to_owned(), exp));
        if let Ok(mut s) = self.state.write() {
            s.revoke_jti(jti, exp);
        }
    }

    /// Record a user's gate (after a disable, an epoch bump, or a message from another replica).
    /// A gate with an older epoch than the one held never replaces it: messages may come late.
    pub fn set_user(&self, user_id: &str, gate: UserGate) {
        self.record(Local::User(user_id.to_owned(), gate.clone()));
        if let Ok(mut s) = self.state.write() {
            set_newer(&mut s, user_id, gate);
        }
    }

    pub fn user(&self, user_id: &str) -> UserGate {
        self.state
            .read()
            .ok()
            .and_then(|s| s.users.get(user_id).cloned())
            .unwrap_or_default()
    }

    fn record(&self, change: Local) {
        if let Ok(mut replay) = self.replay.lock()
            && let Some(pending) = replay.as_mut()
        {
            pending.push(change);
        }
    }

    /// Start building a new state: from now on local changes are kept for [`Revocations::swap`].
    pub fn begin_rebuild(&self) {
        if let Ok(mut replay) = self.replay.lock() {
            *replay = Some(Vec::new());
        }
    }

    /// Put `fresh` in place of the current state, with the local changes made since
    /// [`Revocations::begin_rebuild`] replayed onto it and exemptions carried over for gates
    /// whose epoch did not move. Readers wait only for the pointer swap and the replay; the old
    /// state is dropped after the lock is released.
    pub fn swap(&self, mut fresh: Snapshot) {
        // Sorted here, before the lock, so no snapshot is ever published unsearchable.
        fresh.seal();
        let pending = self.replay.lock().ok().and_then(|mut r| r.take()).unwrap_or_default();
        let old = match self.state.write() {
            Ok(mut state) => {
                for (id, gate) in fresh.users.iter_mut() {
                    if gate.exempt_jti.is_none()
                        && let Some(held) = state.users.get(id)
                        && held.min_epoch == gate.min_epoch
                    {
                        gate.exempt_jti = held.exempt_jti.clone();
                    }
                }
                for change in pending {
                    match change {
                        Local::Jti(jti, exp) => fresh.revoke_jti(&jti, exp),
                        Local::User(id, gate) => set_newer(&mut fresh, &id, gate),
                    }
                }
                std::mem::replace(&mut *state, fresh)
            }
            Err(_) => return,
        };
        drop(old);
    }

    /// A rebuild that failed: stop recording local changes for it.
    pub fn abandon_rebuild(&self) {
        if let Ok(mut replay) = self.replay.lock() {
            *replay = None;
        }
    }

    /// Forget revoked `jti`s past their expiry, and gates whose epoch moved before `moved_before`
    /// (every token they could refuse has expired) unless the user is disabled. Built aside and
    /// swapped in like a load, so requests never wait for the scan.
    pub fn purge(&self, now: u64, moved_before: i64) {
        self.begin_rebuild();
        let fresh = match self.state.read() {
            Ok(s) => {
                let now = exp32(now);
                let mut fresh = Snapshot::new();
                // Later additions join the sorted array: the purge compacts as it goes.
                fresh.loaded.reserve_exact(s.loaded.len() + s.hex.len());
                fresh.loaded.extend(s.loaded.iter().filter(|(_, e)| *e > now).copied());
                fresh
                    .loaded
                    .extend(s.hex.iter().filter(|(_, e)| **e > now).map(|(k, e)| (*k, *e)));
                fresh.text = s
                    .text
                    .iter()
                    .filter(|(_, e)| **e > now)
                    .map(|(k, e)| (k.clone(), *e))
                    .collect();
                fresh.users = s
                    .users
                    .iter()
                    .filter(|(_, g)| g.disabled || g.moved_at >= moved_before)
                    .map(|(k, g)| (k.clone(), g.clone()))
                    .collect();
                fresh
            }
            Err(_) => {
                self.abandon_rebuild();
                return;
            }
        };
        self.swap(fresh);
    }

    pub fn revoked_count(&self) -> usize {
        self.state.read().map(|s| s.len().0).unwrap_or(0)
    }

    /// How many users' tokens are restricted now.
    pub fn gated_count(&self) -> usize {
        self.state.read().map(|s| s.len().1).unwrap_or(0)
    }
}

fn gate_check(state: &Snapshot, user_id: &str, epoch: i64, jti: Option<&str>) -> Result<(), AuthFailure> {
    if let Some(gate) = state.users.get(user_id) {
        if gate.disabled {
            return Err(AuthFailure::Revoked);
        }
        let exempt = jti.is_some() && gate.exempt_jti.as_deref() == jti;
        if epoch < gate.min_epoch && !exempt {
            return Err(AuthFailure::Revoked);
        }
    }
    Ok(())
}

/// Set a gate unless the one held has a later epoch (a late message must not undo a newer move);
/// at the same epoch the newer news wins (disable and enable keep the epoch).
fn set_newer(state: &mut Snapshot, user_id: &str, gate: UserGate) {
    if state
        .users
        .get(user_id)
        .is_some_and(|held| held.min_epoch > gate.min_epoch)
    {
        return;
    }
    state.set_user(user_id, gate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::UserId;

    fn tok(jti: &str, epoch: i64) -> VerifiedToken {
        VerifiedToken {
            user_id: UserId::parse("u1").unwrap(),
            jti: Some(jti.into()),
            iat: Some(1),
            exp: u64::MAX,
            epoch,
        }
    }

    #[test]
    fn revoked_jti_is_refused_and_others_pass() {
        let r = Revocations::new();
        r.revoke_jti("a", u64::MAX);
        assert_eq!(r.check("u1", &tok("a", 0)), Err(AuthFailure::Revoked));
        assert_eq!(r.check("u1", &tok("b", 0)), Ok(()));
    }

    #[test]
    fn hex_and_text_jtis_are_told_apart() {
        let r = Revocations::new();
        let hex = "0123456789abcdef0123456789abcdef";
        r.revoke_jti(hex, u64::MAX);
        assert_eq!(r.check("u1", &tok(hex, 0)), Err(AuthFailure::Revoked));
        // Another spelling of the same number is another jti.
        assert_eq!(r.check("u1", &tok(&hex.to_uppercase(), 0)), Ok(()));
        r.revoke_jti("not-hex", u64::MAX);
        assert_eq!(r.check("u1", &tok("not-hex", 0)), Err(AuthFailure::Revoked));
        assert_eq!(r.revoked_count(), 2);
    }

    #[test]
    fn loaded_revocations_are_found_after_the_seal_and_merged_by_a_purge() {
        let r = Revocations::new();
        let ids: Vec<String> = (0..1000u32).map(|i| format!("{:032x}", u128::from(i) * 7919)).collect();
        let mut fresh = Snapshot::new();
        for (i, id) in ids.iter().enumerate().rev() {
            fresh.load_jti(id, if i % 2 == 0 { 10 } else { 100 });
        }
        fresh.load_jti(&ids[3], 100);
        r.swap(fresh);
        assert_eq!(r.revoked_count(), 1000, "the duplicate is kept once");
        for id in &ids {
            assert_eq!(r.check("u1", &tok(id, 0)), Err(AuthFailure::Revoked), "{id}");
        }
        assert_eq!(r.check("u1", &tok(&format!("{:032x}", 1u128), 0)), Ok(()));
        r.revoke_jti("ffffffffffffffffffffffffffffffff", 100);
        r.purge(50, 0);
        assert_eq!(
            r.revoked_count(),
            501,
            "the even ones expired; the later one joined the array"
        );
        assert_eq!(
            r.check("u1", &tok("ffffffffffffffffffffffffffffffff", 0)),
            Err(AuthFailure::Revoked)
        );
        assert_eq!(r.check("u1", &tok(&ids[0], 0)), Ok(()));
        assert_eq!(r.check("u1", &tok(&ids[1], 0)), Err(AuthFailure::Revoked));
    }

    #[test]
    fn the_prefix_index_finds_exactly_what_a_binary_search_finds() {
        let ids: Vec<[u8; 16]> = (0..40_000u128)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)).to_be_bytes())
            .collect();
        let mut s = Snapshot::new();
        for k in ids.iter().step_by(2) {
            s.loaded.push((*k, 1));
        }
        s.seal();
        assert_eq!(s.index.len(), 65_537, "built for a large array");
        for (i, k) in ids.iter().enumerate() {
            assert_eq!(s.loaded_has(k), i % 2 == 0, "{i}");
        }
        assert!(!s.loaded_has(&[0xff; 16]), "past the last prefix");
        let mut small = Snapshot::new();
        small.loaded.push((ids[0], 1));
        small.seal();
        assert!(small.index.is_empty() && small.loaded_has(&ids[0]) && !small.loaded_has(&ids[1]));
    }

    #[test]
    fn epoch_bump_ends_older_sessions_except_the_exempt_one() {
        let r = Revocations::new();
        r.set_user(
            "u1",
            UserGate {
                disabled: false,
                min_epoch: 2,
                exempt_jti: Some("keep".into()),
                moved_at: 0,
            },
        );
        assert_eq!(r.check("u1", &tok("old", 1)), Err(AuthFailure::Revoked));
        assert_eq!(r.check("u1", &tok("keep", 1)), Ok(()));
        assert_eq!(r.check("u1", &tok("new", 2)), Ok(()));
        assert_eq!(r.check("u2", &tok("other", 0)), Ok(()));
    }

    #[test]
    fn disabled_user_is_refused() {
        let r = Revocations::new();
        r.set_user(
            "u1",
            UserGate {
                disabled: true,
                ..Default::default()
            },
        );
        assert_eq!(r.check("u1", &tok("x", 5)), Err(AuthFailure::Revoked));
        r.set_user("u1", UserGate::default());
        assert_eq!(r.check("u1", &tok("x", 5)), Ok(()));
    }

    #[test]
    fn a_late_gate_never_undoes_a_newer_epoch() {
        let r = Revocations::new();
        let gate = |epoch| UserGate {
            min_epoch: epoch,
            ..Default::default()
        };
        r.set_user("u1", gate(3));
        r.set_user("u1", gate(2));
        assert_eq!(r.user("u1").min_epoch, 3);
    }

    #[test]
    fn a_rebuild_keeps_local_changes_made_while_it_ran() {
        let r = Revocations::new();
        r.set_user(
            "u1",
            UserGate {
                min_epoch: 1,
                exempt_jti: Some("keep".into()),
                ..Default::default()
            },
        );
        r.begin_rebuild();
        // A snapshot read before these changes committed.
        let mut fresh = Snapshot::new();
        fresh.set_user(
            "u1",
            UserGate {
                min_epoch: 1,
                ..Default::default()
            },
        );
        r.revoke_jti("fresh", u64::MAX);
        r.set_user(
            "u2",
            UserGate {
                disabled: true,
                ..Default::default()
            },
        );
        r.swap(fresh);
        assert_eq!(r.check("u9", &tok("fresh", 0)), Err(AuthFailure::Revoked));
        assert!(r.is_disabled("u2"));
        assert_eq!(
            r.check("u1", &tok("keep", 0)),
            Ok(()),
            "the exemption survives at the same epoch"
        );
        // The recording stopped with the swap.
        r.revoke_jti("later", u64::MAX);
        r.swap(Snapshot::new());
        assert_eq!(r.check("u9", &tok("later", 0)), Ok(()));
    }

    #[test]
    fn purge_drops_expired_entries_and_old_moves_but_keeps_the_disabled() {
        let r = Revocations::new();
        r.revoke_jti("old", 10);
        r.revoke_jti("new", 100);
        let gate = |disabled, moved_at| UserGate {
            disabled,
            min_epoch: 1,
            exempt_jti: None,
            moved_at,
        };
        r.set_user("moved-long-ago", gate(false, 5));
        r.set_user("moved-lately", gate(false, 500));
        r.set_user("disabled", gate(true, 5));
        r.purge(50, 100);
        assert_eq!(r.revoked_count(), 1);
        assert_eq!(r.gated_count(), 2);
        assert!(r.is_disabled("disabled"));
        assert_eq!(r.user("moved-long-ago"), UserGate::default());
    }
}
