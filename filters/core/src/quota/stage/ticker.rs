//! Fleet mode's ticker (root context, `on_tick`): one worker per replica, chosen under a
//! shared-data lock, keeps every fleet lease the replica uses topped up ahead of need, sized to
//! the rate it observes, and gives back what idle buckets hold. Calls then find their lease
//! there and never wait for Redis in the steady state.

use crate::config::NameMap;
use std::rc::Rc;

use super::{counter, lease, read_record, update, update_scope, CasStep, State};
use crate::host::{Host, HttpAnswer};
use crate::quota::fleet::{self, Ask, Fleet, ACTIVE_KEY, TICKER_KEY, WORKERS_KEY};
use crate::quota::Quota;
use crate::text::{Put, PutBytes, Text};

/// Which of a scope's fleet buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Requests,
    Tokens,
    /// Calls-in-flight slots (`burst` is the limit).
    Slots,
}

/// One fleet bucket the replica uses, as the active list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// The scope record's shared-data key, and which of its buckets.
    pub record: String,
    pub kind: Kind,
    pub redis_key: String,
    pub rate_per_minute: u64,
    pub burst: u64,
}

impl Active {
    pub fn line(&self) -> String {
        let kind = match self.kind {
            Kind::Requests => 'r',
            Kind::Tokens => 't',
            Kind::Slots => 'f',
        };
        format!("{}\t{kind}\t{}\t{}\t{}", self.record, self.redis_key, self.rate_per_minute, self.burst)
    }

    pub fn parse(line: &str) -> Option<Active> {
        let mut f = line.parts(b'\t');
        let record = f.next()?.own();
        let kind = match f.next()? {
            "t" => Kind::Tokens,
            "r" => Kind::Requests,
            "f" => Kind::Slots,
            _ => return None,
        };
        let redis_key = f.next()?.own();
        let rate_per_minute = f.next()?.int_as()?;
        let burst = f.next()?.int_as()?;
        Some(Active { record, kind, redis_key, rate_per_minute, burst })
    }

    fn tokens(&self) -> bool {
        self.kind == Kind::Tokens
    }
}

/// This replica's id in Redis (its calls-in-flight holdings): made once, by whichever worker
/// asks first, from the runtime's random numbers (WASI's `random_get`; std's hashed seed linked
/// 5 KB of SipHash and WASI error names for this alone).
pub fn replica_id(h: &impl Host) -> String {
    if let Ok((Some(b), _)) = h.shared_get(REPLICA_KEY) {
        return String::from_utf8_lossy(&b).into_owned();
    }
    let seed = h.random_u64();
    let id = format!("{seed:016x}");
    // The first worker's id wins (a key is created once).
    let _ = update(h, REPLICA_KEY, id.as_bytes(), |_| CasStep::Refuse(()));
    match h.shared_get(REPLICA_KEY) {
        Ok((Some(b), _)) => String::from_utf8_lossy(&b).into_owned(),
        _ => id,
    }
}

const REPLICA_KEY: &str = "aigw.fleet.replica";

/// The active list's first line (shared data cannot hold an empty value: it reads as missing).
const ACTIVE_HEAD: &[u8] = b"# aigw fleet buckets\n";

/// Adds buckets to the replica's active list (once each).
pub fn mark_active(h: &impl Host, buckets: &[Active]) {
    let lines: Vec<String> = buckets.iter().map(Active::line).collect();
    let _ = update(h, ACTIVE_KEY, ACTIVE_HEAD, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let missing: Vec<&String> = lines.iter().filter(|l| !text.parts(b'\n').any(|x| x == l.as_str())).collect();
        if missing.is_empty() {
            return CasStep::Refuse(());
        }
        let mut out = text.into_owned();
        for l in missing {
            out.put(l);
            out.push('\n');
        }
        CasStep::Write(out.into_bytes(), ())
    });
}

fn active(h: &impl Host) -> Vec<Active> {
    let bytes = h.shared_get(ACTIVE_KEY).ok().and_then(|(b, _)| b).unwrap_or_default();
    String::from_utf8_lossy(&bytes).parts(b'\n').filter_map(Active::parse).collect()
}

