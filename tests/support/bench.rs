//! Reading what `carillon bench latency --json` measured.

use serde_json::Value;

use super::jack::SAMPLE_RATE;
use super::process::RunOutput;

/// The one row of a successful `bench latency --json` run that sent `events` edits:
/// every note measured, none late.
pub fn latency_row(out: &RunOutput, events: u64) -> Value {
    out.assert_success();
    let rows: Value = serde_json::from_str(&out.stdout).expect("bench latency --json prints JSON");
    let row = rows[0].clone();
    assert_eq!(row["notes_measured"].as_u64(), Some(events), "{row}");
    assert_eq!(
        row["late"].as_u64(),
        Some(0),
        "no note missed its block: {row}"
    );
    row
}

/// Panics unless the row's callbacks came every `period_frames` (within 20 %).
pub fn assert_callbacks_every(row: &Value, period_frames: u32) {
    let interval = row["callback_interval"]["median_us"]
        .as_f64()
        .expect("intervals");
    let expected = 1e6 * f64::from(period_frames) / f64::from(SAMPLE_RATE);
    assert!(
        (interval - expected).abs() < expected * 0.2,
        "callbacks every {interval:.0} µs, expected {expected:.0} µs: {row}"
    );
}
