use super::*;
use crate::host::FakeHost;

#[test]
fn an_entry_round_trips_and_garbage_never_panics() {
    let mut e = Entry::default();
    e.set("aigw_alias", b"chat");
    e.set("aigw_identity", br#"{"tenant":"acme"}"#);
    e.set("aigw_alias", b"chat-eu");
    e.set("aigw_empty", b"");
    let d = Entry::decode(e.encode());
    assert_eq!(d, e);
    assert_eq!(d.len(), 3);
    assert_eq!(d.get("aigw_alias"), Some(&b"chat-eu"[..]));
    assert_eq!(d.get("aigw_identity"), Some(&br#"{"tenant":"acme"}"#[..]));
    assert_eq!(d.get("aigw_empty"), Some(&b""[..]));
    assert_eq!(d.get("aigw_other"), None);
    // A value set again keeps its place, whatever its new length.
    let mut longer = e.clone();
    longer.set("aigw_alias", b"chat-eu-west-and-more");
    longer.set("aigw_identity", b"{}");
    assert_eq!(longer.len(), 3);
    assert_eq!(longer.get("aigw_alias"), Some(&b"chat-eu-west-and-more"[..]));
    assert_eq!(longer.get("aigw_identity"), Some(&b"{}"[..]));
    assert_eq!(longer.get("aigw_empty"), Some(&b""[..]));
    // Truncated or hostile bytes: what is whole is kept, the rest dropped.
    let bytes = e.encode().to_vec();
    for cut in 0..bytes.len() {
        let part = Entry::decode(&bytes[..cut]);
        assert!(part.len() < 3, "cut at {cut}");
        // What is kept reads back as the whole entry did.
        for name in ["aigw_alias", "aigw_identity", "aigw_empty"] {
            assert!(part.get(name).is_none() || part.get(name) == e.get(name));
        }
        // Garbage after the whole parts is dropped: the kept bytes decode to themselves.
        assert_eq!(Entry::decode(part.encode()), part);
    }
    assert_eq!(Entry::decode(&[0xff, 0xff, 1, 2, 3]), Entry::default());
    assert_eq!(Entry::decode(&[1, 0, 0xc3, 0, 0, 0, 0]), Entry::default(), "a name that is not UTF-8");
}

/// A context that sets and reads what it is told to, so the tests drive the call state alone.
#[derive(Default)]
struct Probe {
    set: Vec<(&'static str, &'static str)>,
    read: Vec<&'static str>,
    seen: Vec<Option<String>>,
}

impl Callbacks for Probe {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        for (k, v) in &self.set {
            h.set_property(k, v);
        }
        self.seen = self.read.iter().map(|k| h.property_string(&[k])).collect();
        Flow::Continue
    }
}

fn probe(set: &[(&'static str, &'static str)], read: &[&'static str]) -> Probe {
    Probe { set: set.to_vec(), read: read.to_vec(), seen: Vec::new() }
}

#[test]
fn the_listener_hands_its_side_on_as_one_entry_and_an_attempt_reads_it_once() {
    let h = FakeHost::new();
    let mut listener = Stateful::new(
        probe(
            &[("aigw_alias", "chat"), ("aigw_route", "default"), ("aigw_door", "chat")],
            &["aigw_alias", "aigw_nothing"],
        ),
        Side::Listener,
        Writers::One,
    );
    listener.on_request_headers(&h, false);
    assert_eq!(listener.ctx.seen, vec![Some("chat".to_string()), None]);
    // Three properties, one write; the listener's own reads cost nothing, and so does the miss:
    // no attempt can have written anything before the request went on.
    assert_eq!((h.property_writes.get(), h.property_reads.get()), (1, 0));
    assert!(h.property(&["aigw_alias"]).is_none(), "no entry per property");
    assert_eq!(handed_on(&h, "aigw_route").as_deref(), Some(&b"default"[..]));

    // An attempt: everything the listener said, in one read.
    h.property_reads.set(0);
    h.property_writes.set(0);
    let mut attempt = Stateful::new(
        probe(&[("aigw_attempts", "[1]")], &["aigw_alias", "aigw_route", "aigw_door"]),
        Side::Attempt,
        Writers::One,
    );
    attempt.on_request_headers(&h, false);
    assert_eq!(attempt.ctx.seen.iter().flatten().count(), 3);
    // Its own side's entry (earlier attempts) and the listener's: two reads; one write.
    assert_eq!((h.property_reads.get(), h.property_writes.get()), (2, 1));

    // A second attempt sees the first one's record, and adds to the same entry.
    let mut second =
        Stateful::new(probe(&[("aigw_quota_providers", "openai")], &["aigw_attempts"]), Side::Attempt, Writers::One);
    second.on_request_headers(&h, false);
    assert_eq!(second.ctx.seen, vec![Some("[1]".to_string())]);
    assert_eq!(handed_on(&h, "aigw_attempts").as_deref(), Some(&b"[1]"[..]));
    assert_eq!(handed_on(&h, "aigw_quota_providers").as_deref(), Some(&b"openai"[..]));

    // Back on the listener, its next callback reads what the attempts wrote.
    listener.ctx = probe(&[], &["aigw_attempts", "aigw_alias"]);
    listener.on_request_headers(&h, false);
    assert_eq!(listener.ctx.seen, vec![Some("[1]".to_string()), Some("chat".to_string())]);
}

#[test]
fn separate_filters_of_one_side_share_its_entry() {
    let h = FakeHost::new();
    // auth, then route, then quota, each a filter of its own on the listener.
    let mut auth = Stateful::new(probe(&[("aigw_identity", "{}")], &[]), Side::Listener, Writers::Many);
    let mut route = Stateful::new(probe(&[("aigw_alias", "chat")], &["aigw_identity"]), Side::Listener, Writers::Many);
    let mut quota =
        Stateful::new(probe(&[("aigw_quota_estimate", "1 2")], &["aigw_alias"]), Side::Listener, Writers::Many);
    auth.on_request_headers(&h, false);
    route.on_request_headers(&h, false);
    quota.on_request_headers(&h, false);
    assert_eq!(route.ctx.seen, vec![Some("{}".to_string())]);
    assert_eq!(quota.ctx.seen, vec![Some("chat".to_string())]);
    for k in ["aigw_identity", "aigw_alias", "aigw_quota_estimate"] {
        assert!(handed_on(&h, k).is_some(), "{k} kept");
    }
    // A filter reads its side again in each callback: the first filter sees what the later
    // ones wrote since.
    auth.ctx = probe(&[], &["aigw_quota_estimate"]);
    auth.on_request_headers(&h, false);
    assert_eq!(auth.ctx.seen, vec![Some("1 2".to_string())]);
}

#[test]
fn a_local_reply_carries_what_the_call_knows_by_then() {
    let h = FakeHost::new();
    let data = RefCell::new(CallData::new(Side::Listener, Writers::One));
    let s = CallState { inner: &h, data: &data };
    s.set_property(headers::PROP_REFUSAL, "auth");
    assert!(handed_on(&h, headers::PROP_REFUSAL).is_none(), "not yet written");
    // Envoy runs the reply through the earlier filters at once: it is written first.
    s.send_response(401, &[], b"{}");
    assert_eq!(handed_on(&h, headers::PROP_REFUSAL).as_deref(), Some(&b"auth"[..]));
}

#[test]
fn the_audit_record_and_envoys_attributes_are_not_internal() {
    let h = FakeHost::new().with_property(&["response", "code_details"], "via_upstream");
    let data = RefCell::new(CallData::new(Side::Listener, Writers::One));
    let s = CallState { inner: &h, data: &data };
    s.set_property(headers::PROP_AUDIT, "{\"v\":2}");
    assert_eq!(h.property_string(&[headers::PROP_AUDIT]).as_deref(), Some("{\"v\":2}"), "the access log reads it");
    assert_eq!(s.property_string(&["response", "code_details"]).as_deref(), Some("via_upstream"));
}

#[test]
fn an_attempt_reads_its_hosts_metadata_once() {
    let h = FakeHost::new()
        .with_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "provider"], "openai")
        .with_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "region"], "us-east-1");
    let data = RefCell::new(CallData::new(Side::Attempt, Writers::One));
    let s = CallState { inner: &h, data: &data };
    for _ in 0..3 {
        assert_eq!(s.upstream_metadata("provider").as_deref(), Some("openai"));
        assert_eq!(s.upstream_metadata("region").as_deref(), Some("us-east-1"));
    }
    assert_eq!(h.property_reads.get(), 1, "all of it in one read");
    // A value the whole map lacks is read alone, once (the proxy may not have given it whole).
    for _ in 0..3 {
        assert_eq!(s.upstream_metadata("zone"), None);
    }
    assert_eq!(h.property_reads.get(), 2);
}