/// What the ticker remembers of a bucket between ticks.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    level: i64,
    /// Units a tick spends, smoothed.
    per_tick: f64,
    /// When it last spent anything.
    last_spent_ms: u64,
}

enum InFlight {
    Take { token: u32, buckets: Vec<Active> },
    Give { token: u32 },
}

pub struct Ticker {
    quota: Rc<Quota>,
    /// This worker's id (from the shared counter), once it has one.
    me: Option<u64>,
    /// By the bucket's record: its request bucket's, then its token bucket's.
    seen: NameMap<[Option<Seen>; 2]>,
    in_flight: Option<InFlight>,
    /// The calls-in-flight heartbeat in flight: its call and its scopes' records.
    slots_in_flight: Option<(u32, Vec<String>)>,
    /// When each calls-in-flight scope last had calls, and its admissions counter then.
    busy_ms: NameMap<u64>,
    admits: NameMap<u64>,
}

impl Ticker {
    pub fn new(quota: Rc<Quota>) -> Ticker {
        Ticker {
            quota,
            me: None,
            seen: NameMap::new(),
            in_flight: None,
            slots_in_flight: None,
            busy_ms: NameMap::new(),
            admits: NameMap::new(),
        }
    }

    /// Renews this replica's calls-in-flight holdings in Redis (a heartbeat every tick: Redis
    /// forgets a replica it has not heard from): what is in flight, and `lease.slots` to spare
    /// while the scope has calls.
    fn slots(&mut self, h: &impl Host, f: &Fleet, slots: &[Active], now: u64) {
        if self.slots_in_flight.is_some() || slots.is_empty() {
            return;
        }
        let replica = replica_id(h);
        let mut path = format!("/FCALL/aigw_slots/{}", slots.len());
        for a in slots {
            path.push('/');
            path.put(&fleet::encode(&a.redis_key));
        }
        path.put(&format!("/{replica}/{}/set", f.slots_ttl_ms()));
        for a in slots {
            let rec = read_record(h, &a.record);
            // Busy: calls in flight now, or calls that took a slot since the last tick.
            let admits = self.admits.insert(a.record.own(), rec.admits);
            if rec.in_flight > 0 || admits.is_some_and(|before| before != rec.admits) {
                self.busy_ms.insert(a.record.own(), now);
            }
            let busy = self.busy_ms.get(&a.record).is_some_and(|t| now.saturating_sub(*t) < f.idle_return_ms);
            // Busy: never less than it holds (calls may be using the spare ones this moment);
            // idle: only what is in flight.
            let want = if busy { rec.slots.max(rec.in_flight + f.lease_slots) } else { rec.in_flight };
            path.put(&format!("/{want}/{}", a.burst));
        }
        if let Some(token) = f.call(h, &path) {
            self.slots_in_flight = Some((token, slots.iter().map(|a| a.record.own()).collect()));
        }
    }

    fn fleet(&self) -> Option<&Rc<Fleet>> {
        self.quota.fleet.as_ref()
    }

    /// Whether this worker works this tick: it holds the lock, or takes it when it expired.
    fn elected(&mut self, h: &impl Host, now: u64, tick_ms: u64) -> bool {
        let me = match self.me {
            Some(me) => me,
            None => match update(h, WORKERS_KEY, &0u64.to_le_bytes(), |b| {
                let next = counter(b).wrapping_add(1);
                CasStep::Write(next.to_le_bytes().to_vec(), next)
            }) {
                Some(Ok(id)) => *self.me.insert(id),
                _ => return false,
            },
        };
        let lease_until = now.saturating_add(3 * tick_ms);
        matches!(
            update(h, TICKER_KEY, &[0u8; 16], |b| {
                let owner = counter(b);
                let until = b.get(8..).map(counter).unwrap_or(0);
                if owner == me || owner == 0 || until < now {
                    let mut v = me.to_le_bytes().to_vec();
                    v.put(&lease_until.to_le_bytes());
                    CasStep::Write(v, ())
                } else {
                    CasStep::Refuse(())
                }
            }),
            Some(Ok(()))
        )
    }

