use proptest::prelude::*;

use super::*;

const DAY: u64 = 86_400;

fn policy() -> Policy {
    Policy {
        renew_before: Duration::from_secs(30 * DAY),
        retry_min: Duration::from_secs(60),
        retry_max: Duration::from_secs(3600),
    }
}

fn valid(not_before: u64, days: u64) -> Validity {
    Validity { not_before, not_after: not_before + days * DAY }
}

#[test]
fn a_name_without_record_or_certificate_is_ordered() {
    assert_eq!(next(None, 1000, &policy()), Action::Order);
    let r = Record { cert: None, order: Order::Idle };
    assert_eq!(next(Some(&r), 1000, &policy()), Action::Order);
    assert_eq!(shown(None, 1000), (Shown::Pending, None));
}

#[test]
fn renewal_is_renew_before_ahead_of_expiry() {
    let v = valid(1000, 90);
    let r = issued(v);
    let at = v.not_after - 30 * DAY;
    assert_eq!(renew_at(v, &policy()), at);
    assert_eq!(next(Some(&r), 1000, &policy()), Action::WaitUntil(at));
    assert_eq!(next(Some(&r), at - 1, &policy()), Action::WaitUntil(at));
    assert_eq!(next(Some(&r), at, &policy()), Action::Order);
    assert_eq!(shown(Some(&r), at), (Shown::Valid, None), "still valid while renewing is due");
    assert_eq!(shown(Some(&r), v.not_after), (Shown::Pending, None), "expired: a new order is due");
}

#[test]
fn short_lived_certificates_renew_in_their_last_third() {
    // Pebble or a 6-day profile: 30 days ahead would mean re-ordering at once, forever.
    let v = valid(1000, 6);
    assert_eq!(renew_at(v, &policy()), v.not_after - 2 * DAY);
    let v = Validity { not_before: 1000, not_after: 1300 };
    assert_eq!(renew_at(v, &policy()), 1200);
    // Exactly as long as renew_before: also the last third.
    assert_eq!(renew_at(valid(0, 30), &policy()), 20 * DAY);
    // A window that ends before it starts renews at once, never panics.
    assert_eq!(renew_at(Validity { not_before: 500, not_after: 100 }, &policy()), 100);
}

#[test]
fn failures_back_off_doubling_up_to_the_cap_and_keep_the_certificate() {
    let p = policy();
    let v = valid(0, 90);
    let first = started(Some(&issued(v)), 10);
    assert_eq!(first.order, Order::Pending { since: 10, attempts: 0 });
    assert_eq!(first.cert, Some(v), "the served certificate stays while renewing");
    let mut r = first;
    let mut now = 100;
    let mut waits = vec![];
    for _ in 0..8 {
        // Each retry goes through `started` (the lock holder's record) first.
        let pending = started(Some(&r), now);
        r = failed(Some(&pending), "urn:ietf:params:acme:error:unauthorized".into(), None, now, &p);
        let Order::Failed { retry_at, .. } = r.order else { panic!("{r:?}") };
        waits.push(retry_at - now);
        assert_eq!(next(Some(&r), retry_at - 1, &p), Action::WaitUntil(retry_at));
        assert_eq!(next(Some(&r), retry_at, &p), Action::Order);
        now = retry_at;
    }
    assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(r.cert, Some(v));
    assert_eq!(shown(Some(&r), now), (Shown::Failed, Some("urn:ietf:params:acme:error:unauthorized")));
    let Order::Failed { attempts, .. } = r.order else { unreachable!() };
    assert_eq!(attempts, 8);

    // Success resets the count: the next failure waits the minimum again.
    let ok = issued(valid(now, 90));
    assert_eq!(shown(Some(&ok), now), (Shown::Valid, None));
    let again = failed(Some(&started(Some(&ok), now)), "x".into(), None, now, &p);
    assert_eq!(again.order, Order::Failed { error: "x".into(), attempts: 1, retry_at: now + 60 });
}

#[test]
fn retry_after_is_never_cut_short() {
    let p = policy();
    let r = failed(None, "rateLimited".into(), Some(Duration::from_secs(7 * DAY)), 1000, &p);
    assert_eq!(r.order, Order::Failed { error: "rateLimited".into(), attempts: 1, retry_at: 1000 + 7 * DAY });
    // A Retry-After shorter than the backoff does not shorten it.
    let r = failed(None, "e".into(), Some(Duration::from_secs(5)), 1000, &p);
    assert_eq!(next(Some(&r), 1059, &p), Action::WaitUntil(1060));
    // A hostile one saturates instead of overflowing.
    let r = failed(None, "e".into(), Some(Duration::MAX), u64::MAX - 5, &p);
    assert_eq!(next(Some(&r), u64::MAX - 1, &p), Action::WaitUntil(u64::MAX));
}

