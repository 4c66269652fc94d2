use super::*;
use crate::symbol::Sym;
use crate::time::Timestamp;

fn batch(from: i64, n: i64) -> Batch {
    (from..from + n)
        .map(|i| Observation::number(Sym::new("s"), Sym::new("v"), Timestamp(i), i as f64))
        .collect::<Vec<_>>()
        .into()
}

fn values(b: &Batch) -> Vec<i64> {
    b.iter().map(|o| o.timestamp.0).collect()
}

fn limits(max_bytes: u64, on_full: OnFull) -> QueueLimits {
    QueueLimits {
        max_bytes,
        max_age: None,
        on_full,
    }
}

async fn take(q: &Queue) -> Option<Batch> {
    let mut dropped = Dropped::default();
    let b = tokio::time::timeout(Duration::from_secs(5), q.take(&mut dropped))
        .await
        .expect("a batch in time")
        .unwrap();
    assert!(dropped.is_empty());
    b
}

#[tokio::test]
async fn batches_pass_in_order_through_memory_then_disk_and_leave_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    let mut dropped = Dropped::default();
    // The sink takes nothing for a while: the first batches stay in memory, the rest go
    // to disk.
    for i in 0..20 {
        assert!(q.push(batch(i * 10, 10), &mut dropped).unwrap().is_none());
    }
    let st = q.status();
    assert_eq!((st.messages, st.observations), (20, 200));
    assert!(st.bytes > 0, "batches past memory are on disk: {st:?}");
    let mut seen = Vec::new();
    for _ in 0..20 {
        let b = take(&q).await.unwrap();
        seen.extend(values(&b));
        q.delivered_one();
    }
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    let st = q.status();
    assert_eq!(
        (st.messages, st.observations, st.bytes),
        (0, 0, 0),
        "{st:?}"
    );
    q.end_input();
    assert!(take(&q).await.is_none());
}

#[tokio::test]
async fn what_was_not_delivered_is_sent_first_after_a_restart_and_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut dropped = Dropped::default();
    {
        let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
        for i in 0..10 {
            q.push(batch(i * 5, 5), &mut dropped).unwrap();
        }
        // Three delivered; a fourth taken and not delivered when the engine dies; the rest
        // (some only in memory) made durable by a checkpoint.
        for _ in 0..3 {
            take(&q).await.unwrap();
            q.delivered_one();
        }
        take(&q).await.unwrap();
        q.persist().unwrap();
    }
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    assert_eq!(q.status().messages, 7);
    q.push(batch(50, 5), &mut dropped).unwrap();
    let mut seen = Vec::new();
    for _ in 0..8 {
        let b = take(&q).await.unwrap();
        seen.extend(values(&b));
        q.delivered_one();
    }
    assert_eq!(seen, (15..55).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_sink_given_up_leaves_what_it_held_queued_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    let mut dropped = Dropped::default();
    for i in 0..3 {
        q.push(batch(i * 2, 2), &mut dropped).unwrap();
    }
    take(&q).await.unwrap();
    take(&q).await.unwrap();
    q.delivered_one();
    assert_eq!(q.keep_for_later().unwrap(), 2);
    drop(q);
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    assert_eq!(values(&take(&q).await.unwrap()), vec![2, 3]);
    q.delivered_one();
    assert_eq!(values(&take(&q).await.unwrap()), vec![4, 5]);
}

#[tokio::test]
async fn acknowledgements_counted_in_observations_release_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    let mut dropped = Dropped::default();
    for i in 0..3 {
        q.push(batch(i * 4, 4), &mut dropped).unwrap();
    }
    for _ in 0..3 {
        take(&q).await.unwrap();
    }
    q.acknowledged(6);
    assert_eq!(q.status().messages, 2, "one batch wholly acknowledged");
    q.acknowledged(12);
    assert_eq!(q.status().messages, 0);
}