    pub fn on_tick(&mut self, h: &impl Host) {
        let Some(f) = self.fleet().cloned() else { return };
        let now = h.now_ms();
        if !self.elected(h, now, f.tick_ms) {
            return;
        }
        let down_until = h.shared_get(fleet::DOWN_KEY).ok().and_then(|(b, _)| b).map_or(0, |b| counter(&b));
        if now < down_until {
            return;
        }
        let mut takes: Vec<(Active, u64)> = Vec::new();
        let mut gives: Vec<(Active, u64)> = Vec::new();
        let (slots, buckets): (Vec<Active>, Vec<Active>) = active(h).into_iter().partition(|a| a.kind == Kind::Slots);
        self.slots(h, &f, &slots, now);
        if self.in_flight.is_some() {
            return;
        }
        for a in buckets {
            let rec = read_record(h, &a.record);
            let level = lease(if a.tokens() { rec.tokens } else { rec.requests });
            if !self.seen.contains_key(&a.record) {
                self.seen.insert(a.record.own(), [None, None]);
            }
            let Some(pair) = self.seen.get_mut(&a.record) else { continue };
            let seen = pair[usize::from(a.tokens())].get_or_insert(Seen { level, per_tick: 0.0, last_spent_ms: now });
            let spent = (seen.level - level).max(0) as f64;
            if spent > 0.0 {
                seen.last_spent_ms = now;
            }
            seen.per_tick = 0.7 * seen.per_tick + 0.3 * spent;
            seen.level = level;
            // At most this replica's share of the burst; at least the configured lease (within it).
            let cap = fleet::units((a.burst / f.expected_replicas).max(1));
            let floor = fleet::units(if a.tokens() { f.lease_tokens } else { f.lease_requests }).min(cap);
            let ticks = (f.headroom_ms / f.tick_ms).max(1) as f64;
            // (`floor <= cap`; `clamp` would link core's float formatting for its panic message.)
            let target = (seen.per_tick * ticks).max(floor as f64).min(cap as f64) as i64;
            if now.saturating_sub(seen.last_spent_ms) >= f.idle_return_ms && level > 0 {
                gives.push((a, u64::try_from(level).unwrap_or(0)));
            } else if level < target / 2 {
                takes.push((a, u64::try_from(target - level).unwrap_or(0)));
            }
        }
        if !takes.is_empty() {
            self.take(h, &f, takes, now);
        } else if !gives.is_empty() {
            self.give(h, &f, gives, now);
        }
    }

    fn take(&mut self, h: &impl Host, f: &Fleet, takes: Vec<(Active, u64)>, now: u64) {
        let asks: Vec<Ask> = takes
            .iter()
            .map(|(a, want)| Ask {
                key: a.redis_key.own(),
                rate_per_minute: a.rate_per_minute,
                cap_units: fleet::units(a.burst),
                need_units: 0,
                want_units: *want,
                ttl_ms: 0,
            })
            .collect();
        let path = fleet::take_path(&asks);
        h.counter_add("aigw_fleet_top_ups_total.by.ticker", 1);
        match f.call(h, &path) {
            Some(token) => {
                self.in_flight = Some(InFlight::Take { token, buckets: takes.into_iter().map(|(a, _)| a).collect() })
            }
            None => down(h, f, now),
        }
    }

    /// Gives idle leases back: taken out of the local lease first (what a call spent meanwhile
    /// stays spent), then given to Redis. A give that fails loses them until the bucket refills:
    /// under-admission, never over.
    fn give(&mut self, h: &impl Host, f: &Fleet, gives: Vec<(Active, u64)>, now: u64) {
        let mut out = Vec::new();
        for (a, units) in gives {
            let taken = update_scope(h, &a.record, |rec| {
                let slot = if a.tokens() { &mut rec.tokens } else { &mut rec.requests };
                let have = u64::try_from(lease(*slot)).unwrap_or(0);
                let back = have.min(units);
                if back == 0 {
                    return Err(0);
                }
                *slot = Some(State { units: lease(*slot) - i64::try_from(back).unwrap_or(0), updated_ms: now });
                Ok(back)
            });
            if let Some(Ok(back)) = taken {
                if let Some(pair) = self.seen.get_mut(&a.record) {
                    pair[usize::from(a.tokens())] = None;
                }
                out.push((a.redis_key.own(), a.rate_per_minute, fleet::units(a.burst), back));
            }
        }
        if out.is_empty() {
            return;
        }
        let path = fleet::give_path(&out);
        match f.call(h, &path) {
            Some(token) => self.in_flight = Some(InFlight::Give { token }),
            None => down(h, f, now),
        }
    }

