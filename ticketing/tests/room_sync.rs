//! An operator's change keeps the sale's liveness window (`queue::room::sync_config`): the
//! windows are numbered by it, and a change that rewrote it renumbered them, so every entry
//! looked silent until its next poll and the next admission step dropped the head of the line
//! (a system test lost its one polling entry that way when it unpaused the room).

mod support;

use ticketing::keys::EventKeys;
use ticketing::queue::room::{sync_config, Sync, WaitingRoom};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

#[tokio::test]
async fn an_operators_change_keeps_the_sales_liveness_window() {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .expect("connecting to redis");
    let event_id = Uuid::new_v4();
    let config = EventKeys::new(event_id).queue_config();
    let window = || async {
        redis::cmd("HGET")
            .arg(&config)
            .arg("alive_window_s")
            .query_async::<Option<u32>>(&mut redis.clone())
            .await
            .expect("reading the window")
    };
    let paused = WaitingRoom {
        paused: true,
        ..WaitingRoom::default()
    };
    sync_config(&redis, event_id, &paused, 0, Sync::Settings)
        .await
        .expect("first settings");
    let first = window().await.expect("a window from the first settings");
    // The sale's window is another (as a release with another default, or a test, sets it).
    let theirs = first + 7;
    let _: () = redis::cmd("HSET")
        .arg(&config)
        .arg("alive_window_s")
        .arg(theirs)
        .query_async(&mut redis.clone())
        .await
        .expect("setting the window");
    let open = WaitingRoom {
        paused: false,
        ..paused
    };
    sync_config(&redis, event_id, &open, 0, Sync::Settings)
        .await
        .expect("the operator's change");
    let kept = window().await;
    support::delete_event_keys(&redis, event_id)
        .await
        .expect("cleaning up");
    assert_eq!(
        kept,
        Some(theirs),
        "the change renumbered the liveness windows"
    );
}

/// When an entry near the head would come for its token (`queue_cadence.lua`) is kept only while
/// it is in line: a leave removes it with the entry (before, only an admission did, and the
/// records of those who left stayed until the event's keys went).
#[tokio::test]
async fn a_leave_takes_the_entrys_delivery_time_with_it() {
    use ticketing::queue::{self, Leaving, QueueId};

    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .expect("connecting to redis");
    let event_id = Uuid::new_v4();
    let deliver_by = EventKeys::new(event_id).deliver_by();
    let paused = WaitingRoom {
        paused: true,
        ..WaitingRoom::default()
    };
    sync_config(&redis, event_id, &paused, 0, Sync::Settings)
        .await
        .expect("settings");
    let queue_id = QueueId(Uuid::new_v4());
    queue::join(&redis, event_id, queue_id, 0, &[])
        .await
        .expect("joining");
    queue::note_cadence(&redis, event_id, queue_id, 1000)
        .await
        .expect("noting the cadence");
    let noted = || async {
        redis::cmd("HEXISTS")
            .arg(&deliver_by)
            .arg(queue_id)
            .query_async::<bool>(&mut redis.clone())
            .await
            .expect("reading the delivery times")
    };
    assert!(noted().await, "the cadence was not noted");
    let left = queue::leave(&redis, event_id, queue_id, Leaving::Now, &[])
        .await
        .expect("leaving");
    let still_noted = noted().await;
    support::delete_event_keys(&redis, event_id)
        .await
        .expect("cleaning up");
    assert!(left, "the entry was not in line");
    assert!(!still_noted, "the delivery time outlived the entry");
}
