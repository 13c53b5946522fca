//! Acknowledgement bookkeeping: which `Ack{seq}` to send a device after one of its
//! batches is committed. Pure logic; the MQTT side lives in [`super::mqtt`].
//!
//! An ack promises "every batch up to `seq` is stored", so it only moves over a
//! contiguous run of committed batches, starting from what was acknowledged before
//! (persisted per device, so a restart keeps the promise). A batch that arrives after a
//! gap (an earlier one went missing) is remembered, and the ack moves over it once the
//! device's resend fills the gap. Device seqs start at 1.

use std::collections::BTreeSet;

/// Batches remembered beyond a gap, per device; past this the device has to resend.
const MAX_AHEAD: usize = 4096;

#[derive(Debug, Default)]
pub struct AckState {
    acked: u64,
    ahead: BTreeSet<u64>,
}

impl AckState {
    /// A device whose batches up to `acked` are known to be stored.
    pub fn starting_at(acked: u64) -> Self {
        AckState {
            acked,
            ahead: BTreeSet::new(),
        }
    }

    /// The highest contiguous committed seq.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Batch `seq` is committed: the seq to acknowledge now.
    pub fn committed(&mut self, seq: u64) -> u64 {
        if seq <= self.acked {
            // A resend of something covered already (or a device whose counter was
            // reset): acknowledge exactly that batch, promising nothing more.
            return seq;
        }
        if seq > self.acked + 1 {
            if self.ahead.len() < MAX_AHEAD {
                self.ahead.insert(seq);
            }
            return self.acked;
        }
        self.acked = seq;
        while self.ahead.remove(&(self.acked + 1)) {
            self.acked += 1;
        }
        let acked = self.acked;
        self.ahead.retain(|&s| s > acked);
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_batches_are_acked_one_by_one() {
        let mut state = AckState::default();
        assert_eq!([1, 2, 3].map(|s| state.committed(s)), [1, 2, 3]);
        assert_eq!(state.acked(), 3);
    }

    #[test]
    fn a_gap_holds_the_ack_until_it_is_filled() {
        let mut state = AckState::starting_at(1);
        assert_eq!(state.committed(3), 1, "2 is missing");
        assert_eq!(state.committed(4), 1);
        assert_eq!(state.committed(2), 4, "the resend fills the gap");
        assert_eq!(state.committed(5), 5);
    }

    #[test]
    fn a_restart_continues_from_the_persisted_ack() {
        let mut state = AckState::starting_at(150);
        assert_eq!(state.committed(251), 150, "151..=250 are still owed");
        assert_eq!(state.committed(151), 151);
    }

    #[test]
    fn resends_of_acked_batches_ack_themselves() {
        let mut state = AckState::starting_at(3);
        assert_eq!(state.committed(2), 2);
        assert_eq!(state.acked(), 3);
        assert_eq!(state.committed(4), 4);
    }
}