#[test]
fn metadata_the_proxy_cannot_give_whole_is_read_value_by_value_once() {
    // (FakeHost gives no whole map when no value is set, as Envoy gives none for a map it cannot
    // serialise as strings.)
    let h = FakeHost::new();
    let data = RefCell::new(CallData::new(Side::Attempt, Writers::One));
    let s = CallState { inner: &h, data: &data };
    for _ in 0..3 {
        assert_eq!(s.upstream_metadata("provider"), None);
        assert_eq!(s.upstream_metadata("region"), None);
    }
    assert_eq!(h.property_reads.get(), 3, "the whole map once, then each value once");
}

#[test]
fn a_callback_reads_each_header_map_and_the_clock_once() {
    let h = FakeHost::new().with_request_header(":path", "/v1/chat/completions");
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    h.now.set(7);
    let data = RefCell::new(CallData::new(Side::Listener, Writers::One));
    let s = CallState { inner: &h, data: &data };
    for _ in 0..3 {
        assert_eq!(s.request_header(":path").as_deref(), Some("/v1/chat/completions"));
        assert_eq!(s.response_header(":status").as_deref(), Some("200"));
        assert_eq!(s.request_header("x-absent"), None);
        assert_eq!(s.now_ms(), 7);
    }
    // One read of each map (a host call each, whatever the number of headers read), no
    // single-header read.
    assert_eq!((h.header_list_reads.get(), h.header_reads.get()), (2, 0));
    // What a stage sets is what a later stage reads, in the same callback.
    s.set_response_header(":status", Some("502"));
    s.set_request_header(":path", None);
    assert_eq!(s.response_header(":status").as_deref(), Some("502"));
    assert_eq!(s.request_header(":path"), None);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"), "and Envoy has it");
    // The next callback reads afresh (Envoy or another filter may have changed them).
    h.now.set(9);
    data.borrow_mut().begin();
    h.response_headers.borrow_mut().retain(|(k, _)| k != ":status");
    assert_eq!(s.response_header(":status"), None);
    assert_eq!(s.now_ms(), 9);
}

