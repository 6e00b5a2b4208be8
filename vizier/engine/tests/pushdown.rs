//! The store's TableProvider prunes by time: a `time_` bound reaches the store as a TimeRange, so
//! batches older than the bound are never handed to DataFusion, and EXPLAIN shows the pushed filter.

mod common;

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use pixie_engine::StoreTable;
use pixie_store::tables::http_events;

use common::{NEW_NS, store_with_old_and_new};

fn count(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// 3 old batches and 2 new ones of 100 rows, registered as `http_events`.
fn setup() -> (SessionContext, Arc<StoreTable>) {
    let store = store_with_old_and_new(3, 2, 100);
    let table = Arc::new(StoreTable::new(store, http_events::NAME).unwrap());
    let ctx = SessionContext::new();
    ctx.register_table(http_events::NAME, table.clone())
        .unwrap();
    (ctx, table)
}

fn since_new() -> String {
    format!("time_ >= arrow_cast({NEW_NS}, 'Timestamp(Nanosecond, None)')")
}

#[tokio::test]
async fn a_time_bound_skips_old_batches_in_the_store() {
    let (ctx, table) = setup();
    let sql = format!("SELECT count(*) FROM http_events WHERE {}", since_new());
    let result = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(count(&result), 200);
    let stats = table.scan_stats();
    assert_eq!(stats.scans, 1);
    // Only the two new batches left the store: the 300 old rows were never read.
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.rows, 200);
}

#[tokio::test]
async fn without_a_time_bound_every_batch_is_scanned() {
    let (ctx, table) = setup();
    let sql = "SELECT count(*) FROM http_events WHERE req_path LIKE '/new/%'";
    let result = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(count(&result), 200);
    let stats = table.scan_stats();
    assert_eq!(stats.batches, 5);
    assert_eq!(stats.rows, 500);
}

#[tokio::test]
async fn a_bound_inside_a_batch_trims_it_and_the_answer_stays_exact() {
    let (ctx, table) = setup();
    // The last 30 rows of the newest batch, plus an upper bound that cuts nothing more.
    let start = NEW_NS + 170 * 1_000;
    let sql = format!(
        "SELECT count(*) FROM http_events WHERE time_ > arrow_cast({}, 'Timestamp(Nanosecond, None)') \
         AND time_ < arrow_cast({}, 'Timestamp(Nanosecond, None)') AND req_method = 'GET'",
        start - 1,
        NEW_NS + 1_000_000_000
    );
    let result = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(count(&result), 30);
    assert_eq!(table.scan_stats().rows, 30);
}

#[tokio::test]
async fn explain_shows_the_time_filter_pushed_into_the_scan() {
    let (ctx, _) = setup();
    let sql = format!(
        "EXPLAIN SELECT req_path FROM http_events WHERE {} AND resp_status = 200",
        since_new()
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let plan: String = batches
        .iter()
        .flat_map(|b| {
            let col = b.column(1).as_string::<i32>();
            (0..b.num_rows()).map(move |i| col.value(i).to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n");
    let scan = plan
        .lines()
        .find(|l| l.contains("TableScan: http_events"))
        .unwrap_or_else(|| panic!("no TableScan in\n{plan}"));
    // The time bound is offered to the scan; the status filter is not ours to use.
    let pushed = &scan[scan
        .find("partial_filters=")
        .unwrap_or_else(|| panic!("{plan}"))..];
    let want = format!("partial_filters=[http_events.time_ >= TimestampNanosecond({NEW_NS}");
    assert!(pushed.starts_with(&want), "{plan}");
    assert!(!pushed.contains("resp_status"), "{plan}");
    // Inexact: DataFusion still filters above the scan.
    assert!(plan.contains("FilterExec"), "{plan}");
}

#[tokio::test]
async fn a_pxl_start_time_reaches_the_store_as_a_time_range() {
    use pixie_engine::{Engine, EngineConfig, ProcMetadata, Query};
    let store = store_with_old_and_new(3, 2, 100);
    let engine = Engine::new(
        &store,
        Arc::new(ProcMetadata::new()),
        EngineConfig::default(),
    )
    .unwrap();
    // "Now" is a minute after the new rows; '-5m' reaches back to them but not to a day before.
    let mut query = Query::pxl(
        "import px\n\
         df = px.DataFrame(table='http_events', start_time='-5m')\n\
         df = df.groupby('req_method').agg(n=('latency', px.count))\n\
         px.display(df, 'counts')\n",
    );
    query.now_ns = Some(NEW_NS + 60_000_000_000);
    let (outputs, _) = engine.collect(&query).await.unwrap();
    let (name, batches) = &outputs[0];
    assert_eq!(name, "counts");
    assert_eq!(
        batches[0]
            .column_by_name("n")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        200
    );
    let stats = engine
        .catalog()
        .unwrap()
        .scan_stats(http_events::NAME)
        .unwrap();
    assert_eq!((stats.batches, stats.rows), (2, 200));
}
