//! A hostile server: any sequence of frames fed to the client's protocol
//! driver. Nothing may panic, and the replica's invariants must hold after
//! every message: the optimistic state is the fold of the confirmed state
//! and the pending intents, and pending seqs are unique.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sync_core::{
    ClientId, Epoch, ReduceError, Reducer, Replica, ServerMsg, StreamName, SyncClient,
};

struct Sum;
impl Reducer for Sum {
    type State = u64;
    type Action = u64;
    fn decode(&self, p: &[u8]) -> Result<u64, ReduceError> {
        match p.first() {
            Some(0xff) => Err("refused".into()),
            Some(b) => Ok(u64::from(*b)),
            None => Ok(0),
        }
    }
    fn reduce(&self, s: &u64, a: &u64) -> Result<u64, ReduceError> {
        if *a == 0xfe {
            return Err("reducer refused".into());
        }
        Ok(s.wrapping_mul(31).wrapping_add(*a))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(stream) = StreamName::new("todos/team-42") else { return };
    let replica = Replica::new(stream, ClientId([0x11; 16]), Sum, 0);
    let mut client = SyncClient::new(replica, Some(Epoch::from("e")), 0);
    let _ = client.connected(None);
    // Frames are length-prefixed (1 byte) slices of the input; a few local
    // dispatches are interleaved so rebases and acks have something to hit.
    let mut rest = data;
    let mut n = 0u8;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        n = n.wrapping_add(1);
        if n % 3 == 0 {
            let _ = client.replica_mut().dispatch(vec![n]);
            let _ = client.flush();
        }
        if let Ok(msg) = ServerMsg::decode(frame, 1 << 20) {
            let _ = client.handle(msg);
        }
        let r = client.replica();
        let mut expected = *r.confirmed_state();
        let mut seqs = std::collections::HashSet::new();
        for p in r.pending() {
            if let Some(seq) = p.seq {
                assert!(seqs.insert(seq), "seq {seq} pending twice");
            }
            if let Some(a) = p.action {
                if let Ok(next) = Sum.reduce(&expected, &a) {
                    expected = next;
                }
            }
        }
        assert_eq!(*r.state(), expected, "optimistic state is not the fold");
    }
});