#[test]
fn a_header_the_map_lacks_is_added_and_one_it_lacks_is_not_removed() {
    let h = FakeHost::new().with_request_header(":path", "/v1/chat/completions");
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    let data = RefCell::new(CallData::new(Side::Attempt, Writers::One));
    let s = CallState { inner: &h, data: &data };
    // Nothing read yet in this callback: what the map has is unknown, so a set replaces.
    s.set_response_header("x-aigw-model", Some("m1"));
    assert_eq!(h.header_writes.borrow().len(), 1);
    data.borrow_mut().begin();
    assert_eq!(s.response_header(":status").as_deref(), Some("200"));
    assert_eq!(s.request_header(":path").as_deref(), Some("/v1/chat/completions"));
    h.header_writes.borrow_mut().clear();
    // Known absent from the list read: removing it is no host call; setting it adds it (one
    // value, not two), and a second set in the callback replaces what the first added.
    s.set_response_header("x-aigw-provider", None);
    s.set_request_header("x-absent", None);
    assert!(h.header_writes.borrow().is_empty());
    s.set_response_header("x-aigw-provider", Some("anthropic"));
    s.set_response_header("x-aigw-provider", Some("openai"));
    s.set_response_header(":status", Some("502"));
    s.set_response_header("x-aigw-model", Some("m2"));
    let values = |n: &str| h.response_headers.borrow().iter().filter(|(k, _)| k == n).count();
    assert_eq!((values("x-aigw-provider"), values(":status"), values("x-aigw-model")), (1, 1, 1));
    assert_eq!(h.response_header("x-aigw-provider").as_deref(), Some("openai"));
    assert_eq!(h.response_header("x-aigw-model").as_deref(), Some("m2"));
    assert_eq!(s.response_header("x-aigw-provider").as_deref(), Some("openai"));
    assert_eq!(h.header_writes.borrow().len(), 4);
    // A header this context added, removed again: the host removes it.
    s.set_response_header("x-aigw-provider", None);
    assert_eq!((values("x-aigw-provider"), h.header_writes.borrow().len()), (0, 5));
}

