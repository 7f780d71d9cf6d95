//! Bad-credential marks for the fleet (fleet mode): a credential one replica saw a provider
//! refuse (401/403) is skipped by every replica. A mark is queued in shared data where it is
//! made; a per-attempt root context in fleet mode (the `gateway_upstream` filter's, or the
//! design card's `quota_upstream`) sends queued marks to Redis on its tick and, every second,
//! reads every mark the fleet holds, keeping the later of each. The credential stage reads marks
//! from shared data only, so it needs no fleet configuration of its own.

use crate::auth::credentials::bad_mark_key;
use crate::host::{Host, HttpAnswer, SharedSetError};
use crate::quota::fleet::{self, Fleet};
use crate::text::{Put, PutBytes, Text};
use std::rc::Rc;
/// Marks made here and not yet sent (`provider\tname\tuntil` lines).
pub const QUEUE_KEY: &str = "aigw.cred.bad.out";
const QUEUE_HEAD: &[u8] = b"# aigw bad-credential marks for Redis\n";
const QUEUE_MAX: usize = 64;

/// Queues a mark (dropped when the queue is full: it still holds on this replica).
pub fn queue(h: &impl Host, provider: &str, name: &str, until: u64) {
    let line = format!("{provider}\t{name}\t{until}\n");
    for _ in 0..16 {
        let Ok((cur, cas)) = h.shared_get(QUEUE_KEY) else { return };
        let mut text = cur.unwrap_or_else(|| QUEUE_HEAD.to_vec());
        if text.split(|b| *b == b'\n').count() > QUEUE_MAX {
            return;
        }
        text.put(line.as_bytes());
        match h.shared_set(QUEUE_KEY, &text, cas) {
            Ok(()) => return,
            Err(SharedSetError::CasMismatch) => continue,
            Err(_) => return,
        }
    }
}

fn take_queue(h: &impl Host) -> Vec<(String, String, u64)> {
    for _ in 0..16 {
        let Ok((Some(text), cas)) = h.shared_get(QUEUE_KEY) else { return Vec::new() };
        let marks: Vec<(String, String, u64)> = String::from_utf8_lossy(&text)
            .parts(b'\n')
            .filter_map(|l| {
                let mut f = l.parts(b'\t');
                Some((f.next()?.own(), f.next()?.own(), f.next()?.int_as()?))
            })
            .collect();
        if marks.is_empty() {
            return marks;
        }
        match h.shared_set(QUEUE_KEY, QUEUE_HEAD, cas) {
            Ok(()) => return marks,
            Err(SharedSetError::CasMismatch) => continue,
            Err(_) => return Vec::new(),
        }
    }
    Vec::new()
}

enum InFlight {
    Put(u32),
    Get(u32),
}

/// A per-attempt root context's part of fleet mode.
pub struct MarkSync {
    fleet: Rc<Fleet>,
    in_flight: Option<InFlight>,
    last_get_ms: u64,
}

/// How often the marks are read from Redis.
const GET_EVERY_MS: u64 = 1000;

impl MarkSync {
    pub fn new(fleet: Rc<Fleet>) -> MarkSync {
        MarkSync { fleet, in_flight: None, last_get_ms: 0 }
    }

    /// The Redis hash of the fleet's marks.
    fn key(&self) -> String {
        format!("{}:bad", self.fleet.prefix)
    }

    pub fn on_tick(&mut self, h: &impl Host) {
        if self.in_flight.is_some() {
            return;
        }
        let now = h.now_ms();
        let marks: Vec<_> = take_queue(h).into_iter().filter(|(_, _, until)| *until > now).collect();
        if !marks.is_empty() {
            let mut path = format!("/FCALL/aigw_marks_put/1/{}", fleet::encode(&self.key()));
            for (p, n, until) in &marks {
                path.put(&format!("/{}/{until}", fleet::encode(&format!("{p}\t{n}"))));
            }
            self.in_flight = self.fleet.call(h, &path).map(InFlight::Put);
            return;
        }
        if now.saturating_sub(self.last_get_ms) < GET_EVERY_MS {
            return;
        }
        self.last_get_ms = now;
        let path = format!("/FCALL/aigw_marks_get/1/{}/{now}", fleet::encode(&self.key()));
        self.in_flight = self.fleet.call(h, &path).map(InFlight::Get);
    }