#[test]
fn a_pending_order_is_left_to_the_lock() {
    // The record says pending; whether its node is alive is the lock's to
    // say, so the plan asks to try it.
    let r = Record { cert: None, order: Order::Pending { since: 5, attempts: 2 } };
    assert_eq!(next(Some(&r), 6, &policy()), Action::Order);
    assert_eq!(shown(Some(&r), 6), (Shown::Pending, None));
    // A node taking over an order that failed twice before keeps counting.
    let f = failed(Some(&started(Some(&r), 7)), "e".into(), None, 7, &policy());
    assert_eq!(f.order, Order::Failed { error: "e".into(), attempts: 3, retry_at: 7 + 240 });
}

#[test]
fn records_round_trip_through_json_as_documented() {
    let r = failed(Some(&issued(Validity { not_before: 1, not_after: 2 })), "boom".into(), None, 10, &policy());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"cert": {"not_before": 1, "not_after": 2},
                           "order": {"status": "failed", "error": "boom", "attempts": 1, "retry_at": 70}})
    );
    assert_eq!(serde_json::from_value::<Record>(json).unwrap(), r);
    let idle: Record = serde_json::from_str(r#"{"cert":null,"order":{"status":"idle"}}"#).unwrap();
    assert_eq!(idle, Record { cert: None, order: Order::Idle });
    // Hostile records are refused, not guessed.
    for bad in [
        r#"{"cert":null,"order":{"status":"done"}}"#,
        r#"{"cert":{"not_before":-1,"not_after":2},"order":{"status":"idle"}}"#,
        "[]",
        "",
    ] {
        assert!(serde_json::from_str::<Record>(bad).is_err(), "{bad}");
    }
}

#[test]
fn retry_after_headers() {
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
    // 2001-09-09T01:46:40Z is `now`; a minute later, and a date passed.
    assert_eq!(retry_after("Sun, 09 Sep 2001 01:47:40 GMT", now), Some(Duration::from_secs(60)));
    assert_eq!(retry_after("Sun, 09 Sep 2001 01:45:40 GMT", now), Some(Duration::ZERO));
    for bad in ["", "-5", "1.5", "soon", "120s"] {
        assert_eq!(retry_after(bad, now), None, "{bad:?}");
    }
}

proptest! {
    #![proptest_config(crate::routes::proptest_config(3000))]

    /// Whatever the record and the time: a name is either ordered now or
    /// waits until a later time; renewal never falls after expiry nor
    /// (with a sane window) before issue; a failure never retries sooner
    /// than the CA asked.
    #[test]
    fn decisions_are_consistent(not_before in any::<u64>(), life in any::<u64>(), now in any::<u64>(),
                                renew_days in 0u64..400, attempts in 0u32..100, retry_after in proptest::option::of(any::<u64>()),
                                min in 1u64..1000, max in 0u64..100_000) {
        let p = Policy { renew_before: Duration::from_secs(renew_days * DAY), retry_min: Duration::from_secs(min), retry_max: Duration::from_secs(max) };
        let v = Validity { not_before, not_after: not_before.saturating_add(life) };
        let at = renew_at(v, &p);
        prop_assert!(at <= v.not_after);
        prop_assert!(at >= v.not_before);
        for r in [issued(v), started(Some(&issued(v)), now)] {
            if let Action::WaitUntil(t) = next(Some(&r), now, &p) { prop_assert!(t > now) }
        }
        let prev = Record { cert: Some(v), order: Order::Failed { error: "e".into(), attempts, retry_at: 0 } };
        let f = failed(Some(&prev), "e2".into(), retry_after.map(Duration::from_secs), now, &p);
        let Order::Failed { retry_at, attempts: a, .. } = &f.order else { unreachable!() };
        prop_assert_eq!(*a, attempts.saturating_add(1));
        prop_assert!(*retry_at >= now.saturating_add(retry_after.unwrap_or(0)));
        prop_assert!(*retry_at >= now.saturating_add(min));
        prop_assert_eq!(f.cert, Some(v));
        match next(Some(&f), now, &p) {
            Action::Order => prop_assert!(*retry_at <= now),
            Action::WaitUntil(t) => prop_assert_eq!(t, *retry_at),
        }
    }
}
