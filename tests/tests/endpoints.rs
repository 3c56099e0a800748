//! End to end: every demo endpoint answers with the right data from its SQLite database,
//! rejects bad input with a clear 4xx, and leaves no task of its own behind.

mod common;

use std::time::{Duration, Instant};

use common::Demo;
use serde_json::{Value, json};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Sum of the seeded order amounts of `user` (10 orders of 100*user + k cents, k = 1..=10).
fn seeded_total(user: i64) -> i64 {
    (1..=10).map(|k| 100 * user + k).sum()
}

async fn eventually(demo: &Demo, path: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = demo.get(path).await;
        if status == 200 {
            let v = parse(&body);
            if want(&v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} never became as expected: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn endpoints_return_the_database_contents() {
    let demo = Demo::start(&[]);

    let (status, body) = demo.get("/profile/3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse(&body),
        json!({"id": 3, "name": "user-3", "email": "user-3@example.test", "orders": 10,
               "total_cents": seeded_total(3), "theme": "light"})
    );
    let (status, body) = demo.get("/profile/10").await;
    assert_eq!(
        status, 502,
        "the upstream fails ids divisible by 10: {body}"
    );
    let (status, body) = demo.get("/profile/999").await;
    assert_eq!((status, body.as_str()), (404, "no user 999\n"));

    let (status, body) = demo.get("/dashboard/4").await;
    assert_eq!(status, 200, "{body}");
    let d = parse(&body);
    let recent: Vec<(i64, i64)> = d["recent_orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_i64().unwrap(),
                o["amount_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        recent,
        vec![(40, 410), (39, 409), (38, 408), (37, 407), (36, 406)]
    );
    assert_eq!(
        d["stats"],
        json!({"count": 10, "total_cents": seeded_total(4)})
    );
    let unread: Vec<&str> = d["unread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        unread,
        vec!["notification 1 for user-4", "notification 2 for user-4"]
    );

    let (status, body) = demo
        .post("/orders", json!({"user_id": 5, "amount_cents": 777}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = parse(&body)["id"].as_i64().unwrap();
    let order = eventually(&demo, &format!("/orders/{id}"), |o| {
        o["status"] == "confirmed"
    })
    .await;
    assert_eq!(
        order,
        json!({"id": id, "user_id": 5, "amount_cents": 777, "status": "confirmed"})
    );

    let orders: Vec<Value> = (1..=30)
        .map(|i| json!({"user_id": 7, "amount_cents": i}))
        .collect();
    let (status, body) = demo.post("/batch", json!({ "orders": orders })).await;
    assert_eq!((status, parse(&body)), (200, json!({"imported": 30})));
    let (_, body) = demo.get("/dashboard/7").await;
    assert_eq!(
        parse(&body)["stats"],
        json!({"count": 40, "total_cents": seeded_total(7) + (1..=30).sum::<i64>()})
    );

    for _ in 0..2 {
        let (status, body) = demo.get("/cache/users/8").await;
        assert_eq!(status, 200);
        assert_eq!(
            parse(&body),
            json!({"id": 8, "name": "user-8", "email": "user-8@example.test"})
        );
    }

    let (status, body) = demo.post("/jobs", json!({"user_id": 9})).await;
    assert_eq!(status, 202, "{body}");
    let job = parse(&body)["job"].as_i64().unwrap();
    let result = eventually(&demo, &format!("/jobs/{job}"), |_| true).await;
    assert_eq!(
        result,
        json!({"job": job, "user_id": 9, "total_cents": seeded_total(9)})
    );

    assert_eq!(
        demo.post("/hits", json!({})).await,
        (200, "1\n".to_string())
    );
    assert_eq!(
        demo.post("/hits", json!({})).await,
        (200, "2\n".to_string())
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let demo = Demo::start(&[]);
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"user_id": 1, "amount_cents": 1}))
        .collect();
    let (status, body) = demo.post("/batch", json!({ "orders": too_many })).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "1001 orders is above the limit of 1000\n")
    );
    let (status, body) = demo
        .post("/orders", json!({"user_id": 0, "amount_cents": 5}))
        .await;
    assert_eq!((status, body.as_str()), (400, "user_id 0 does not exist\n"));
    let (status, body) = demo
        .post("/orders", json!({"user_id": 1, "amount_cents": -5}))
        .await;
    assert_eq!(
        (status, body.as_str()),
        (400, "amount_cents must be positive\n")
    );
    let (status, _) = demo.post("/orders", json!({"user": "x"})).await;
    assert_eq!(status, 422);
    let (status, body) = demo.post("/faults/S99", json!({})).await;
    assert_eq!(status, 404);
    assert!(
        body.starts_with("no fault named \"S99\"; faults: "),
        "{body}"
    );
    assert!(body.contains("leak"), "{body}");
    let (status, body) = demo.get("/faults").await;
    assert_eq!(status, 200);
    let leak = parse(&body)
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "leak")
        .cloned()
        .unwrap();
    assert_eq!(leak["on"], json!(false));
}

#[tokio::test]
async fn handlers_leave_no_task_behind() {
    let demo = Demo::start(&[]);
    demo.get("/profile/3").await;
    demo.get("/profile/10").await;
    let orders: Vec<Value> = (1..=30)
        .map(|i| json!({"user_id": 2, "amount_cents": i}))
        .collect();
    demo.post("/batch", json!({ "orders": orders })).await;
    demo.post("/orders", json!({"user_id": 2, "amount_cents": 5}))
        .await;

    // Confirmations take 50 ms; after that nothing spawned by the handlers may be alive.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = demo.snapshot().await;
        let handler_sites = snap
            .sites
            .iter()
            .filter(|r| r.site.starts_with("demo-service/src/app.rs"));
        let live: u64 = handler_sites.clone().map(|r| r.live).sum();
        let spawned: u64 = handler_sites.map(|r| r.spawned).sum();
        // 3 lookups x 2 profiles + 30 batch items + 1 confirmation.
        if live == 0 && spawned == 3 * 2 + 30 + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live {live}, spawned {spawned}: {:?}",
            snap.sites
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
