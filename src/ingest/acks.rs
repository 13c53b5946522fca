//! Acknowledgement bookkeeping: which `Ack{seq}` to send a device after one of its
//! batches is committed. Pure logic; the MQTT side lives in [`super::mqtt`].
//!
//! An ack promises "every batch up to `seq` is stored", so it only moves over a
//! contiguous run of committed batches: a batch that arrives after a gap (an earlier one
//! went missing) is remembered, and the ack moves over it once the gap is filled by the
//! device's resend. The first batch seen from a device since velt started sets the base:
//! a well-behaved device resends its oldest unacknowledged batch first.

use std::collections::BTreeSet;

/// Batches remembered beyond a gap, per device; past this the device has to resend.
const MAX_AHEAD: usize = 4096;

#[derive(Debug, Default)]
pub struct AckState {
    acked: Option<u64>,
    ahead: BTreeSet<u64>,
}

impl AckState {
    /// The highest contiguous committed seq, if any batch was committed yet.
    pub fn acked(&self) -> Option<u64> {
        self.acked
    }

    /// Batch `seq` is committed: the seq to acknowledge now.
    pub fn committed(&mut self, seq: u64) -> u64 {
        let acked = match self.acked {
            None => seq,
            // A resend of something covered already (or a device whose counter was
            // reset): acknowledge exactly that batch, promising nothing more.
            Some(acked) if seq <= acked => return seq,
            Some(acked) if seq == acked + 1 => seq,
            Some(acked) => {
                if self.ahead.len() < MAX_AHEAD {
                    self.ahead.insert(seq);
                }
                return acked;
            }
        };
        let mut acked = acked;
        while self.ahead.remove(&(acked + 1)) {
            acked += 1;
        }
        self.ahead.retain(|&s| s > acked);
        self.acked = Some(acked);
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_batches_are_acked_one_by_one() {
        let mut state = AckState::default();
        assert_eq!(state.acked(), None);
        assert_eq!([5, 6, 7].map(|s| state.committed(s)), [5, 6, 7]);
    }

    #[test]
    fn a_gap_holds_the_ack_until_it_is_filled() {
        let mut state = AckState::default();
        state.committed(1);
        assert_eq!(state.committed(3), 1, "2 is missing");
        assert_eq!(state.committed(4), 1);
        assert_eq!(state.committed(2), 4, "the resend fills the gap");
        assert_eq!(state.committed(5), 5);
    }

    #[test]
    fn resends_of_acked_batches_ack_themselves() {
        let mut state = AckState::default();
        [1, 2, 3].map(|s| state.committed(s));
        assert_eq!(state.committed(2), 2);
        assert_eq!(state.acked(), Some(3));
        assert_eq!(state.committed(4), 4);
    }
}