/// Reads the attempts' record in each callback of the answer and at the end.
#[derive(Default)]
struct Reader {
    seen: Vec<Option<String>>,
}

impl Callbacks for Reader {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        Flow::Continue
    }
    fn on_response_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        Flow::Continue
    }
    fn on_response_body<H: Host>(&mut self, h: &H, _size: usize, _eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        Flow::Continue
    }
    fn on_log<H: Host>(&mut self, h: &H) {
        self.seen.push(h.property_string(&["aigw_attempts"]));
    }
}

#[test]
fn once_the_answer_has_come_the_listener_reads_the_attempts_entry_no_more() {
    let h = FakeHost::new();
    let mut listener = Stateful::new(Reader::default(), Side::Listener, Writers::One);
    listener.on_request_headers(&h, false);
    // An attempt writes its record, then the answer's headers reach the listener.
    let mut attempt = Stateful::new(probe(&[("aigw_attempts", "[1]")], &[]), Side::Attempt, Writers::One);
    attempt.on_request_headers(&h, false);
    let before = h.property_reads.get();
    listener.on_response_headers(&h, false);
    listener.on_response_body(&h, 1, true);
    listener.on_log(&h);
    assert_eq!(listener.ctx.seen, vec![None, Some("[1]".into()), Some("[1]".into()), Some("[1]".into())]);
    assert_eq!(h.property_reads.get() - before, 1, "read once, when the answer came");
}

/// Holds the request until its body has come, reading the attempts' record in every callback.
#[derive(Default)]
struct HoldingReader {
    seen: Vec<Option<String>>,
}

impl Callbacks for HoldingReader {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        Flow::Pause
    }
    fn on_request_body<H: Host>(&mut self, h: &H, _size: usize, eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        if eos {
            Flow::Continue
        } else {
            Flow::Pause
        }
    }
    fn on_response_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        Flow::Continue
    }
}

#[test]
fn until_the_listener_lets_the_request_go_on_it_reads_no_attempts_entry() {
    let h = FakeHost::new();
    let mut listener = Stateful::new(HoldingReader::default(), Side::Listener, Writers::One);
    listener.on_request_headers(&h, false);
    listener.on_request_body(&h, 10, false);
    assert_eq!(h.property_reads.get(), 0, "no attempt can have run: nothing read");
    // The last chunk lets the request go on; an attempt runs and writes its record.
    listener.on_request_body(&h, 10, true);
    let mut attempt = Stateful::new(probe(&[("aigw_attempts", "[1]")], &[]), Side::Attempt, Writers::One);
    attempt.on_request_headers(&h, true);
    let before = h.property_reads.get();
    listener.on_response_headers(&h, false);
    assert_eq!(h.property_reads.get() - before, 1);
    assert_eq!(listener.ctx.seen, vec![None, None, None, Some("[1]".into())]);
}

/// Holds the request for an outgoing call, then lets it go on from the call's answer.
#[derive(Default)]
struct ResumingReader {
    seen: Vec<Option<String>>,
}

impl Callbacks for ResumingReader {
    fn on_request_headers<H: Host>(&mut self, _h: &H, _eos: bool) -> Flow {
        Flow::Pause
    }
    fn on_http_call_response<H: Host>(&mut self, h: &H, _token: u32, _answer: &HttpAnswer) {
        h.resume_request();
    }
    fn on_response_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        self.seen.push(h.property_string(&["aigw_attempts"]));
        Flow::Continue
    }
}

#[test]
fn a_request_resumed_from_an_outgoing_calls_answer_counts_as_let_go_on() {
    let h = FakeHost::new();
    let mut listener = Stateful::new(ResumingReader::default(), Side::Listener, Writers::One);
    listener.on_request_headers(&h, true);
    listener.on_http_call_response(&h, 1, &HttpAnswer::default());
    let mut attempt = Stateful::new(probe(&[("aigw_attempts", "[2]")], &[]), Side::Attempt, Writers::One);
    attempt.on_request_headers(&h, true);
    listener.on_response_headers(&h, false);
    assert_eq!(listener.ctx.seen, vec![Some("[2]".into())]);
}