    pub fn on_http_call_response(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) {
        let Some(f) = self.fleet().cloned() else { return };
        let now = h.now_ms();
        if let Some((t, records)) = self.slots_in_flight.take() {
            if t != token {
                self.slots_in_flight = Some((t, records));
            } else {
                match fleet::read_slots(answer.status, &answer.body, records.len()) {
                    Some(held) => {
                        for (record, n) in records.iter().zip(held) {
                            let _ = update_scope(h, record, |rec| {
                                rec.slots = n;
                                Ok(())
                            });
                        }
                    }
                    None => down(h, &f, now),
                }
                return;
            }
        }
        match self.in_flight.take() {
            Some(InFlight::Take { token: t, buckets }) if t == token => {
                match fleet::read_answer(answer.status, &answer.body, buckets.len()) {
                    Some(fleet::Answer::Granted(granted, _)) => {
                        for (a, g) in buckets.iter().zip(granted) {
                            let g = i64::try_from(g).unwrap_or(i64::MAX);
                            let _ = update_scope(h, &a.record, |rec| {
                                let slot = if a.tokens() { &mut rec.tokens } else { &mut rec.requests };
                                *slot = Some(State { units: lease(*slot).saturating_add(g), updated_ms: now });
                                Ok(())
                            });
                            if let Some(Some(s)) =
                                self.seen.get_mut(&a.record).map(|pair| &mut pair[usize::from(a.tokens())])
                            {
                                s.level = s.level.saturating_add(g);
                            }
                        }
                    }
                    // A ticker's take needs nothing: it is never short.
                    Some(fleet::Answer::Short { .. }) => {}
                    None => down(h, &f, now),
                }
            }
            Some(InFlight::Give { token: t }) if t == token => {
                if !fleet::given(answer.status, &answer.body) {
                    h.warn("quota: a fleet lease could not be given back (lost until the bucket refills)");
                }
            }
            other => self.in_flight = other,
        }
    }
}

fn down(h: &impl Host, f: &Fleet, now: u64) {
    let until = now.saturating_add(f.retry_ms);
    let _ = h.shared_set(fleet::DOWN_KEY, &until.to_le_bytes(), None);
    h.warn(&format!(
        "quota: fleet store unavailable (ticker); serving in `{}` mode for {} ms",
        f.unavailable.as_str(),
        f.retry_ms
    ));
}

#[cfg(test)]
mod tests {
    use super::super::ScopeRecord;
    use super::*;
    use crate::host::FakeHost;
    use crate::quota::QuotaConfig;

    #[test]
    fn a_replica_id_is_one_per_vm_and_differs_between_replicas() {
        let vm = FakeHost::new();
        let id = replica_id(&vm);
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        // Another worker of the same replica finds the id the first one made.
        assert_eq!(replica_id(&vm.worker()), id);
        // Another replica (its own shared data, at the same instant) makes its own.
        let other = FakeHost::new();
        other.now.set(vm.now.get());
        assert_ne!(replica_id(&other), id);
    }