#[tokio::test]
async fn watermark_marks_are_not_counted_as_acknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    let mut dropped = Dropped::default();
    let mark = |t| {
        Batch::from(vec![Observation::number(
            Sym::new("s"),
            Sym::new(crate::connector::context::WATERMARK_MARK),
            Timestamp(t),
            0.0,
        )])
    };
    // Marks travel alone, as the sink's context queues them.
    q.push(batch(0, 2), &mut dropped).unwrap();
    q.push(mark(2), &mut dropped).unwrap();
    q.push(batch(4, 2), &mut dropped).unwrap();
    take(&q).await.unwrap();
    take(&q).await.unwrap();
    // The sink published the first batch's two observations, and took the mark.
    q.marks_taken();
    assert_eq!(q.status().messages, 3, "nothing acknowledged yet");
    q.acknowledged(2);
    assert_eq!(
        q.status().messages,
        1,
        "the data, then the mark after it, delivered"
    );
    take(&q).await.unwrap();
    q.acknowledged(4);
    assert_eq!(q.status().messages, 0);
}

#[tokio::test]
async fn a_full_queue_holds_input_back_or_drops_the_oldest_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(
        &dir.path().join("b"),
        limits(16 * 1024, OnFull::Backpressure),
    )
    .unwrap();
    let mut dropped = Dropped::default();
    let mut held = None;
    for i in 0..1000 {
        if let Some(b) = q.push(batch(i * 10, 10), &mut dropped).unwrap() {
            held = Some((i, b));
            break;
        }
    }
    let (at, b) = held.expect("the queue fills up");
    assert!(q.status().bytes <= 16 * 1024);
    assert!(dropped.is_empty());
    // Delivering frees room.
    for _ in 0..at {
        take(&q).await.unwrap();
        q.delivered_one();
    }
    assert!(q.push(b, &mut dropped).unwrap().is_none());

    let q = Queue::open(&dir.path().join("d"), limits(16 * 1024, OnFull::DropOldest)).unwrap();
    for i in 0..200 {
        assert!(q.push(batch(i * 10, 10), &mut dropped).unwrap().is_none());
    }
    let st = q.status();
    assert!(st.bytes <= 16 * 1024, "{st:?}");
    assert!(st.dropped > 0);
    assert_eq!(st.dropped, dropped.full.len() as u64);
    // The dropped are the oldest on disk (the first batches wait in memory for the sink);
    // with what is left, delivered in order, they are everything, once.
    let lost: Vec<i64> = dropped.full.iter().map(|o| o.timestamp.0).collect();
    assert!(
        lost.windows(2).all(|w| w[1] == w[0] + 1),
        "one run of the oldest"
    );
    let mut seen = Vec::new();
    while q.status().messages > 0 {
        let Some(b) =
            tokio::time::timeout(Duration::from_millis(200), q.take(&mut Dropped::default()))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        else {
            break;
        };
        seen.extend(values(&b));
        q.delivered_one();
    }
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "delivered in order");
    let mut all = [lost, seen].concat();
    all.sort_unstable();
    assert!(
        all == (0..2000).collect::<Vec<_>>(),
        "every observation once"
    );
}

#[tokio::test]
async fn observations_older_than_the_age_limit_expire_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(
        dir.path(),
        QueueLimits {
            max_bytes: 1 << 20,
            max_age: Some(Duration::from_millis(50)),
            on_full: OnFull::Backpressure,
        },
    )
    .unwrap();
    let mut dropped = Dropped::default();
    q.push(batch(0, 3), &mut dropped).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    q.push(batch(3, 3), &mut dropped).unwrap();
    let b = q.take(&mut dropped).await.unwrap().unwrap();
    assert_eq!(values(&b), vec![3, 4, 5]);
    assert_eq!(dropped.expired.len(), 3);
    assert_eq!(q.status().expired, 3);
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut dropped = Dropped::default();
    {
        let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
        for i in 0..6 {
            q.push(batch(i, 1), &mut dropped).unwrap();
        }
        q.persist().unwrap();
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .unwrap()
        .path();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    let q = Queue::open(dir.path(), QueueLimits::default()).unwrap();
    assert_eq!(q.status().messages, 5);
}