#[test]
fn a_callback_reads_all_request_headers_once_and_sees_what_it_changed() {
    let h = FakeHost::new()
        .with_request_header("authorization", "Bearer k")
        .with_request_header("x-note", "a")
        .with_request_header("x-note", "b")
        .with_request_header("content-type", "application/json");
    let data = RefCell::new(CallData::new(Side::Attempt, Writers::One));
    let s = CallState { inner: &h, data: &data };
    let first = s.request_headers();
    assert_eq!(first.len(), 4);
    // One stage removes some and sets one; the next reads the list without a host call.
    s.remove_request_headers(&first, &|n| n == "x-note");
    s.set_request_header("authorization", Some("Bearer provider"));
    let mut second = s.request_headers();
    second.sort();
    assert_eq!(
        second,
        vec![("authorization".into(), "Bearer provider".into()), ("content-type".into(), "application/json".into())]
    );
    assert_eq!(h.header_list_reads.get(), 1);
    // Read in place (no copy of the list) from the same read, with the changes.
    let names = s.with_request_headers(|all| all.iter().map(|(k, _)| k).collect::<Vec<_>>().join(","));
    assert_eq!(names, "authorization,content-type");
    assert_eq!(h.header_list_reads.get(), 1);
    // A single header comes from the list too.
    assert_eq!(s.request_header("content-type").as_deref(), Some("application/json"));
    assert_eq!(s.request_header("x-note"), None);
    assert_eq!(h.header_reads.get(), 0);
    let mut envoy = h.request_headers.borrow().clone();
    envoy.sort();
    assert_eq!(envoy, second, "Envoy has the same headers");
    // The next callback reads them afresh.
    data.borrow_mut().begin();
    s.request_headers();
    assert_eq!(h.header_list_reads.get(), 2);
}

#[test]
fn the_listener_reads_the_request_headers_once_while_it_holds_the_request() {
    let h = FakeHost::new().with_request_header(":path", "/v1/chat/completions");
    let data = RefCell::new(CallData::new(Side::Listener, Writers::One));
    let s = CallState { inner: &h, data: &data };
    // The headers callback reads the list and removes a header.
    data.borrow_mut().begin();
    assert_eq!(s.request_header(":path").as_deref(), Some("/v1/chat/completions"));
    s.set_request_header(":path", None);
    // Its body callback, before the request went on, reads the same list (with the removal).
    data.borrow_mut().begin();
    assert_eq!(s.request_header(":path"), None);
    assert_eq!(h.header_list_reads.get(), 1);
    // Once the request has gone on, the attempts may change the headers: read afresh.
    s.resume_request();
    data.borrow_mut().begin();
    assert_eq!(s.request_header(":path"), None);
    assert_eq!(h.header_list_reads.get(), 2);
    // Where other filters of the side write too, every callback reads afresh.
    let h = FakeHost::new().with_request_header(":path", "/v1/chat/completions");
    let data = RefCell::new(CallData::new(Side::Listener, Writers::Many));
    let s = CallState { inner: &h, data: &data };
    for _ in 0..2 {
        data.borrow_mut().begin();
        assert!(s.request_header(":path").is_some());
    }
    assert_eq!(h.header_list_reads.get(), 2);
}

#[test]
fn a_header_added_in_a_callback_is_read_back_from_the_host() {
    let h = FakeHost::new();
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    let data = RefCell::new(CallData::new(Side::Listener, Writers::One));
    let s = CallState { inner: &h, data: &data };
    assert_eq!(s.response_header(":status").as_deref(), Some("200"));
    s.set_response_header("x-aigw-model", Some("m1"));
    // Headers the list holds still come from it; one it lacks asks the host.
    assert_eq!(s.response_header(":status").as_deref(), Some("200"));
    assert_eq!(h.header_reads.get(), 0);
    assert_eq!(s.response_header("x-aigw-model").as_deref(), Some("m1"));
    assert_eq!(h.header_reads.get(), 1);
    // A header neither in the list nor added is absent, without asking.
    assert_eq!(s.response_header("x-absent"), None);
    assert_eq!(h.header_reads.get(), 1);
    // The whole map is read again, with what was added.
    let mut all = s.response_headers();
    all.sort();
    assert_eq!(all, vec![(":status".into(), "200".into()), ("x-aigw-model".into(), "m1".into())]);
    assert_eq!(h.header_list_reads.get(), 2);
    // A request header added and then removed by a rule is removed.
    s.set_request_header("x-added", Some("1"));
    s.remove_request_headers_where(&|n| n == "x-added");
    assert!(h.request_headers.borrow().is_empty());
}