    fn quota() -> Rc<Quota> {
        let cfg: QuotaConfig = crate::config::from_str(
            r#"{"tenants": {"acme": {"requests_per_minute": 600, "requests_burst": 600}},
                "fleet": {"cluster": "aigw_fleet", "lease": {"requests": 5}, "tick_ms": 100,
                          "headroom_ms": 1000, "idle_return_ms": 2000, "expected_replicas": 2}}"#,
        )
        .unwrap();
        Rc::new(Quota::compile(&cfg).unwrap())
    }

    fn bucket() -> Active {
        Active {
            record: "aigw.q.t.acme".into(),
            kind: Kind::Requests,
            redis_key: "aigw:t.acme:r".into(),
            rate_per_minute: 600,
            burst: 600,
        }
    }

    fn level(h: &FakeHost) -> i64 {
        let b = h.shared_get("aigw.q.t.acme").unwrap().0.unwrap_or_default();
        lease(ScopeRecord::decode(&b).requests) / 60_000
    }

    fn spend(h: &FakeHost, n: i64) {
        update_scope(h, "aigw.q.t.acme", |rec| {
            rec.requests = Some(State { units: lease(rec.requests) - n * 60_000, updated_ms: 0 });
            Ok::<(), ()>(())
        });
    }

    fn answer(body: &str) -> HttpAnswer {
        HttpAnswer { status: 200, headers: vec![], body: body.as_bytes().to_vec() }
    }

    #[test]
    fn one_worker_tops_leases_up_ahead_of_need_sized_to_the_rate_and_gives_idle_ones_back() {
        let store = FakeHost::new();
        store.now.set(10_000);
        crate::quota::stage::init_store(&store);
        // Workers share the store (their clocks are set together below).
        let (w1, w2) = (store.worker(), store.worker());
        let advance = |ms: u64| {
            for h in [&w1, &w2] {
                h.now.set(h.now.get() + ms);
            }
        };
        let (mut t1, mut t2) = (Ticker::new(quota()), Ticker::new(quota()));
        t1.on_tick(&w1);
        mark_active(&w1, &[bucket()]);
        mark_active(&w2, &[bucket()]);
        assert_eq!(active(&w1), [bucket()], "listed once");
        // One worker works: the other finds the lock held.
        t1.on_tick(&w1);
        t2.on_tick(&w2);
        assert!(w2.http_calls.borrow().is_empty());
        let calls = w1.http_calls.borrow().clone();
        assert_eq!(calls.len(), 1);
        let path = &calls[0].headers.iter().find(|(k, _)| k == ":path").unwrap().1;
        assert_eq!(path, "/FCALL/aigw_take/1/aigw:t%2eacme:r/600/36000000/0/300000/0", "need 0, the lease floor (5)");
        t1.on_http_call_response(&w1, 1, &answer(r#"{"FCALL":[1,300000]}"#));
        assert_eq!(level(&w1), 5);
        // Calls spend 4 a tick: the lease grows toward 1000 ms of that rate (10 ticks x ~4).
        let mut token = 1;
        for _ in 0..12 {
            spend(&w1, 4);
            advance(100);
            t1.on_tick(&w1);
            let calls = w1.http_calls.borrow().clone();
            if calls.len() > token as usize {
                token += 1;
                let path = calls.last().unwrap().headers.iter().find(|(k, _)| k == ":path").unwrap().1.clone();
                let want: u64 = path.rsplit('/').nth(1).unwrap().parse().unwrap();
                t1.on_http_call_response(&w1, token, &answer(&format!(r#"{{"FCALL":[1,{want}]}}"#)));
            }
            assert!(level(&w1) >= 0, "never short: topped up ahead of need");
        }
        assert!(level(&w1) > 10, "the lease grew with the rate: {}", level(&w1));
        // Idle for idle_return_ms: the whole lease goes back.
        let held = lease(ScopeRecord::decode(&w1.shared_get("aigw.q.t.acme").unwrap().0.unwrap()).requests);
        advance(2_100);
        t1.on_tick(&w1);
        let calls = w1.http_calls.borrow().clone();
        let path = &calls.last().unwrap().headers.iter().find(|(k, _)| k == ":path").unwrap().1;
        assert_eq!(path, &format!("/FCALL/aigw_give/1/aigw:t%2eacme:r/600/36000000/{held}/0"));
        assert_eq!(level(&w1), 0);
        t1.on_http_call_response(&w1, calls.len() as u32, &answer(r#"{"FCALL":[1]}"#));
        // A failed take: Redis is taken as unavailable for retry_ms.
        spend(&w1, 1);
        advance(100);
        t1.on_tick(&w1);
        let n = w1.http_calls.borrow().len() as u32;
        t1.on_http_call_response(&w1, n, &HttpAnswer { status: 503, headers: vec![], body: vec![] });
        let down = counter(&w1.shared_get(fleet::DOWN_KEY).unwrap().0.unwrap());
        assert_eq!(down, w1.now.get() + 1000);
    }

    #[test]
    fn an_active_line_round_trips() {
        assert_eq!(Active::parse(&bucket().line()), Some(bucket()));
        assert_eq!(Active::parse("x\tq\ty\t1\t2"), None);
    }
}
