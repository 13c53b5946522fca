//! The live connections: one [`Session`] per authenticated connection, found by client
//! id so that velt can force one closed, and the revocation marks that close the race
//! between "admitted with a token that was valid a moment ago" and "token revoked".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::principal::{Owned, Principal};

/// One authenticated connection, shared by its edge wrapper, the auth handler that
/// admits it and the registry.
#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: String,
    pub principal: Principal,
    /// User principals: the devices they own, filled in while admitting.
    pub owned: OnceLock<Owned>,
    /// Set by the auth handler once the database agreed.
    pub admitted: AtomicBool,
    /// Set when velt wants the connection gone; every later read or write fails.
    cancelled: AtomicBool,
    /// [`Registry::generation`] when the CONNECT was read.
    generation: u64,
}

impl Session {
    pub fn new(client_id: String, principal: Principal, generation: u64) -> Self {
        Session {
            client_id,
            principal,
            owned: OnceLock::new(),
            admitted: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            generation,
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The devices owned by a user principal (empty until admitted, and for others).
    pub fn owned(&self) -> &Owned {
        static NONE: OnceLock<Owned> = OnceLock::new();
        self.owned
            .get()
            .unwrap_or_else(|| NONE.get_or_init(HashSet::new))
    }

    /// Whether revoking `device_id` concerns this connection.
    fn involves(&self, device_id: i64) -> bool {
        match &self.principal {
            Principal::Device { device_id: id, .. } => *id == device_id,
            Principal::User { .. } => self.owned().contains(&device_id),
            Principal::Service { .. } => false,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<String, Arc<Session>>,
    /// device id -> generation of its last revocation.
    revoked: HashMap<i64, u64>,
    generation: u64,
}

/// client id -> the live session with that id (rumqttd keeps at most one).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps behind: still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts revocations; a session remembers it from its CONNECT.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Registers an admitted session (its CONNACK is being written). Returns false if a
    /// device it involves was revoked since its CONNECT was read: its database check may
    /// have seen the state before the revocation, so it must be closed again.
    pub fn register(&self, session: &Arc<Session>) -> bool {
        let mut inner = self.lock();
        inner
            .live
            .insert(session.client_id.clone(), session.clone());
        let stale = inner
            .revoked
            .iter()
            .any(|(device, at)| *at > session.generation && session.involves(*device));
        !stale
    }

    /// Removes `session` if it is still the live one for its client id.
    pub fn unregister(&self, session: &Arc<Session>) {
        let mut inner = self.lock();
        if inner
            .live
            .get(&session.client_id)
            .is_some_and(|live| Arc::ptr_eq(live, session))
        {
            inner.live.remove(&session.client_id);
        }
    }

    /// Marks `device_id` revoked and returns the live sessions it concerns: the device's
    /// own connection and users watching it.
    pub fn revoke_device(&self, device_id: i64) -> Vec<Arc<Session>> {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        inner.revoked.insert(device_id, generation);
        inner
            .live
            .values()
            .filter(|session| session.involves(device_id))
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.lock().live.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_session(registry: &Registry, id: i64) -> Arc<Session> {
        Arc::new(Session::new(
            format!("dev-{id}"),
            Principal::Device {
                device_id: id,
                owner: 1,
                token_version: 1,
            },
            registry.generation(),
        ))
    }

    #[test]
    fn a_revocation_between_connect_and_connack_makes_the_session_stale() {
        let registry = Registry::default();
        let early = device_session(&registry, 5);
        let other = device_session(&registry, 6);
        assert!(registry.revoke_device(5).is_empty());
        assert!(!registry.register(&early), "revoked after its CONNECT");
        assert!(registry.register(&other), "another device");
        let late = device_session(&registry, 5);
        assert!(registry.register(&late), "CONNECT after the revocation");
        assert_eq!(registry.revoke_device(5).len(), 1);
    }

    #[test]
    fn users_watching_a_device_are_involved() {
        let registry = Registry::default();
        let user = Arc::new(Session::new(
            "user-1".into(),
            Principal::User { user_id: 1 },
            registry.generation(),
        ));
        user.owned.set([5].into()).unwrap();
        assert!(registry.register(&user));
        assert_eq!(registry.revoke_device(5).len(), 1);
        assert!(registry.revoke_device(6).is_empty());
        registry.unregister(&user);
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn only_the_live_session_is_unregistered() {
        let registry = Registry::default();
        let old = device_session(&registry, 5);
        let new = device_session(&registry, 5);
        registry.register(&old);
        registry.register(&new);
        registry.unregister(&old);
        assert_eq!(registry.len(), 1);
        registry.unregister(&new);
        assert_eq!(registry.len(), 0);
    }
}