    /// Whether `token` was one of this part's calls.
    pub fn on_http_call_response(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) -> bool {
        match self.in_flight {
            Some(InFlight::Put(t)) if t == token => {
                self.in_flight = None;
                if answer.status != 200 {
                    h.warn(&format!(
                        "auth-key-swap: bad-credential marks not shared (Webdis answered {})",
                        answer.status
                    ));
                }
                true
            }
            Some(InFlight::Get(t)) if t == token => {
                self.in_flight = None;
                let values = crate::wire::from_slice::<crate::wire::tree::Value>(&answer.body)
                    .ok()
                    .filter(|_| answer.status == 200)
                    .and_then(|v| v.get("FCALL").and_then(|a| a.as_array().cloned()))
                    .unwrap_or_default();
                let now = h.now_ms();
                for pair in values.chunks(2) {
                    let [field, until] = pair else { continue };
                    let Some((p, n)) = field.as_str().and_then(|f| f.cut(b'\t')) else { continue };
                    let Some(until) = until.as_str().and_then(|s| s.int()).filter(|u| *u > now) else {
                        continue;
                    };
                    let key = bad_mark_key(p, n);
                    let here = h
                        .shared_get(&key)
                        .ok()
                        .and_then(|(b, _)| b)
                        .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes))
                        .unwrap_or(0);
                    if until > here {
                        let _ = h.shared_set(&key, &until.to_le_bytes(), None);
                    }
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    fn fleet() -> Rc<Fleet> {
        let cfg: crate::quota::fleet::FleetConfig = crate::config::from_str(r#"{"cluster": "aigw_fleet"}"#).unwrap();
        Rc::new(Fleet::compile(&cfg).unwrap())
    }

    fn path(h: &FakeHost, i: usize) -> String {
        h.http_calls.borrow()[i].headers.iter().find(|(k, _)| k == ":path").unwrap().1.clone()
    }

    #[test]
    fn a_mark_made_on_one_replica_reaches_the_others() {
        // Replica A marks "stale" bad: its ticker sends the mark to Redis.
        let a = FakeHost::new();
        a.now.set(10_000);
        queue(&a, "anthropic", "stale", 70_000);
        let mut sync_a = MarkSync::new(fleet());
        sync_a.on_tick(&a);
        assert_eq!(path(&a, 0), "/FCALL/aigw_marks_put/1/aigw:bad/anthropic%09stale/70000");
        let ok = HttpAnswer::new(vec![(":status".into(), "200".into())], br#"{"FCALL":[1]}"#.to_vec());
        assert!(sync_a.on_http_call_response(&a, 1, &ok));
        sync_a.on_tick(&a);
        assert_eq!(
            path(&a, 1),
            "/FCALL/aigw_marks_get/1/aigw:bad/10000",
            "then it reads them, once the queue is empty"
        );
        // Replica B reads every mark the fleet holds: the later one is kept here.
        let b = FakeHost::new();
        b.now.set(10_500);
        let mut sync_b = MarkSync::new(fleet());
        sync_b.on_tick(&b);
        assert_eq!(path(&b, 0), "/FCALL/aigw_marks_get/1/aigw:bad/10500");
        let marks = HttpAnswer::new(
            vec![(":status".into(), "200".into())],
            br#"{"FCALL":["anthropic\tstale","70000","anthropic\tgone","10400","no tab","99999"]}"#.to_vec(),
        );
        assert!(sync_b.on_http_call_response(&b, 1, &marks));
        let stored = b.shared_get(&bad_mark_key("anthropic", "stale")).unwrap().0.unwrap();
        assert_eq!(u64::from_le_bytes(stored[..8].try_into().unwrap()), 70_000);
        assert!(b.shared_get(&bad_mark_key("anthropic", "gone")).unwrap().0.is_none(), "a mark that has ended");
        // Read again only after a second; an error answer changes nothing.
        b.now.set(11_000);
        sync_b.on_tick(&b);
        assert_eq!(b.http_calls.borrow().len(), 1);
        b.now.set(11_600);
        sync_b.on_tick(&b);
        let failed = HttpAnswer::new(vec![(":status".into(), "503".into())], b"".to_vec());
        assert!(sync_b.on_http_call_response(&b, 2, &failed));
        let stored = b.shared_get(&bad_mark_key("anthropic", "stale")).unwrap().0.unwrap();
        assert_eq!(u64::from_le_bytes(stored[..8].try_into().unwrap()), 70_000);
    }
}
